"""The answer key of one observation under one profile: what a perfect model would say.

Built from three tables the pipeline already keeps: the clean (bronze,
level-0) values, the perturbed values and the truth mask. Everything is laid
out per *element* - a spectrum's channel, an image's pixel - in packet
(``seq``) order, so that a packet's answers are one slice and the harness
copies a model's arrays in without a lookup per value.

What counts as corrupted. Several kinds touch every element (read noise,
drifts, jitter: their truth bit is set everywhere), so "any truth bit" would
make every value a positive and every flagger useless. A value is
**corrupted** when the truth says a perturbation touched it *and* it moved
by more than :data:`MATERIAL_ERR` times its clean ERR: what a flagger can be
asked to point at. Smaller changes are scored through the reconstruction
error instead. Flags are scored on the values a model actually received
(finite in the perturbed data): a value that arrived missing is plain to
any consumer, and is scored by the reconstruction's coverage. Values missing
in the clean data are not scored at all (there is nothing to compare with).

Pre-existing anomalies. A real product has outliers of its own (on the MIRI
LRS x1dints of the test data: 89 of 3810 values, mostly single-channel dips
of 6 to 47 ERR in one or a few integrations), which the truth mask - what HWOsim injected - cannot know
of. They are found on the clean (level-0) data alone, by a rule that knows no
model (:func:`preexisting_mask`), so every level of one observation shares
one set: a value the product's own DQ marks DO_NOT_USE
(:data:`PREEXISTING_DQ`), or, in a time series of spectra, a value more than
:data:`PREEXISTING_ERR` times its own ERR from a robust estimate of its
channel over time (the channel's running median over
:data:`PREEXISTING_WINDOW` integrations, or all of them in a shorter series, times the integration's common-mode
level, so that a transit or a gain drift moving every channel together is
not an anomaly). N = 5 is :data:`MATERIAL_ERR`: a value already as far from
its expectation as an injected perturbation must move it to count as
corruption; Gaussian noise exceeds 5 sigma once in 1.7 million values, and on
the real MIRI product the count barely changes between 5 and 10 ERR (92 and
83 values beyond, against a plain median over time): the anomalies stand
apart from the noise, and N is not a knob that decides how many there are. Image tiles have no time axis per pixel here: only the DQ
rule applies to them. Pre-existing values are scored apart (the harness's
``flags.preexisting*``): a flag on one is neither a false alarm nor a true
positive, unless a perturbation was injected there too (then it is a
positive like any other).

Events. For the project's sample time series the injected transit is known
(``ingest.sample.injected_transit``); for any other observation the answer is
the model's own answer on the clean data (:func:`hwosim_assets.evaluate.offline.clean_events`),
so the score says how much the perturbations moved it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import polars as pl

from hwosim_assets.evaluate.baselines.filters import nanmedian
from hwosim_assets.evaluate.predictions import Event
from hwosim_assets.perturb.dq import DQ
from hwosim_assets.perturb.kinds import ELEMENT_KINDS
from hwosim_assets.perturb.truth import BITS, TRUTH_DTYPE
from hwosim_assets.records import PIXEL_DTYPES

MATERIAL_ERR = 5.0  # a value moved by more than this many ERR (or made missing) is corrupted
PREEXISTING_ERR = MATERIAL_ERR  # a clean value this many ERR from its channel's expectation is pre-existing
PREEXISTING_WINDOW = 21  # integrations (centred) of the running median a channel's expectation is taken over
# the DQ bit with which a calibrated JWST product says a value is not to be used (stdatamodels dqflags);
# the pipeline sets it with every defect that makes a value unusable (a dead pixel, a hard saturation,
# an outlier), while HOT, WARM or JUMP_DET alone mark values it has corrected and kept
PREEXISTING_DQ = DQ["DO_NOT_USE"]


class AnswerKeyError(ValueError):
    """Tables that do not describe the same packets; the message names observation and table."""


@dataclass
class AnswerKey:
    """Per-element answers of one observation x profile, in (seq, channel) / (seq, pixel) order."""

    family: str
    observation: str
    seqs: np.ndarray  # sorted packet numbers
    starts: np.ndarray  # element span of packet i: starts[i]:starts[i + 1]
    event_time: np.ndarray  # MJD per packet
    clean: np.ndarray  # float64 per element
    clean_err: np.ndarray
    perturbed: np.ndarray
    truth: np.ndarray  # uint32 per element
    table: pl.DataFrame  # the perturbed table, sorted like the elements (offline packets are cut from it)
    clean_table: pl.DataFrame  # the clean table, sorted the same way (the model's clean answer is taken on it)
    clean_dq: np.ndarray | None = None  # uint32 per element (None: all 0)
    channel: np.ndarray | None = None  # spectra: the channel of each element
    shapes: np.ndarray | None = None  # images: (ny, nx) per packet
    events: list[Event] | None = None  # the known answer; None: the model's own on the clean data
    _index: dict[int, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {int(s): i for i, s in enumerate(self.seqs)}

    @property
    def n_packets(self) -> int:
        return len(self.seqs)

    @property
    def n_elements(self) -> int:
        return len(self.clean)

    def index(self, seq: int) -> int | None:
        return self._index.get(seq)

    @cached_property
    def scorable(self) -> np.ndarray:
        """Elements with a clean value and a usable clean ERR."""
        return np.isfinite(self.clean) & np.isfinite(self.clean_err) & (self.clean_err > 0)

    @cached_property
    def received(self) -> np.ndarray:
        """Scorable elements that arrived with a value (finite in the perturbed data): what flags are scored on."""
        return self.scorable & np.isfinite(self.perturbed)

    @cached_property
    def corrupted(self) -> np.ndarray:
        """The positives of flag scoring (see the module docstring)."""
        with np.errstate(invalid="ignore", over="ignore"):
            moved = np.abs(self.perturbed - self.clean) > MATERIAL_ERR * self.clean_err
        return self.received & (self.truth != 0) & moved

    @cached_property
    def preexisting(self) -> np.ndarray:
        """Received elements that were anomalous in the clean data already, and not corrupted by a
        perturbation: scored apart from both classes (see the module docstring)."""
        mask = preexisting_mask(self.clean, self.clean_err, self.clean_dq, self.starts, self.channel)
        return self.received & mask & ~self.corrupted

    def kind_mask(self, kind: str) -> np.ndarray:
        """Elements whose truth carries ``kind``'s bit."""
        return (self.truth >> np.uint32(BITS[kind]) & np.uint32(1)).astype(bool)

    @cached_property
    def kinds_present(self) -> list[str]:
        """Kinds, other than those touching every element, that corrupted at least one scorable
        element, in bit order: the kinds recall is reported for."""
        bits = np.bitwise_or.reduce(self.truth[self.corrupted]) if self.corrupted.any() else 0
        dense = set(self.dense_kinds)
        return [
            name
            for name, bit in sorted(BITS.items(), key=lambda kv: kv[1])
            if int(bits) >> bit & 1 and name not in dense
        ]

    @cached_property
    def dense_kinds(self) -> list[str]:
        """Kinds that mark every element they touch (scored by reconstruction, not flags)."""
        return [name for name in BITS if getattr(ELEMENT_KINDS[name], "marks_all", False)]


