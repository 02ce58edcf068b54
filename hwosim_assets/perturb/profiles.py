"""Perturbation profiles: named compositions of kinds, declared in YAML.

Format (``hwosim_assets/defaults/profiles.yaml`` is the packaged example)::

    version: 1
    profiles:
      nominal:                      # a slug [a-z0-9-]: it is a Dagster partition key
        description: what JWST actually delivers
        kinds:
          read_noise: 1             # a level 0-5 ...
          cosmic_rays: {level: 2}   # ... or a mapping with a level
          dropouts:                 # ... and/or explicit parameters overriding it
            level: 3
            params: {mean_burst: 12}
          saturation:               # parameters alone must name every parameter
            params: {full_well_e: 70000}
      level-3:
        all: 3                      # every kind at level 3 (``kinds`` may override)
      quicklook:
        stage: live                 # raw-like effects (default: archive, post-pipeline)
        all: 1

Everything is checked when the file is loaded, by the strict models below
(built from the kind declarations, so a parameter has the same bounds here
as where it is used, the stream replay included) after
:mod:`hwosim_assets.userconfig` has read the YAML (no aliases, no duplicate
keys). A mistake raises :class:`ProfileError` naming the file, the profile
and the field. ``kinds:`` with nothing under it, or a profile with nothing
under its name, is empty; ``noise`` and ``read_noise`` (an alias and its
target) in one profile are an error, and an alias given in ``kinds``
replaces its target set by ``all``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, Field, ValidationError, create_model, model_validator

from hwosim_assets.perturb.kinds import ALIASES, ELEMENT_KINDS, KINDS, STREAM_KINDS, chain_order
from hwosim_assets.perturb.spec import KindSpec, ParamsModel
from hwosim_assets.userconfig import (
    ConfigFileError,
    DuplicateKeyError,
    Location,
    Omittable,
    StrictModel,
    integer_checks,
    problems,
    read_text,
    read_yaml,
    rule_error,
    shown,
    text_checks,
)

DEFAULT_PROFILES = Path(__file__).resolve().parent.parent / "defaults" / "profiles.yaml"
ENGINE_VERSION = 2  # bump when a kind's algorithm changes: every config hash changes with it
SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")  # matched with fullmatch
STAGE = re.compile(r"archive|live")


class ProfileError(ValueError):
    """A profile file that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class KindSetting:
    """One kind in a profile: its level (None if given by parameters only)
    and its resolved parameters."""

    kind: str
    level: int | None
    params: Mapping[str, float]

    @property
    def is_off(self) -> bool:
        return KINDS[self.kind].is_off(self.params)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    settings: tuple[KindSetting, ...]  # every kind the profile names, in signal-chain order
    source: str = "<memory>"
    stage: str = "archive"  # "archive": post-pipeline residuals; "live": raw-like (README, Perturbations)

    @cached_property
    def resolved(self) -> dict[str, dict[str, float]]:
        """{kind: {param: value}} of every kind that changes something."""
        return {s.kind: dict(s.params) for s in self.settings if not s.is_off}

    @cached_property
    def config_hash(self) -> str:
        """16 hex digits of SHA-256 over the resolved parameters (and the engine
        version): the perturbed partitions' data version, and part of every
        random key. Descriptions, ordering and level-vs-parameter spelling do
        not count; any change of what is applied does."""
        content = {"engine": ENGINE_VERSION, "stage": self.stage, "kinds": self.resolved}
        text = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def element_kinds(self) -> list[KindSetting]:
        """The active element-level kinds, in the order they are applied."""
        return [s for s in self.settings if s.kind in ELEMENT_KINDS and not s.is_off]

    @property
    def stream_faults(self) -> dict[str, dict[str, float]]:
        """Resolved parameters of the active stream-level kinds (for the replay)."""
        return {k: v for k, v in self.resolved.items() if k in STREAM_KINDS}


def load_profiles(path: Path | str | None = None) -> dict[str, Profile]:
    """Every profile of a YAML file (the packaged defaults when ``path`` is None)."""
    path = Path(path) if path else DEFAULT_PROFILES
    try:
        content = read_text(path)
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read profiles file: {exc}") from None
    except ConfigFileError as exc:
        raise ProfileError(f"{path}: {exc.problem}") from None
    return parse_profiles(content, str(path))


def parse_profiles(content: str, source: str = "<memory>") -> dict[str, Profile]:
    """Profiles from YAML text; ``source`` names the file in error messages."""
    try:
        document = read_yaml(content, source)
    except DuplicateKeyError as exc:
        if exc.path == ("profiles", exc.key):
            where = f"duplicate profile name {shown(exc.key)} at line {exc.line} (first at line {exc.first_line})"
            raise ProfileError(f"{source}: profiles: {where}") from None
        raise ProfileError(f"{source}: {_where(exc.path)}{exc.problem}") from None
    except ConfigFileError as exc:
        raise ProfileError(f"{source}: {_where(exc.path)}{exc.problem}") from None
    if not isinstance(document, dict):
        raise ProfileError(f"{source}: expected a mapping with a 'profiles' key, got {shown(document)}")
    try:
        parsed = ProfilesFile.model_validate(document)
    except ValidationError as exc:
        raise ProfileError("\n".join(f"{source}: {_where(loc)}{message}" for loc, message in problems(exc))) from None
    return {name: _profile(name, body, source) for name, body in parsed.profiles.items()}


