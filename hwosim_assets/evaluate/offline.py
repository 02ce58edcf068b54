"""Offline scoring: a model run over a perturbed partition as the stream would deliver it, as fast as it goes.

Offline is for backfills over every level: no database, no pacing. Packets are
cut from the perturbed table (the same :class:`Packet` the SDK gives live) and
delivered in the order the profile's stream faults would deliver them - lost
packets never come, duplicates come twice, late ones come late - using the
replay's own fault planner (``stream.faults.plan_window``) on the
observation's original cadence, as one window. So a health detector is
scored offline too, and a flagger sees exactly what a live consumer would
(live replays plan per window, so their faults differ in detail, not in kind
or rate).

Events. When the answer key has no known events (anything but the sample
time series), a model's events are scored against its own answer on the
clean data: a fresh instance of the model is run over the clean table once
(:func:`clean_events`; cached per model and observation within a process).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwosim_assets.evaluate.answers import AnswerKey
from hwosim_assets.evaluate.harness import Session, StreamFaultTruth
from hwosim_assets.evaluate.model import LoadedModel, ModelError, load_model
from hwosim_assets.evaluate.predictions import Event
from hwosim_assets.evaluate.scorecard import Scorecard
from hwosim_assets.stream.faults import plan_window
from hwosim_assets.stream.pacing import Pacing, schedule_offsets
from hwosim_assets.stream.packets import Packet, image_plane, readonly, required_plane


@dataclass(frozen=True)
class ModelSpec:
    """A model as models.yaml or the command line names it."""

    name: str
    reference: str
    params: dict[str, Any] = field(default_factory=dict)
    baseline: bool = False  # the reference of the robustness figures for the kinds it answers


def packets(key: AnswerKey, order: np.ndarray | None = None, *, clean: bool = False) -> Iterator[Packet]:
    """The packets of the answer key's perturbed (or clean) table, in ``order`` (packet indices,
    one per delivery; default: every packet once, by seq). ``offset`` is the delivery number."""
    table = key.clean_table if clean else key.table
    order = np.arange(key.n_packets) if order is None else order
    if key.family == "spectra":
        values = readonly(table["flux"].to_numpy().astype(np.float64))
        errors = readonly(table["flux_error"].to_numpy().astype(np.float64))
        dq = readonly(table["dq"].to_numpy().astype(np.uint32))
        wavelength = readonly(table["wavelength"].to_numpy().astype(np.float64))
        channel = readonly(table["channel"].to_numpy())
        integration = table["integration"].to_numpy()
        starts = key.starts
        for offset, i in enumerate(order.tolist()):
            a, b = starts[i], starts[i + 1]
            yield Packet(
                "spectra",
                int(key.seqs[i]),
                0,
                offset,
                float(key.event_time[i]),
                values[a:b],
                errors[a:b],
                dq[a:b],
                wavelength[a:b],
                channel[a:b],
                int(integration[a]),
            )
        return
    if key.shapes is None:
        raise ValueError(f"the answer key of {key.observation} has no tile shapes")
    shapes = key.shapes
    columns = {name: table[name].to_list() for name in ("sci", "err", "dq", "wavelength", "source")}
    frame, y0, x0 = (table[c].to_numpy() for c in ("frame", "y0", "x0"))
    for offset, i in enumerate(order.tolist()):
        ny, nx = shapes[i]
        shape, where = (int(ny), int(nx)), f"seq={key.seqs[i]} offset={offset}"
        yield Packet(
            "images",
            int(key.seqs[i]),
            0,
            offset,
            float(key.event_time[i]),
            required_plane(columns["sci"][i], "sci", shape, where),
            required_plane(columns["err"][i], "err", shape, where),
            required_plane(columns["dq"][i], "dq", shape, where),
            image_plane(columns["wavelength"][i], "wavelength", shape),
            frame=int(frame[i]),
            source=columns["source"][i],
            y0=int(y0[i]),
            x0=int(x0[i]),
        )


def delivery(
    key: AnswerKey, stream_faults: dict, *, seed: int, profile_hash: str
) -> tuple[np.ndarray, StreamFaultTruth]:
    """Packet indices in the order the profile's stream faults deliver them, and the faults' truth."""
    due = schedule_offsets(Pacing("cadence", speed=1.0), key.n_packets, np.nan_to_num(key.event_time))
    plan = plan_window(
        key.seqs,
        np.zeros(key.n_packets, dtype=np.int64),
        due,
        stream_faults or {},
        seed=seed,
        profile_hash=profile_hash,
        observation=key.observation,
    )
    kinds = plan.truth["kind"].to_list()
    pairs = list(zip(plan.truth["lap"].to_list(), plan.truth["seq"].to_list(), strict=False))
    faults = StreamFaultTruth(
        lost={p for p, k in zip(pairs, kinds, strict=False) if k == "packet_loss"},
        duplicated={p for p, k in zip(pairs, kinds, strict=False) if k == "duplicates"},
    )
    return plan.packet, faults


def card_for(
    spec: ModelSpec, model: LoadedModel | None, key: AnswerKey, profile: str, profile_hash: str, seed: int, **live: Any
) -> Scorecard:
    return Scorecard(
        model=spec.name,
        model_ref=spec.reference,
        model_version=model.version if model else "",
        model_hash=model.model_hash if model else "",
        model_params=model.params if model else dict(spec.params),
        observation=key.observation,
        family=key.family,
        profile=profile,
        profile_hash=profile_hash,
        seed=seed,
        **live,
    )


def load(spec: ModelSpec, seed: int) -> LoadedModel:
    return load_model(spec.reference, spec.params, name=spec.name, seed=seed)


_CLEAN_EVENTS: dict[tuple, list[Event]] = {}


def clean_events(spec: ModelSpec, key: AnswerKey, seed: int) -> list[Event]:
    """The events a fresh instance of the model reports on the clean data: the reference its
    events are scored against when the observation's true events are not known."""
    model = load(spec, seed)
    cache_key = (spec.reference, model.model_hash, key.observation, key.n_elements, seed)
    if cache_key not in _CLEAN_EVENTS:
        session = Session(model, key)
        try:
            for packet in packets(key, clean=True):
                session.feed(packet)
            session.finish()
        except ModelError as error:
            raise ModelError(f"{error} (on the clean data, where its reference answer is taken)") from None
        _CLEAN_EVENTS[cache_key] = session.final_events()
        if len(_CLEAN_EVENTS) > 64:
            _CLEAN_EVENTS.pop(next(iter(_CLEAN_EVENTS)))
    return _CLEAN_EVENTS[cache_key]


def score_offline(
    spec: ModelSpec,
    key: AnswerKey,
    *,
    profile: str,
    profile_hash: str,
    seed: int,
    stream_faults: dict | None = None,
) -> Scorecard:
    """Score one model on one observation x profile, offline; a failure is recorded, not raised."""
    try:
        model = load(spec, seed)
    except ModelError as error:
        return _failed(card_for(spec, None, key, profile, profile_hash, seed), error)
    card = card_for(spec, model, key, profile, profile_hash, seed)
    if not model.handles(key.family):
        card.status, card.error = "skipped", f"model {spec.name!r} reads {', '.join(model.families)}, not {key.family}"
        return card
    order, faults = delivery(key, stream_faults or {}, seed=seed, profile_hash=profile_hash)
    session = Session(model, key)
    try:
        for packet in packets(key, order):
            session.feed(packet)
        session.finish()
        reference = clean_events(spec, key, seed) if "events" in session.answered and key.events is None else None
    except ModelError as error:
        card = _failed(card, error)
        card.metrics = {"run.packets_delivered": len(session.delivered)}
        return card
    card.metrics = session.metrics(faults, reference)
    return card


def _failed(card: Scorecard, error: Exception) -> Scorecard:
    card.status, card.error = "failed", str(error)
    return card
