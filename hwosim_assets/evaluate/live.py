"""Live scoring: a model fed from a stream table through the SDK, at the stream's pace, and kept to it.

:func:`score_live` follows a stream with :class:`StreamReader` (polling
every ``poll_interval`` seconds), hands each packet to the model as soon as
it is read, and stamps when the answer was there. Keeping up is part of the
score (``live.*`` metrics): per-packet latency = output time - emitted
time; the fraction of packets answered within the stream's cadence (the
median spacing of their scheduled times, or ``1 / rate``); the backlog -
packets already emitted and not yet answered when each answer came. The
injected stream faults are read from the evaluator-only truth table
(``hwosim_truth_stream_faults``), which the model never sees.

Rate as a test axis: :func:`score_at_rates` replays the observation into a
scratch stream at each rate (the real replay: writer, pacer, faults) while
the model consumes it live, then removes the scratch stream. The replay runs
in a process of its own, as it would on a real deployment: in the scoring
process it would compete with the model for the interpreter lock and make
the model look slower than it is. Where the model stops keeping up shows as
``live.within_cadence`` falling and the backlog growing.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import multiprocessing.queues
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess

import numpy as np
import polars as pl
import sqlalchemy as sa

from hwosim_assets.evaluate.answers import AnswerKey
from hwosim_assets.evaluate.harness import Session, StreamFaultTruth
from hwosim_assets.evaluate.model import LoadedModel, ModelError
from hwosim_assets.evaluate.offline import ModelSpec, card_for, clean_events, load
from hwosim_assets.evaluate.scorecard import Scorecard
from hwosim_assets.stream import schema
from hwosim_assets.stream.config import StreamSpec
from hwosim_assets.stream.pacing import Pacing
from hwosim_assets.stream.reader import StreamReader
from hwosim_assets.stream.replay import register_stream, replay_window, window_packets
from hwosim_assets.stream.status import reset


def stream_fault_truth(
    engine: sa.Engine, stream: str, first_offset: int, last_offset: int, first_lap: int
) -> StreamFaultTruth:
    """Injected losses and duplicates of ``stream`` over what a reader read (offsets first..last)."""
    t = schema.truth_stream_faults
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.c.lap, t.c.seq, t.c.kind, t.c.offset).where(
                t.c.stream == stream, t.c.kind.in_(("packet_loss", "duplicates")), t.c.lap >= first_lap
            )
        ).all()
    lost = {(r.lap, r.seq) for r in rows if r.kind == "packet_loss"}
    duplicated = {(r.lap, r.seq) for r in rows if r.kind == "duplicates" and first_offset <= r.offset <= last_offset}
    return StreamFaultTruth(lost=lost, duplicated=duplicated)


def score_live(
    spec: ModelSpec,
    key: AnswerKey,
    engine: sa.Engine,
    stream: str,
    *,
    profile: str,
    profile_hash: str,
    seed: int,
    rate: float | None = None,
    start_offset: int = 0,
    poll_interval: float = 0.002,
    idle_timeout: float = 10.0,
    max_packets: int | None = None,
    done: Callable[[], bool] | None = None,
    model: LoadedModel | None = None,
) -> Scorecard:
    """Score one model on a stream as it is delivered. Stops after ``max_packets``, or when
    ``done()`` says the producer finished and everything was read, or after ``idle_timeout``
    seconds without a new packet. A model failure is recorded in the scorecard, not raised.
    ``model``: the model already loaded (loading can take a while: do it before the stream starts)."""
    if model is None:
        try:
            model = load(spec, seed)
        except ModelError as error:
            card = card_for(spec, None, key, profile, profile_hash, seed, mode="live", stream=stream, rate=rate)
            card.status, card.error = "failed", str(error)
            return card
    card = card_for(spec, model, key, profile, profile_hash, seed, mode="live", stream=stream, rate=rate)
    if not model.handles(key.family):
        card.status, card.error = "skipped", f"model {spec.name!r} reads {', '.join(model.families)}, not {key.family}"
        return card
    reader = StreamReader(engine, stream, start_offset=start_offset)
    session = Session(model, key)
    try:
        idle_since = time.monotonic()
        while max_packets is None or len(session.delivered) < max_packets:
            finished = done() if done is not None else False  # asked before polling: nothing is missed
            batch = reader.poll_packets()
            if not batch:
                if finished or time.monotonic() - idle_since > idle_timeout:
                    break
                time.sleep(poll_interval)
                continue
            idle_since = time.monotonic()
            for packet in batch[: None if max_packets is None else max_packets - len(session.delivered)]:
                session.feed(packet)
        session.finish()
        reference = clean_events(spec, key, seed) if "events" in session.answered and key.events is None else None
    except ModelError as error:
        card.status, card.error = "failed", str(error)
        card.metrics = {"run.packets_delivered": len(session.delivered)}
        return card
    if not session.delivered:
        card.status, card.error = "failed", f"no packet of stream {stream!r} was read within {idle_timeout:g} s"
        return card
    offsets = [d[0] for d in session.delivered]
    faults = stream_fault_truth(engine, stream, min(offsets), max(offsets), min(d[1] for d in session.delivered))
    cadence = 1.0 / rate if rate else _cadence(np.asarray(session.scheduled))
    card.metrics = session.metrics(faults, reference, cadence_s=cadence)
    if rate:
        card.metrics["live.rate_per_s"] = rate
    return card


def _cadence(scheduled: np.ndarray) -> float | None:
    """The stream's packet spacing: median gap between consecutive due times."""
    gaps = np.diff(np.sort(scheduled[np.isfinite(scheduled)]))
    gaps = gaps[gaps > 0]
    return float(np.median(gaps)) if len(gaps) else None