def _where(loc: Location) -> str:
    """A location as messages give it: "profile 'p': kinds.read_noise.level: "."""
    if len(loc) >= 2 and loc[0] == "profiles":
        rest = ["name" if part == "[key]" else str(part) for part in loc[2:]]
        return f"profile {shown(loc[1])}: " + (".".join(rest) + ": " if rest else "")
    return ".".join(map(str, loc)) + ": " if loc else ""


# The file's schema. Level and parameter bounds come from the kind declarations.
# A field that defaults to None may be left out, but not given as null:
# defaults are not validated, values are.

# Annotated[..., *checks] rather than text()/integer(): the same types, readable by the type checker.
Level = Annotated[int, *integer_checks(0, 5, "a level")]
Version = Annotated[int, *integer_checks(1, 1, "the only version understood")]
Stage = Annotated[
    str, *text_checks("'archive' (post-pipeline residuals) or 'live' (raw-like)", pattern=STAGE, max_length=16)
]
ProfileName = Annotated[
    str, *text_checks("a slug of a-z, 0-9 and single dashes (it is a partition key)", pattern=SLUG, max_length=64)
]
Text = Annotated[str, *text_checks()]


def _level_alone(value: Any) -> Any:
    """``read_noise: 3`` is short for ``read_noise: {level: 3}``."""
    return value if isinstance(value, dict) else {"level": value}


def _empty_when_null(value: Any) -> Any:
    """A YAML key with nothing under it (``kinds:``) is null: read it as empty."""
    return {} if value is None else value


class KindSettingModel(StrictModel):
    """One kind in a profile: a level, parameters overriding it, or every parameter."""

    level: Omittable[Level] = None
    params: Omittable[ParamsModel] = None

    @model_validator(mode="after")
    def _level_or_every_parameter(self) -> Self:
        if self.level is None:
            given = self.params.model_fields_set if self.params is not None else set()
            params_model = type(self).model_fields["params"].annotation  # this kind's parameters
            declared = (
                params_model.model_fields
                if isinstance(params_model, type) and issubclass(params_model, BaseModel)
                else {}
            )
            missing = [name for name in declared if name not in given]
            if missing:
                raise rule_error(f"give a level or every parameter; missing {', '.join(missing)}")
        return self


def _setting_model(spec: KindSpec) -> Any:
    model = create_model(f"{spec.name}_setting", __base__=KindSettingModel, params=(spec.overrides_model, None))
    return Annotated[model, BeforeValidator(_level_alone)]


class KindsModel(StrictModel):
    """The ``kinds:`` mapping: one optional field per kind (subclassed below)."""

    key_word = "kind"

    @model_validator(mode="after")
    def _alias_or_target(self) -> Self:
        for alias, target in ALIASES.items():
            if alias in self.model_fields_set and target in self.model_fields_set:
                raise rule_error(f"{alias} is another name for {target}: give one of them, not both", alias)
        return self


def _kinds_model() -> type[KindsModel]:
    fields: dict[str, Any] = {kind: (_setting_model(spec), None) for kind, spec in KINDS.items()}
    return create_model("Kinds", __base__=KindsModel, **fields)


if TYPE_CHECKING:
    Kinds = KindsModel  # what the type checker sees: the fields are made at run time, one per kind
else:
    Kinds = _kinds_model()


class ProfileBody(StrictModel):
    """One profile: ``all`` sets every kind at a level, ``kinds`` sets or overrides some."""

    description: Text = ""
    stage: Stage = "archive"
    all: Omittable[Level] = None
    kinds: Annotated[Kinds, BeforeValidator(_empty_when_null)] = Kinds()


class ProfilesFile(StrictModel):
    """The whole file."""

    key_word = "top-level key"

    version: Version = 1
    profiles: Annotated[
        dict[ProfileName, Annotated[ProfileBody, BeforeValidator(_empty_when_null)]], Field(min_length=1)
    ]


def _profile(name: str, body: ProfileBody, source: str) -> Profile:
    """Resolve a validated profile: ``all`` sets every kind, ``kinds`` overrides
    it (a kind given by its alias replaces its target, so it is applied once)."""
    chosen: dict[str, Any] = {}
    if body.all is not None:
        chosen = {kind: body.all for kind, spec in KINDS.items() if spec.alias_of is None}
    for kind in body.kinds.model_fields_set:
        alias_of = KINDS[kind].alias_of
        if alias_of is not None:
            chosen.pop(alias_of, None)
        chosen[kind] = getattr(body.kinds, kind)
    settings = [_setting(kind, value) for kind, value in chosen.items()]
    settings.sort(key=lambda s: chain_order(s.kind))
    return Profile(name=name, description=body.description, settings=tuple(settings), source=source, stage=body.stage)


def _setting(kind: str, value: int | KindSettingModel) -> KindSetting:
    spec = KINDS[kind]
    if isinstance(value, int):
        return KindSetting(kind, value, {name: float(v) for name, v in spec.at_level(value).items()})
    params = spec.at_level(value.level) if value.level is not None else {}
    if value.params is not None:
        params.update(value.params.model_dump(exclude_unset=True))
    return KindSetting(kind, value.level, {p.name: float(params[p.name]) for p in spec.params})
