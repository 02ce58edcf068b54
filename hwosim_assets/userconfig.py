"""The user's config files (profiles.yaml, streams.yaml): read safely, checked by strict models.

Both files are read when the Dagster code location loads, so a hostile or
careless file must fail fast and clearly, never hang the process or surface
later as a run-time error. Two layers:

* :func:`read_yaml` reads plain data only. YAML aliases, anchors and tags are
  refused (a 399-byte alias bomb would otherwise expand to billions of nodes,
  and nobody needs them in a config file), nesting deeper than
  :data:`MAX_DEPTH` and files larger than :data:`MAX_BYTES` are refused, and a
  key given twice in one mapping is an error at any level (PyYAML would keep
  the last one silently). Timestamps are left as text, so that the models
  parse them with one clear error. Every problem is a
  :class:`ConfigFileError` with the path of keys and the line.
* :class:`StrictModel` is the base of the pydantic models that describe each
  file: unknown keys refused with a suggestion, no type coercion (``true`` is
  not 1, ``'3'`` is not 3), and :func:`number`, :func:`integer` and
  :func:`text` give every value its bounds and a message that says what was
  expected. :func:`problems` turns a ``ValidationError`` into
  (location, message) pairs for the loader to prefix with file and entry.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

MAX_BYTES = 1_000_000  # the shipped profiles.yaml is 4 kB
MAX_DEPTH = 20  # profiles.yaml needs 7 levels (file, profiles, name, kinds, kind, params, value)

Location = tuple[Any, ...]


class ConfigFileError(ValueError):
    """A config file that is not plain, bounded YAML.

    ``path`` is the keys (and list positions) from the top of the document to
    the problem, empty when the problem is the document itself."""

    def __init__(self, problem: str, path: Location = ()):
        super().__init__(problem)
        self.problem = problem
        self.path = path


class DuplicateKeyError(ConfigFileError):
    """A key given twice in one mapping; ``path`` ends with the key."""

    def __init__(self, path: Location, line: int, first_line: int):
        super().__init__(f"duplicate key {shown(path[-1])} at line {line} (first at line {first_line})", path)
        self.key, self.line, self.first_line = path[-1], line, first_line


def read_text(path: Path) -> str:
    """A config file's text: at most MAX_BYTES, UTF-8. OSError is left to the caller."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ConfigFileError(f"larger than {MAX_BYTES:,} bytes: not a config file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_yaml(text: str, source: str = "<memory>") -> Any:
    """Plain data (dicts, lists, str, int, float, bool, None) from YAML text.

    Raises ConfigFileError for anything else; ``source`` names the file in
    PyYAML's own messages."""
    if len(text) > MAX_BYTES:
        raise ConfigFileError(f"larger than {MAX_BYTES:,} characters: not a config file")
    loader = None
    try:
        loader = _PlainLoader(text)  # (checks the characters)
        loader.name = source  # PyYAML's marks say 'in "<source>", line N'
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicate_keys(loader, node, ())
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"not valid YAML: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()


# Implicit types a config file does not need: timestamps stay text (the models
# parse them), '<<' merge keys and '=' are plain strings.
_NOT_RESOLVED = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"}