def preexisting_mask(
    clean: np.ndarray,
    err: np.ndarray,
    dq: np.ndarray | None,
    starts: np.ndarray,
    channel: np.ndarray | None,
    *,
    n_err: float = PREEXISTING_ERR,
    window: int = PREEXISTING_WINDOW,
) -> np.ndarray:
    """The product's own anomalies among the clean values (per element; see the module docstring).

    ``dq`` marks values the product says are unusable; with ``channel`` (spectra, elements in
    packet order, packet i spanning ``starts[i]:starts[i + 1]``) values beyond ``n_err`` x ERR from
    their channel's expectation are anomalies too. The expectation's own noise is allowed for: a
    median of n values with ERR e has an uncertainty of about sqrt(pi / 2n) e, added in quadrature."""
    clean = np.asarray(clean, dtype=np.float64)
    mask = np.zeros(clean.shape, dtype=bool)
    if dq is not None:
        mask |= (np.asarray(dq, dtype=np.uint32) & np.uint32(PREEXISTING_DQ)) != 0
    if channel is None or len(starts) < 3 or len(clean) == 0:
        return mask
    channel = np.asarray(channel)
    err = np.asarray(err, dtype=np.float64)
    usable = np.isfinite(clean) & np.isfinite(err) & (err > 0)
    if dq is not None:
        usable &= ~mask
    sizes = np.diff(starts)
    if (sizes == sizes[0]).all() and (channel.reshape(len(sizes), -1) == channel[: sizes[0]]).all():
        # every packet holds the same channels in the same order (as an x1dints does): a reshape
        def grid(values: np.ndarray) -> np.ndarray:
            return np.where(usable, values, np.nan).reshape(len(sizes), -1)

        def back(plane: np.ndarray) -> np.ndarray:
            return plane.ravel()
    else:
        row = np.repeat(np.arange(len(sizes)), sizes)
        column = np.unique(channel, return_inverse=True)[1]

        def grid(values: np.ndarray) -> np.ndarray:
            plane = np.full((len(sizes), int(column.max()) + 1), np.nan)
            plane[row[usable], column[usable]] = values[usable]
            return plane

        def back(plane: np.ndarray) -> np.ndarray:
            return plane[row, column]

    flux, sigma = grid(clean), grid(err)
    with np.errstate(invalid="ignore", divide="ignore"):
        # each integration's common level against the channels' medians over the whole series, then each
        # channel's running median at that level, then the common levels against those
        typical = np.broadcast_to(nanmedian(flux, axis=0), flux.shape)
        for running in (True, False):
            level = nanmedian(flux / typical, axis=1)[:, None]
            level = np.where(np.isfinite(level) & (level > 0), level, 1.0)
            if running:
                typical = _running_median(flux / level, window)
        counted = _running_count(flux, window)
        expected_sigma = sigma * np.sqrt(1.0 + np.pi / (2.0 * np.maximum(counted, 1)))
        z = (flux - level * typical) / expected_sigma
    beyond = np.abs(z) > n_err
    beyond &= counted >= 3  # no expectation from fewer than three values
    mask |= usable & back(beyond)
    return mask


