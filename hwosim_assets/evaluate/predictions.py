"""What a model may answer for one packet, and the check that turns its answer into a Prediction.

A model answers with a :class:`Prediction` or a plain dict with the same keys
(any subset; None means nothing to say):

* ``flags``: boolean array shaped like ``packet.values``: the values it
  believes corrupted;
* ``kinds``: ``{kind name: boolean array}``: which kind it believes each
  flagged value suffered (names of ``hwosim_assets.perturb.truth.BITS`` or
  their aliases), scored per kind;
* ``scores``: float array shaped like ``packet.values``: how anomalous each
  value is (higher = more), what ``score_one`` returns; scored by average
  precision;
* ``cleaned``: float array shaped like ``packet.values``: its reconstruction
  of the values, scored against the clean values in units of their ERR;
* ``events``: a list of :class:`Event` (or dicts with its fields): a transit
  with its mid-time and depth, an anomaly with its time; an event with an
  ``id`` it has used before updates that one (an early detection refined
  later);
* ``health``: ``{"gaps": [...], "duplicates": [...], "reordered": [...]}``,
  each a list of ``(lap, seq)`` pairs (or bare seqs, lap 0): the packets it
  noticed missing, delivered twice, or delivered late.

Anything else - an unknown key, an array of the wrong shape or type, a name
that is not a kind, a time that is not a number - is a malformed prediction:
:func:`check` raises a ModelError naming the model, the packet and the field,
so a model's bug is never scored as a bad answer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np

from hwosim_assets.evaluate.model import LoadedModel
from hwosim_assets.perturb.kinds import ELEMENT_KINDS

HEALTH_KINDS = ("gaps", "duplicates", "reordered")


class Located(Protocol):
    """What an answer is checked against: a packet, or the end of the stream (``finish``)."""

    @property
    def where(self) -> str:
        """Where, as a message names it."""
        ...

    @property
    def values(self) -> np.ndarray:
        """The values an array answer is shaped like."""
        ...


@dataclass(frozen=True)
class Event:
    """Something that happened in the observation, as the model saw it.

    ``time`` is MJD (the packets' event time), ``depth`` a fraction of the
    out-of-event flux (a transit's), ``duration`` days. ``detected_at`` is
    filled in by the harness: the event time of the packet after which the
    model first reported it (NAB counts how early that is)."""

    kind: str = "transit"
    time: float = math.nan
    depth: float | None = None
    duration: float | None = None
    id: str | None = None
    detected_at: float | None = None


@dataclass(frozen=True)
class Prediction:
    """One packet's answer; every field optional (see the module docstring)."""

    flags: np.ndarray | None = None
    kinds: dict[str, np.ndarray] | None = None
    scores: np.ndarray | None = None
    cleaned: np.ndarray | None = None
    events: list[Event] | None = None
    health: dict[str, list[tuple[int, int]]] | None = None


FIELDS = tuple(f.name for f in fields(Prediction))
EVENT_FIELDS = tuple(f.name for f in fields(Event) if f.name != "detected_at")
EMPTY = Prediction()


def checked_array(model: LoadedModel, packet: Located, name: str, value: Any, kind: str) -> np.ndarray:
    """``value`` as an array shaped like ``packet.values``, of booleans or of numbers (``kind``)."""
    array = value if isinstance(value, np.ndarray) else None
    if array is None:
        try:
            array = np.asarray(value)
        except Exception as error:  # noqa: BLE001 - whatever the model returned
            raise model.failure(f"returned malformed {name}", packet, f"not an array: {error}") from None
    shape = packet.values.shape
    if array.shape != shape:
        raise model.failure(
            f"returned malformed {name}", packet, f"shape {array.shape}, expected {shape} like packet.values"
        )
    if kind == "bool" and array.dtype != np.bool_:
        raise model.failure(f"returned malformed {name}", packet, f"dtype {array.dtype}, expected bool")
    if kind == "float" and array.dtype.kind not in "fiu":
        raise model.failure(f"returned malformed {name}", packet, f"dtype {array.dtype}, expected numbers")
    return array


def _event(model: LoadedModel, packet: Located, value: Any) -> Event:
    if isinstance(value, Event):
        event = value
    elif isinstance(value, dict):
        unknown = sorted(set(value) - set(EVENT_FIELDS))
        if unknown:
            raise model.failure(
                "returned a malformed event",
                packet,
                f"unknown field {unknown[0]!r} (fields: {', '.join(EVENT_FIELDS)})",
            )
        event = Event(**value)
    else:
        raise model.failure(
            "returned a malformed event", packet, f"expected an Event or a dict, got {type(value).__name__}"
        )
    if not isinstance(event.kind, str) or not event.kind:
        raise model.failure("returned a malformed event", packet, f"kind must be a name, got {event.kind!r}")
    for name in ("time", "depth", "duration"):
        number = getattr(event, name)
        if number is None and name != "time":
            continue
        if (
            isinstance(number, bool)
            or not isinstance(number, (int, float, np.floating, np.integer))
            or not math.isfinite(number)
        ):
            raise model.failure("returned a malformed event", packet, f"{name} must be a finite number, got {number!r}")
    if event.id is not None and not isinstance(event.id, str):
        raise model.failure("returned a malformed event", packet, f"id must be text, got {event.id!r}")
    return Event(
        event.kind,
        float(event.time),
        None if event.depth is None else float(event.depth),
        None if event.duration is None else float(event.duration),
        event.id,
    )


def _pairs(model: LoadedModel, packet: Located, name: str, values: Iterable) -> list[tuple[int, int]]:
    pairs = []
    try:
        for item in values:
            lap, seq = (0, item) if isinstance(item, (int, np.integer)) else item
            if isinstance(lap, bool) or isinstance(seq, bool):
                raise TypeError("a flag is not a packet number")
            pairs.append((int(lap), int(seq)))
    except (TypeError, ValueError) as error:
        raise model.failure(
            "returned malformed health", packet, f"{name}: expected (lap, seq) pairs or seqs ({error})"
        ) from None
    return pairs


def check(raw: Any, model: LoadedModel, packet: Located) -> Prediction:
    """``raw`` (what predict_one or finish returned) as a checked Prediction."""
    if raw is None:
        return EMPTY
    if isinstance(raw, Prediction):
        given = {name: getattr(raw, name) for name in FIELDS}
    elif isinstance(raw, dict):
        unknown = [k for k in raw if k not in FIELDS]
        if unknown:
            raise model.failure(
                "returned a malformed prediction", packet, f"unknown key {unknown[0]!r} (keys: {', '.join(FIELDS)})"
            )
        given = {name: raw.get(name) for name in FIELDS}
    else:
        raise model.failure(
            "returned a malformed prediction", packet, f"expected a dict or a Prediction, got {type(raw).__name__}"
        )
    out: dict[str, Any] = {}
    if given["flags"] is not None:
        out["flags"] = checked_array(model, packet, "flags", given["flags"], "bool")
    if given["kinds"] is not None:
        if not isinstance(given["kinds"], dict):
            raise model.failure("returned malformed kinds", packet, "expected {kind name: boolean array}")
        kinds = {}
        for name, mask in given["kinds"].items():
            spec = ELEMENT_KINDS.get(name)
            if spec is None:
                raise model.failure(
                    "returned malformed kinds",
                    packet,
                    f"{name!r} is not a perturbation kind (known: {', '.join(ELEMENT_KINDS)})",
                )
            kinds[spec.alias_of or name] = checked_array(model, packet, f"kinds[{name!r}]", mask, "bool")
        out["kinds"] = kinds
    for name in ("scores", "cleaned"):
        if given[name] is not None:
            out[name] = checked_array(model, packet, name, given[name], "float")
    if given["events"] is not None:
        if isinstance(given["events"], (Event, dict)):
            given["events"] = [given["events"]]
        out["events"] = [_event(model, packet, e) for e in given["events"]]
    if given["health"] is not None:
        if not isinstance(given["health"], dict) or set(given["health"]) - set(HEALTH_KINDS):
            raise model.failure(
                "returned malformed health", packet, f"expected a dict with keys among {', '.join(HEALTH_KINDS)}"
            )
        out["health"] = {name: _pairs(model, packet, name, values) for name, values in given["health"].items()}
    return Prediction(**out)