def scratch_stream_name(spec: ModelSpec, key: AnswerKey, rate: float) -> str:
    digest = hashlib.sha256(f"{spec.name}|{spec.reference}|{key.observation}|{rate}|{time.time()}".encode()).hexdigest()
    return f"scorecard-{digest[:12]}"


def score_at_rates(
    spec: ModelSpec,
    key: AnswerKey,
    engine: sa.Engine,
    rates: list[float],
    *,
    profile: str,
    profile_hash: str,
    seed: int,
    stream_faults: dict | None = None,
    n_packets: int | None = None,
    lead_s: float = 0.3,
) -> list[Scorecard]:
    """The model scored live at each rate (packets per second) on the observation's first
    ``n_packets`` packets (all by default), each replayed into a scratch stream that is removed after."""
    schema.create_or_migrate(engine)
    table = key.table
    if n_packets is not None:
        table = table.filter(table["seq"].is_in(key.seqs[:n_packets].tolist()))
    cards = []
    for rate in rates:
        name = scratch_stream_name(spec, key, rate)
        stream = StreamSpec(
            name=name,
            observation=_observation_slug(key.observation),
            profile=profile,
            family=key.family,
            pacing=Pacing("rate", rate=float(rate)),
            tick_seconds=1.0,
            window=max(1, table["seq"].n_unique()),
            loop=False,
        )
        try:
            model = load(spec, seed)  # before the stream starts: importing a model is not part of keeping up
        except ModelError as error:
            card = card_for(spec, None, key, profile, profile_hash, seed, mode="live", rate=float(rate))
            card.status, card.error = "failed", str(error)
            cards.append(card)
            continue
        register_stream(engine, stream, profile_hash)
        context = multiprocessing.get_context("spawn")  # not fork: polars and the engine hold threads and sockets
        errors: multiprocessing.queues.Queue[str] = context.Queue()
        producer = context.Process(
            target=_replay_process,
            args=(
                engine.url.render_as_string(hide_password=False),
                stream,
                table,
                stream_faults or {},
                seed,
                profile_hash,
                lead_s,
                errors,
            ),
            name=f"hwosim-replay-{name}",
            daemon=True,
        )
        producer.start()

        def done(producer: BaseProcess = producer) -> bool:
            return not producer.is_alive()

        try:
            card = score_live(
                spec,
                key,
                engine,
                name,
                profile=profile,
                profile_hash=profile_hash,
                seed=seed,
                rate=float(rate),
                done=done,
                idle_timeout=60.0,
                model=model,
            )
        finally:
            producer.join()
            _remove(engine, name)
        if producer.exitcode != 0:
            problem = errors.get() if not errors.empty() else f"exit code {producer.exitcode}"
            raise RuntimeError(f"the replay of scratch stream {name} at {rate:g} packets/s failed: {problem}")
        card.stream = None  # the scratch stream is gone; its identity is the rate
        cards.append(card)
    return cards


def _replay_process(
    url: str,
    stream: StreamSpec,
    table: pl.DataFrame,
    faults: dict,
    seed: int,
    profile_hash: str,
    lead_s: float,
    errors: multiprocessing.queues.Queue[str],
) -> None:
    """The producer of a scratch stream, in its own process: one paced window of every packet."""
    from hwosim_assets.stream.writer import make_engine

    engine = make_engine(url)
    try:
        replay_window(
            engine,
            stream,
            window_packets(stream, table, 0),
            window_index=0,
            start_time=time.time() + lead_s,
            stream_faults=faults,
            seed=seed,
            profile_hash=profile_hash,
        )
    except BaseException as error:  # noqa: BLE001 - reported to the scoring process
        errors.put(f"{type(error).__name__}: {error}")
        raise SystemExit(1) from None
    finally:
        engine.dispose()


def _observation_slug(observation: str) -> str:
    """The stream registry keeps observation ids of the catalogue's form; test tables may use others."""
    return observation if schema.OBSERVATION.fullmatch(observation) else "scratch"


def _remove(engine: sa.Engine, name: str) -> None:
    reset(engine, name)
    with engine.begin() as conn:
        conn.execute(schema.streams.delete().where(schema.streams.c.name == name))