def _window_starts(n: int, window: int) -> tuple[int, np.ndarray]:
    """The window length (at most ``n``) and the first row of each row's window: centred on the row,
    shifted inwards at the ends so that every window holds as many rows."""
    w = min(window, n)
    return w, np.clip(np.arange(n) - w // 2, 0, n - w)


def _running_median(array: np.ndarray, window: int, chunk: int = 256) -> np.ndarray:
    """Each value's running median over time (rows), NaN ignored; in chunks of rows (a window is
    copied per row)."""
    w, starts = _window_starts(len(array), window)
    if w == len(array):  # one window: the whole series
        return np.broadcast_to(nanmedian(array, axis=0), array.shape)
    views = np.lib.stride_tricks.sliding_window_view(array, w, axis=0)  # (n - w + 1, columns, w)
    return np.concatenate([nanmedian(views[starts[i : i + chunk]], axis=-1) for i in range(0, len(array), chunk)])


def _running_count(array: np.ndarray, window: int) -> np.ndarray:
    w, starts = _window_starts(len(array), window)
    counts = np.lib.stride_tricks.sliding_window_view(np.isfinite(array), w, axis=0).sum(axis=-1)
    return counts[starts]


def _sorted(table: pl.DataFrame, keys: list[str], name: str, observation: str) -> pl.DataFrame:
    missing = [k for k in keys if k not in table.columns]
    if missing:
        raise AnswerKeyError(f"observation {observation!r}: the {name} table has no column {missing[0]!r}")
    return table.sort(keys)


def _same_keys(tables: dict[str, pl.DataFrame], keys: list[str], observation: str) -> None:
    (first_name, first), *rest = tables.items()
    for name, table in rest:
        if len(table) != len(first) or not table.select(keys).equals(first.select(keys)):
            raise AnswerKeyError(
                f"observation {observation!r}: the {name} table ({len(table)} rows) does not hold the same packets as "
                f"the {first_name} table ({len(first)} rows); were they made from the same bronze table?"
            )


def _known_events(observation: str, family: str) -> list[Event] | None:
    from hwosim_assets.ingest import sample

    if family == "spectra" and observation == sample.SPECTRA_OBS_ID:
        t = sample.injected_transit()
        return [Event("transit", t["mid_time"], t["depth"], t["duration"], id="injected")]
    return None


def spectra_answers(clean: pl.DataFrame, perturbed: pl.DataFrame, truth: pl.DataFrame, observation: str) -> AnswerKey:
    """The answer key of a spectra observation (bronze, perturbed and truth tables)."""
    keys = ["seq", "channel"]
    tables = {
        name: _sorted(t, keys, name, observation)
        for name, t in (("perturbed", perturbed), ("clean", clean), ("truth", truth))
    }
    _same_keys(tables, keys, observation)
    p, c, t = tables["perturbed"], tables["clean"], tables["truth"]
    seq = p["seq"].to_numpy()
    first = np.flatnonzero(np.r_[True, seq[1:] != seq[:-1]])
    return AnswerKey(
        family="spectra",
        observation=observation,
        seqs=seq[first],
        starts=np.r_[first, len(seq)].astype(np.int64),
        event_time=p["event_time"].to_numpy()[first],
        clean=c["flux"].to_numpy().astype(np.float64),
        clean_err=c["flux_error"].to_numpy().astype(np.float64),
        perturbed=p["flux"].to_numpy().astype(np.float64),
        truth=t["truth"].to_numpy().astype(np.uint32),
        table=p,
        clean_table=c,
        clean_dq=c["dq"].to_numpy().astype(np.uint32) if "dq" in c.columns else None,
        channel=c["channel"].to_numpy(),
        events=_known_events(observation, "spectra"),
    )


def _planes(table: pl.DataFrame, column: str, dtype: str) -> np.ndarray:
    return np.frombuffer(b"".join(table[column].to_list()), dtype=dtype)


def images_answers(clean: pl.DataFrame, perturbed: pl.DataFrame, truth: pl.DataFrame, observation: str) -> AnswerKey:
    """The answer key of an image observation (tile tables and the truth's tile masks)."""
    keys = ["seq"]
    tables = {
        name: _sorted(t, keys, name, observation)
        for name, t in (("perturbed", perturbed), ("clean", clean), ("truth", truth))
    }
    _same_keys(tables, keys, observation)
    p, c, t = tables["perturbed"], tables["clean"], tables["truth"]
    shapes = np.stack([p["ny"].to_numpy(), p["nx"].to_numpy()], axis=1).astype(np.int64)
    sizes = shapes[:, 0] * shapes[:, 1]
    key = AnswerKey(
        family="images",
        observation=observation,
        seqs=p["seq"].to_numpy(),
        starts=np.r_[0, np.cumsum(sizes)].astype(np.int64),
        event_time=p["event_time"].to_numpy(),
        clean=_planes(c, "sci", PIXEL_DTYPES["sci"]).astype(np.float64),
        clean_err=_planes(c, "err", PIXEL_DTYPES["err"]).astype(np.float64),
        perturbed=_planes(p, "sci", PIXEL_DTYPES["sci"]).astype(np.float64),
        truth=_planes(t, "truth", TRUTH_DTYPE).astype(np.uint32),
        table=p,
        clean_table=c,
        clean_dq=_planes(c, "dq", PIXEL_DTYPES["dq"]).astype(np.uint32) if "dq" in c.columns else None,
        shapes=shapes,
    )
    if not len(key.clean) == len(key.perturbed) == len(key.truth) == key.starts[-1]:
        raise AnswerKeyError(f"observation {observation!r}: tile payloads do not match their ny x nx")
    return key


def answer_key(
    family: str, clean: pl.DataFrame, perturbed: pl.DataFrame, truth: pl.DataFrame, observation: str
) -> AnswerKey:
    build = spectra_answers if family == "spectra" else images_answers
    return build(clean, perturbed, truth, observation)
