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

Everything is checked when the file is loaded; a mistake raises
:class:`ProfileError` naming the file, the profile and the field.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import yaml

from hwosim_assets.perturb.kinds import ELEMENT_KINDS, KINDS, STREAM_KINDS, chain_order
from hwosim_assets.perturb.spec import LEVELS

DEFAULT_PROFILES = Path(__file__).resolve().parent.parent / "defaults" / "profiles.yaml"
ENGINE_VERSION = 1  # bump when a kind's algorithm changes: every config hash changes with it
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
TOP_KEYS = {"version", "profiles"}
PROFILE_KEYS = {"description", "all", "kinds"}
SETTING_KEYS = {"level", "params"}


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
        text = json.dumps({"engine": ENGINE_VERSION, "kinds": self.resolved}, sort_keys=True, separators=(",", ":"))
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
        text = path.read_text()
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read profiles file: {exc}") from None
    return parse_profiles(text, str(path))


def parse_profiles(text: str, source: str = "<memory>") -> dict[str, Profile]:
    """Profiles from YAML text; ``source`` names the file in error messages."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _refuse_duplicate_keys(node, source)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise ProfileError(f"{source}: expected a mapping with a 'profiles' key, got {type(document).__name__}")
    _unknown(document, TOP_KEYS, lambda key: f"{source}: unknown top-level key {key!r}")
    if document.get("version", 1) != 1:
        raise ProfileError(f"{source}: version: only version 1 is understood, got {document['version']!r}")
    profiles = document.get("profiles")
    if not isinstance(profiles, dict) or not profiles:
        raise ProfileError(f"{source}: profiles: expected a non-empty mapping of profile name to profile")
    return {str(name): _profile(str(name), body, source) for name, body in profiles.items()}


def _unknown(mapping: Mapping, allowed: set[str], message) -> None:
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            raise ProfileError(message(key) + (f" (did you mean {close[0]!r}?)" if close else ""))


def _profile(name: str, body: Any, source: str) -> Profile:
    where = f"{source}: profile {name!r}"
    if not SLUG.match(name):
        raise ProfileError(f"{where}: name must be a slug of a-z, 0-9 and single dashes (it is a partition key)")
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ProfileError(f"{where}: expected a mapping with 'description', 'all' and/or 'kinds'")
    _unknown(body, PROFILE_KEYS, lambda key: f"{where}: unknown key {key!r}")
    description = body.get("description", "")
    if not isinstance(description, str):
        raise ProfileError(f"{where}: description: must be text")
    settings: dict[str, Any] = {}
    if "all" in body:
        level = _level(body["all"], f"{where}: all")
        settings = {kind: level for kind, spec in KINDS.items() if spec.alias_of is None}
    kinds = body.get("kinds") or {}
    if not isinstance(kinds, dict):
        raise ProfileError(f"{where}: kinds: expected a mapping of kind name to level or settings")
    settings.update(kinds)
    resolved = [_setting(str(kind), value, f"{where}: kinds.{kind}") for kind, value in settings.items()]
    resolved.sort(key=lambda s: chain_order(s.kind))
    return Profile(name=name, description=description, settings=tuple(resolved), source=source)


def _level(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in LEVELS:
        raise ProfileError(f"{where}: level must be an integer 0-5, got {value!r}")
    return value


def _setting(kind: str, value: Any, where: str) -> KindSetting:
    if kind not in KINDS:
        close = difflib.get_close_matches(kind, sorted(KINDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; known kinds: {', '.join(sorted(KINDS))}"
        raise ProfileError(f"{where}: unknown kind {kind!r}{hint}")
    spec = KINDS[kind]
    if not isinstance(value, dict):
        level = _level(value, f"{where}")
        return KindSetting(kind, level, {k: float(v) for k, v in spec.at_level(level).items()})
    _unknown(value, SETTING_KEYS, lambda key: f"{where}: unknown key {key!r}")
    level = _level(value["level"], f"{where}.level") if "level" in value else None
    overrides = value.get("params") or {}
    if not isinstance(overrides, dict):
        raise ProfileError(f"{where}.params: expected a mapping of parameter name to number")
    names = [p.name for p in spec.params]
    _unknown(overrides, set(names), lambda key: f"{where}.params: unknown parameter {key!r} of {kind} (has {', '.join(names)})")
    if level is None:
        missing = [n for n in names if n not in overrides]
        if missing:
            raise ProfileError(f"{where}: give a level or every parameter; missing {', '.join(missing)}")
    params = spec.at_level(level) if level is not None else {}
    for name, number in overrides.items():
        problem = spec.param(name).problem(number)
        if problem:
            raise ProfileError(f"{where}.params.{name}: {problem}")
        params[name] = number
    return KindSetting(kind, level, {k: float(params[k]) for k in names})


def _refuse_duplicate_keys(node: yaml.Node, source: str, path: tuple[str, ...] = ()) -> None:
    """PyYAML keeps the last of two equal keys silently; a profile file must not."""
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(item, source, path)
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        line = key_node.start_mark.line + 1
        if key in seen:
            if path == ("profiles",):
                where = f"{source}: profiles: duplicate profile name {key!r}"
            elif len(path) >= 2 and path[0] == "profiles":
                field = ".".join(path[2:] + (key,))
                where = f"{source}: profile {path[1]!r}: {field}: duplicate key {key!r}"
            else:
                where = f"{source}: {'.'.join(path + (key,))}: duplicate key {key!r}"
            raise ProfileError(f"{where} at line {line} (first at line {seen[key]})")
        seen[key] = line
        _refuse_duplicate_keys(value_node, source, path + (key,))