class _PlainLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases, anchors, tags and deep nesting while
    composing, before anything is expanded or built."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _NOT_RESOLVED]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, text: str):
        super().__init__(text)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        line = f"line {event.start_mark.line + 1}"
        if isinstance(event, yaml.AliasEvent):
            raise ConfigFileError(f"{line}: YAML aliases (*{event.anchor}) are not allowed in a config file")
        if event.anchor is not None:
            raise ConfigFileError(f"{line}: YAML anchors (&{event.anchor}) are not allowed in a config file")
        if event.tag is not None:
            raise ConfigFileError(f"{line}: YAML tags ({event.tag}) are not allowed in a config file")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise ConfigFileError(f"{line}: nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # Python refuses to parse integers of more than 4,300 digits
            raise ConfigFileError(f"line {node.start_mark.line + 1}: integer of {len(node.value)} digits") from None


_PlainLoader.add_constructor("tag:yaml.org,2002:int", _PlainLoader.construct_yaml_int)


def _refuse_duplicate_keys(loader: _PlainLoader, node: yaml.Node, path: Location) -> None:
    """Keys are compared as the values they construct to (``1`` and ``0x1`` are
    the same key), as the dict that PyYAML builds would compare them."""
    if isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            _refuse_duplicate_keys(loader, item, path + (position,))
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[Any, int] = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            raise ConfigFileError(f"line {line}: a key must be a single value, not a list or mapping", path)
        key = loader.construct_object(key_node)
        if key in seen:
            raise DuplicateKeyError(path + (key,), line, seen[key])
        seen[key] = line
        _refuse_duplicate_keys(loader, value_node, path + (key,))


class StrictModel(BaseModel):
    """Base of every user-config model: unknown keys refused (with the closest
    known one as a hint), no coercion between types, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    key_word: ClassVar[str] = "key"  # what an unknown key is called in the message: "kind", "parameter"

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    close = difflib.get_close_matches(str(key), list(cls.model_fields), n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(cls.model_fields)})"
                    context = {"word": cls.key_word, "key": shown(key), "hint": hint, "field": key}
                    raise PydanticCustomError("unknown_key", "unknown {word} {key}{hint}", context)
        return data


def _must_be(what: str) -> WrapValidator:
    """Replace pydantic's messages for one value by one that says what is expected."""

    def wrap(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("value", "must be {what}", {"what": what}) from None

    return WrapValidator(wrap)


def number(
    low: float,
    high: float,
    what: str = "a number",
    *,
    low_open: bool = False,
    high_open: bool = False,
    whole: bool = False,
) -> Any:
    """A float field: an int or float (not a bool, not text) within the bounds.
    Infinity is accepted only when ``high`` is infinite, NaN never."""
    return Annotated[float, *number_checks(low, high, what, low_open=low_open, high_open=high_open, whole=whole)]


def number_checks(
    low: float,
    high: float,
    what: str = "a number",
    *,
    low_open: bool = False,
    high_open: bool = False,
    whole: bool = False,
) -> tuple[Any, ...]:
    """The metadata of a :func:`number` field, for a type the type checker can read:
    ``Annotated[float, *number_checks(...)]``."""
    interval = f"{'(' if low_open else '['}{_short(low)}, {_short(high)}{')' if high_open else ']'}"
    field = Field(
        strict=True,
        allow_inf_nan=math.isinf(high),
        gt=low if low_open else None,
        ge=None if low_open else low,
        lt=high if high_open else None,
        le=None if high_open else high,
        multiple_of=1 if whole else None,
    )
    return field, _must_be(f"{what} in {interval}")


def _short(value: float) -> str:
    """1e+06 -> 1e6, 0.001 -> 0.001, inf -> inf."""
    return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", f"{value:g}")


def integer(low: int, high: int, what: str = "an integer") -> Any:
    """An int field (not a bool, not a float) within [low, high]."""
    return Annotated[int, *integer_checks(low, high, what)]


def integer_checks(low: int, high: int, what: str = "an integer") -> tuple[Any, ...]:
    """The metadata of an :func:`integer` field: ``Annotated[int, *integer_checks(...)]``."""
    expected = f"{low} ({what})" if low == high else f"{what}, an integer {low}-{high}"
    return Field(strict=True, ge=low, le=high), _must_be(expected)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def text(what: str = "text", *, pattern: re.Pattern | None = None, max_length: int = 10_000) -> Any:
    """A str field: at most ``max_length`` characters, no control characters
    but tab and newline, encodable as UTF-8 (no lone surrogates), and matching
    all of ``pattern`` when given (``re.fullmatch``, so a trailing newline does
    not pass as it would with ``re.match`` and ``$``)."""
    return Annotated[str, *text_checks(what, pattern=pattern, max_length=max_length)]


def text_checks(what: str = "text", *, pattern: re.Pattern | None = None, max_length: int = 10_000) -> tuple[Any, ...]:
    """The metadata of a :func:`text` field: ``Annotated[str, *text_checks(...)]``."""

    def check(value: str) -> str:
        if len(value) > max_length:
            context = {"what": what, "n": max_length}
            raise PydanticCustomError("value", "must be {what} of at most {n} characters", context)
        if pattern is not None and not pattern.fullmatch(value):
            raise PydanticCustomError("value", "must be {what}", {"what": what})
        if _CONTROL.search(value) or not _encodable(value):
            raise PydanticCustomError("value", "must be printable text (no control characters)")
        return value

    return Field(strict=True), AfterValidator(check)


_T = TypeVar("_T")

if TYPE_CHECKING:
    from typing import TypeAlias

    Omittable: TypeAlias = "_T | None"
else:

    class Omittable:
        """``Omittable[X]``: a field that may be left out but not given as null.

        Its default is None, which pydantic does not validate, while an explicit
        null is refused: so pydantic checks values against ``X`` itself, and the
        type checker sees what the attribute holds, ``X | None``."""

        def __class_getitem__(cls, item: Any) -> Any:
            return item


def _encodable(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def shown(value: Any, limit: int = 60) -> str:
    """repr() for messages: shortened, and safe for integers too long to print."""
    try:
        result = repr(value)
    except ValueError:  # more than 4,300 digits
        return f"<an integer of {value.bit_length()} bits>"
    return result if len(result) <= limit else result[: limit - 3] + "..."


# pydantic's error types, phrased as the rest of the messages are; ctx values fill the braces.
_PHRASES = {
    "missing": "missing",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "dict_type": "expected a mapping",
    "list_type": "expected a list",
    "string_type": "must be text",
    "bool_type": "must be true or false",
    "datetime_type": "must be an ISO 8601 time",
    "literal_error": "must be one of {expected}",
    "too_short": "must not be empty",
    "too_long": "must have at most {max_length} entries",
}
_WITHOUT_INPUT = {"missing", "unknown_key", "rule"}  # the message already says all there is


def problems(error: ValidationError) -> list[tuple[Location, str]]:
    """(location, message) of each error: the location is the path of keys to
    the value at fault, the message says what was expected and what was given."""
    found = []
    for item in error.errors(include_url=False):
        ctx = item.get("ctx") or {}
        location = tuple(item["loc"]) + ((ctx["field"],) if "field" in ctx else ())
        phrase = _PHRASES.get(item["type"])
        message = phrase.format(**ctx) if phrase else item["msg"]
        if item["type"] not in _WITHOUT_INPUT:
            message += f", got {shown(item['input'])}"
        found.append((location, message))
    return found


def rule_error(message: str, field: str | None = None) -> PydanticCustomError:
    """An error for a rule between fields, reported at ``field`` of the model."""
    return PydanticCustomError("rule", message, {"field": field} if field else None)


M = TypeVar("M", bound=BaseModel)


def where(loc: Location, document: Any, entries: str, noun: str) -> str:
    """A location as messages give it, e.g. "stream 'soss-fast': field pacing.rate: ". An entry of the
    ``entries`` list is named by its ``name`` when it has a usable one, else by its position."""
    if len(loc) >= 2 and loc[0] == entries:
        try:
            label = document[entries][loc[1]]["name"]
        except (KeyError, IndexError, TypeError):
            label = f"#{loc[1]}"
        field = ".".join(map(str, loc[2:]))
        return f"{noun} {shown(label)}: " + (f"field {field}: " if field else "")
    return ".".join(map(str, loc)) + ": " if loc else ""


def load_file(
    path: Path, model: type[M], error: type[Exception], entries: str, noun: str, expected: str
) -> tuple[M, Any]:
    """Read a user config file safely and check it with its strict ``model``: (the model, the plain
    document). Every problem is one ``error`` naming the file, the entry and the field; ``expected``
    says what the top level must be."""
    try:
        document = read_yaml(read_text(path), str(path))
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc}") from None
    except ConfigFileError as exc:
        raise error(f"{path}: {where(exc.path, None, entries, noun)}{exc.problem}") from None
    if not isinstance(document, dict):
        raise error(f"{path}: expected {expected}, got {shown(document)}")
    try:
        return model.model_validate(document), document
    except ValidationError as exc:
        found = [f"{path}: {where(loc, document, entries, noun)}{message}" for loc, message in problems(exc)]
        raise error("\n".join(found)) from None
