"""One model over one sequence of packets: call it, time it, check its answers, keep them for scoring.

The same :class:`Session` serves offline scoring (packets cut from a
perturbed table) and live scoring (packets read from a stream table through
the SDK): it is fed one packet at a time, so the model cannot tell the two
apart. Per packet it calls ``score_one`` and ``predict_one`` (the answer),
stamps the output time, then ``learn_one`` (test-then-train); it checks the
answer (:func:`predictions.check`) and copies arrays into per-element buffers
of the answer key, for the first delivery of each packet only (a duplicate
is the stream's fault, not a second chance). Scoring happens once, at the
end, vectorised over every element (:meth:`Session.metrics`).

Bookkeeping is a few microseconds per packet - a dict lookup, slice copies
and a list append - so that offline scoring stays far above a million
spectrum rows a second beyond the model's own time (benchmarks/bench_scoring.py).

A model that raises, or answers something malformed, stops its session with
a :class:`ModelError` that names the model and the packet; the caller
records it in the scorecard and goes on with the next model.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwosim_assets.evaluate import metrics as m
from hwosim_assets.evaluate.answers import AnswerKey
from hwosim_assets.evaluate.model import LoadedModel, ModelError
from hwosim_assets.evaluate.predictions import Event, Prediction, check, checked_array
from hwosim_assets.stream.packets import Packet

SECONDS_PER_DAY = 86400.0


class HarnessError(RuntimeError):
    """Packets that do not belong to the answer key (a stream of another observation)."""


def _raised(model: LoadedModel, method: str, packet: Packet | None, error: BaseException) -> ModelError:
    frames = traceback.extract_tb(error.__traceback__)
    where = f" ({frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    return model.failure(f"raised {type(error).__name__} in {method}{where}", packet, str(error))


@dataclass
class StreamFaultTruth:
    """The injected stream faults a health answer is scored against: (lap, seq) sets."""

    lost: set[tuple[int, int]] = field(default_factory=set)
    duplicated: set[tuple[int, int]] = field(default_factory=set)


class Session:
    """One model, one answer key; feed packets, then :meth:`finish` and :meth:`metrics`."""

    def __init__(self, model: LoadedModel, answers: AnswerKey):
        self.model = model
        self.answers = answers
        n = answers.n_elements
        self.seen = np.zeros(answers.n_packets, dtype=bool)
        self.flags: np.ndarray | None = None
        self.kinds: dict[str, np.ndarray] = {}
        self.scores: np.ndarray | None = None
        self.cleaned: np.ndarray | None = None
        self._n = n
        self.answered: set[str] = set()  # prediction fields the model used at least once
        self.events: dict[str | int, Event] = {}  # latest estimate per event id (a number for one without)
        self.first_seen: dict[str | int, float] = {}  # event id -> event time of the packet that first reported it
        self.health: dict[str, set[tuple[int, int]]] = {"gaps": set(), "duplicates": set(), "reordered": set()}
        # one entry per delivery
        self.delivered: list[tuple[int, int, int]] = []  # (offset, lap, seq)
        self.emitted: list[float] = []
        self.scheduled: list[float] = []
        self.output: list[float] = []  # time.time() when the answer was there
        self.model_seconds: list[float] = []  # predict + score + learn
        self.last_event_time = math.nan
        self._anonymous = 0
        self._predict = model.calls.get("predict_one")
        self._score = model.calls.get("score_one")
        self._learn = model.calls.get("learn_one")

    # --- feeding ---------------------------------------------------------------------------

    def feed(self, packet: Packet) -> float:
        """Run the model on one packet and keep its answer; returns the output time (UTC epoch s)."""
        i = self.answers.index(packet.seq)
        if i is None:
            raise HarnessError(
                f"{packet.where} is not a packet of {self.answers.observation} (seq {packet.seq} unknown): "
                "is the stream replaying another observation or profile?"
            )
        t0 = time.perf_counter()
        scores = raw = None
        method = "score_one"
        try:
            if self._score is not None:
                scores = self._score(packet)
            method = "predict_one"
            if self._predict is not None:
                raw = self._predict(packet)
        except Exception as error:  # noqa: BLE001 - the model's failure, named
            raise _raised(self.model, method, packet, error) from None
        out = time.time()
        try:
            if self._learn is not None:
                self._learn(packet)
        except Exception as error:  # noqa: BLE001
            raise _raised(self.model, "learn_one", packet, error) from None
        seconds = time.perf_counter() - t0
        prediction = check(raw, self.model, packet)
        if scores is not None:
            prediction = _with_scores(prediction, scores, self.model, packet)
        self._keep(i, packet, prediction)
        self.delivered.append((packet.offset, packet.lap, packet.seq))
        self.emitted.append(packet.emitted_time)
        self.scheduled.append(packet.scheduled_time)
        self.output.append(out)
        self.model_seconds.append(seconds)
        self.last_event_time = packet.event_time
        return out

    def finish(self) -> None:
        """Call the model's ``finish`` (if it has one) and keep its last answer."""
        call = self.model.calls.get("finish")
        if call is None:
            return
        try:
            raw = call()
        except Exception as error:  # noqa: BLE001
            raise _raised(self.model, "finish", None, error) from None
        prediction = check(raw, self.model, _END)
        for name in ("flags", "kinds", "scores", "cleaned"):
            if getattr(prediction, name) is not None:
                raise self.model.failure(
                    f"returned {name} from finish", None, "per-value answers belong to predict_one"
                )
        self._keep_stream_answers(prediction, self.last_event_time)

    def _keep(self, i: int, packet: Packet, p: Prediction) -> None:
        a, b = self.answers.starts[i], self.answers.starts[i + 1]
        if packet.values.size != b - a:
            raise HarnessError(
                f"{packet.where} of {self.answers.observation} has {packet.values.size} values, the answer key "
                f"{b - a}: the stream and the tables disagree"
            )
        if not self.seen[i]:
            self.seen[i] = True
            if p.flags is not None:
                if self.flags is None:
                    self.flags = np.zeros(self._n, dtype=bool)
                self.flags[a:b] = p.flags.ravel()
                self.answered.add("flags")
            if p.kinds is not None:
                for name, mask in p.kinds.items():
                    if name not in self.kinds:
                        self.kinds[name] = np.zeros(self._n, dtype=bool)
                    self.kinds[name][a:b] = mask.ravel()
                self.answered.add("kinds")
            for name in ("scores", "cleaned"):
                value = getattr(p, name)
                if value is not None:
                    buffer = getattr(self, name)
                    if buffer is None:
                        buffer = np.full(self._n, np.nan)
                        setattr(self, name, buffer)
                    buffer[a:b] = value.ravel()
                    self.answered.add(name)
        self._keep_stream_answers(p, packet.event_time)

    def _keep_stream_answers(self, p: Prediction, now: float) -> None:
        if p.events is not None:
            self.answered.add("events")
            for event in p.events:
                key: str | int
                if event.id is None:
                    key = self._anonymous = self._anonymous + 1
                else:
                    key = event.id
                self.first_seen.setdefault(key, now)
                self.events[key] = event
        if p.health is not None:
            self.answered.add("health")
            for name, pairs in p.health.items():
                self.health[name].update(pairs)

    # --- scoring ---------------------------------------------------------------------------

    def final_events(self) -> list[Event]:
        """The model's events, latest estimate of each, with the time it first reported them."""
        return [
            Event(e.kind, e.time, e.depth, e.duration, None if isinstance(k, int) else k, self.first_seen[k])
            for k, e in self.events.items()
        ]

    def metrics(
        self,
        faults: StreamFaultTruth | None = None,
        reference_events: list[Event] | None = None,
        cadence_s: float | None = None,
    ) -> dict[str, float]:
        """Every score this session supports, by name (``kind.metric``); NaN where undefined."""
        key = self.answers
        out: dict[str, float] = {
            "run.packets_delivered": len(self.delivered),
            "run.packets_scored": int(self.seen.sum()),
        }
        seen_elements = np.repeat(self.seen, np.diff(key.starts))
        scored = key.scorable & seen_elements
        out["run.values_scored"] = int(scored.sum())
        received = key.received & seen_elements
        # a buffer is there once the model has answered with that field ("flags" in self.answered)
        if self.flags is not None:
            out.update(self._flag_metrics(received, self.flags))
        if self.scores is not None:
            judged = received & ~key.preexisting
            out["scores.average_precision"] = m.average_precision(key.corrupted[judged], self.scores[judged])
        if self.cleaned is not None:
            out.update(self._cleaned_metrics(seen_elements, self.cleaned))
        if "events" in self.answered:
            out.update(self._event_metrics(reference_events if key.events is None else key.events))
        if "health" in self.answered:
            out.update(self._health_metrics(faults or StreamFaultTruth()))
        seconds = np.asarray(self.model_seconds)
        if len(seconds):
            p50, p99 = m.percentiles(seconds * 1e3)
            out.update(
                {
                    "timing.model_ms_p50": p50,
                    "timing.model_ms_p99": p99,
                    "timing.model_ms_max": float(seconds.max() * 1e3),
                    "timing.model_s_total": float(seconds.sum()),
                    "timing.sustainable_rate_per_s": float(1.0 / seconds.mean()) if seconds.mean() > 0 else math.inf,
                }
            )
        emitted = np.asarray(self.emitted)
        if len(emitted) and np.isfinite(emitted).all():
            out.update(self._live_metrics(emitted, np.asarray(self.output), cadence_s))
        return out

    def _flag_metrics(self, received: np.ndarray, all_flags: np.ndarray) -> dict[str, float]:
        """Flags against the corrupted values; the product's own anomalies (``key.preexisting``) are
        neither positives nor negatives, and are counted apart."""
        key = self.answers
        preexisting = received & key.preexisting
        scored = received & ~preexisting
        truth, flags = key.corrupted[scored], all_flags[scored]
        c = m.counts(truth, flags)
        out = {
            "flags.precision": c.precision,
            "flags.recall": c.recall,
            "flags.f1": c.f1,
            "flags.error": c.error,
            "flags.positives": c.tp + c.fn,
            "flags.flagged": c.tp + c.fp,
            "flags.false_alarms": c.fp,
            "flags.false_alarm_rate": c.fp / max(1, c.fp + c.tn),
            "flags.preexisting": int(preexisting.sum()),
            "flags.preexisting_flagged": int((all_flags & preexisting).sum()),
        }
        for kind in key.kinds_present:
            of_kind = truth & key.kind_mask(kind)[scored]
            out[f"flags.recall.{kind}"] = m.counts(of_kind, flags & of_kind).recall
            if kind in self.kinds:
                kc = m.counts(of_kind, self.kinds[kind][scored])
                out[f"flags.precision.{kind}"], out[f"flags.f1.{kind}"] = kc.precision, kc.f1
        return out

    def _cleaned_metrics(self, seen_elements: np.ndarray, cleaned: np.ndarray) -> dict[str, float]:
        key = self.answers
        clean = np.where(seen_elements, key.clean, np.nan)
        ours = m.error_in_err(cleaned, clean, key.clean_err)
        passthrough = m.error_in_err(key.perturbed, clean, key.clean_err)
        out = {f"cleaned.{name}": value for name, value in ours.items()}
        out["cleaned.error"] = ours["mae_err"]
        out["cleaned.passthrough_mae_err"] = passthrough["mae_err"]
        out["cleaned.passthrough_coverage"] = passthrough["coverage"]
        return out

    def _event_metrics(self, reference: list[Event] | None) -> dict[str, float]:
        key = self.answers
        reference = reference or []
        times = key.event_time[np.isfinite(key.event_time)]
        span_days = float(times.max() - times.min()) if len(times) > 1 else 0.0
        cadence_days = float(np.median(np.diff(np.sort(times)))) if len(times) > 1 else 0.0
        hours = (span_days + cadence_days) * 24.0
        default_half = max(0.05 * span_days, cadence_days)
        windows = [
            m.Window(e.time - (e.duration or default_half), e.time + (e.duration or default_half), e.time, e.depth)
            for e in reference
        ]
        reported = self.final_events()
        matched: dict[int, list[Event]] = {}
        false_alarms = 0
        for event in reported:
            inside = [
                i for i, w in enumerate(windows) if w.start <= event.time <= w.end and reference[i].kind == event.kind
            ]
            if not inside:
                false_alarms += 1
                continue
            nearest = min(inside, key=lambda i: abs(windows[i].time - event.time))
            matched.setdefault(nearest, []).append(event)
        first = [
            min((math.nan if e.detected_at is None else e.detected_at for e in matched[i]), default=math.nan)
            if i in matched
            else math.nan
            for i in range(len(windows))
        ]
        out = {
            "events.true": len(windows),
            "events.reported": len(reported),
            "events.detected": len(matched),
            "events.missed": len(windows) - len(matched),
            "events.false_alarms": false_alarms,
            "events.false_alarms_per_hour": false_alarms / hours if hours > 0 else math.nan,
            "events.nab_score": m.nab(windows, first, false_alarms),
        }
        timing, bias = [], []
        for i, events in matched.items():
            window = windows[i]
            best = min(events, key=lambda e: abs(e.time - window.time))
            timing.append((best.time - window.time) * SECONDS_PER_DAY)
            if best.depth is not None and window.depth:
                bias.append((best.depth - window.depth) / window.depth)
        out["events.timing_error_s"] = float(np.mean(timing)) if timing else math.nan
        out["events.depth_bias"] = float(np.mean(bias)) if bias else math.nan
        # one error figure for the robustness curves: the depth's relative error, a missed
        # event counting as the whole depth; with nothing to find, the false alarms per hour
        if windows:
            errors = [abs(b) for b in bias] + [1.0] * (len(windows) - len(bias))
            out["events.error"] = float(np.mean(errors))
        else:
            out["events.error"] = out["events.false_alarms_per_hour"]
        return out

    def _health_metrics(self, faults: StreamFaultTruth) -> dict[str, float]:
        delivered = self.delivered
        positions = [(lap, seq) for _, lap, seq in delivered]
        highest = max(positions, default=(-1, -1))
        truth = {
            # a loss after the last delivered packet cannot be noticed by anyone
            "gaps": {p for p in faults.lost if p < highest},
            "duplicates": set(faults.duplicated),
            "reordered": _late_arrivals(positions),
        }
        out: dict[str, float] = {}
        total = m.Counts(0, 0, 0)
        # each delivery and each lost packet is one decision per question (missing? twice? late?)
        universe = len(delivered) + len(truth["gaps"])
        for name in ("gaps", "duplicates", "reordered"):
            c = m.set_counts(truth[name], self.health[name], universe)
            total = m.Counts(total.tp + c.tp, total.fp + c.fp, total.fn + c.fn, total.tn + c.tn)
            out[f"health.{name}.true"] = len(truth[name])
            out[f"health.{name}.precision"], out[f"health.{name}.recall"] = c.precision, c.recall
        out.update(
            {
                "health.precision": total.precision,
                "health.recall": total.recall,
                "health.f1": total.f1,
                "health.error": total.error,
            }
        )
        return out

    def _live_metrics(self, emitted: np.ndarray, output: np.ndarray, cadence_s: float | None) -> dict[str, float]:
        latency = output - emitted
        p50, p99 = m.percentiles(latency * 1e3)
        order = np.sort(emitted)
        waiting = np.searchsorted(order, output, side="right") - (np.arange(len(output)) + 1)
        out = {
            "live.latency_ms_p50": p50,
            "live.latency_ms_p99": p99,
            "live.latency_ms_max": float(latency.max() * 1e3),
            "live.backlog_p99": float(np.percentile(np.clip(waiting, 0, None), 99)),
            "live.backlog_max": int(np.clip(waiting, 0, None).max()),
        }
        if cadence_s:
            out["live.cadence_s"] = cadence_s
            out["live.within_cadence"] = float(np.mean(latency <= cadence_s))
        return out


def _late_arrivals(positions: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """Packets whose first delivery came after a later packet's: delivered out of order."""
    late, highest, seen = set(), None, set()
    for position in positions:
        if position in seen:
            continue
        seen.add(position)
        if highest is not None and position < highest:
            late.add(position)
        else:
            highest = position
    return late


def _with_scores(prediction: Prediction, scores: Any, model: LoadedModel, packet: Packet) -> Prediction:
    checked = checked_array(model, packet, "scores (from score_one)", scores, "float")
    return Prediction(
        prediction.flags, prediction.kinds, checked, prediction.cleaned, prediction.events, prediction.health
    )


class _End:
    """Stands for 'the end of the stream' where a message names a packet."""

    where = "the end of the stream (in finish)"
    values = np.zeros(0)


_END = _End()
