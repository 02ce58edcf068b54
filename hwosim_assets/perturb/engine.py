"""Apply a profile to a bronze table: perturbed table + truth + summary.

Three entry points, all giving the same bytes for the same packets:

* :func:`perturb_spectra` / :func:`perturb_images` - a whole table in memory;
* :func:`perturb_parquet` - a Parquet file streamed batch by batch, for
  products larger than memory.

A packet's output depends only on (seed, profile, observation, its own
rows, the reference time ``t_ref``), so any chunking, order or number of
workers gives identical results. ``t_ref`` (MJD the drifts count from)
defaults to the earliest event time of the table - or of the whole file in
:func:`perturb_parquet`; pass it explicitly when perturbing a part of an
observation (e.g. one packet at a time at replay).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from hwosim_assets.perturb.batch import Batch, Coverage
from hwosim_assets.perturb.draws import Draws
from hwosim_assets.perturb.exposure import Exposure, pick
from hwosim_assets.perturb.kinds import ELEMENT_KINDS
from hwosim_assets.perturb.profiles import KindSetting, Profile
from hwosim_assets.perturb.spec import Expectation
from hwosim_assets.records import FAMILIES as RECORD_FAMILIES
from hwosim_assets.records import IMAGE_TILE_SCHEMA, OPTIONAL_PLANES, PIXEL_DTYPES, SPECTRA_SCHEMA

FAMILIES = tuple(RECORD_FAMILIES)
CHUNK_ELEMENTS = 1 << 22  # elements per unit of work (4 Mpx: one 2048^2 frame, 256 tiles of 128^2)
SUMMARY_SCHEMA = {
    "seq": pl.Int64,
    "kind": pl.Utf8,
    "bit": pl.Int32,
    "elements": pl.Int64,  # elements in the packet
    "affected": pl.Int64,  # elements the kind marked in the truth mask
    "magnitude": pl.Float64,  # kind-specific size of the effect (see each kind's docstring)
    "params": pl.Utf8,  # the kind's resolved parameters, JSON
}
SPECTRA_TRUTH_SCHEMA = {"seq": pl.Int64, "channel": pl.Int32, "truth": pl.UInt32}
IMAGE_TRUTH_SCHEMA = {"seq": pl.Int64, "truth": pl.Binary}
# one kind applied to a batch: (kind, affected elements per packet, magnitude per packet, Effect.expected)
KindRecord = tuple[str, np.ndarray, np.ndarray, tuple | None]


class PerturbError(ValueError):
    """A table the engine cannot perturb; the message names observation and column."""


@dataclass
class PerturbResult:
    """Perturbed data (same schema, rows and order as the input), truth kept
    apart, one summary row per packet x kind, and measured vs expected
    fractions of elements each kind touched. ``data``/``truth`` are None when
    they were written to files (:func:`perturb_parquet`)."""

    data: pl.DataFrame | None
    truth: pl.DataFrame | None
    summary: pl.DataFrame
    fractions: dict[str, float]
    expected_fractions: dict[str, Expectation | None]
    t_ref: float
    rows: int = 0
    stage: str = "archive"
    scale_sources: dict[str, int] = field(default_factory=dict)  # elements per electron-scale source (batch.py)
    deltas: dict[str, np.ndarray] | None = None  # trace=True: per kind, its change of each value (table order)


@dataclass
class _Run:
    """One profile applied to one observation: keys, and what was touched so far."""

    profile: Profile
    observation: str
    seed: int
    family: str
    t_ref: float
    exposures: Mapping[str, Exposure] | Exposure | None = None  # header facts per product (exposure.exposures)
    trace: bool = False  # keep each kind's change of the values (diagnostics, small tables)
    coverage: Coverage = field(init=False)
    affected: dict[str, int] = field(default_factory=dict)
    summaries: list[tuple] = field(default_factory=list)  # (seq, kind, elements, affected, magnitude)

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise PerturbError(f"observation {self.observation!r}: seed must be >= 0, got {self.seed}")
        self.coverage = Coverage(self.family)
        self.settings: list[KindSetting] = [
            s for s in self.profile.element_kinds if self.family in ELEMENT_KINDS[s.kind].families
        ]
        self.draws = {
            s.kind: Draws(self.seed, self.profile.config_hash, self.observation, s.kind) for s in self.settings
        }
        self.params_json = {s.kind: json.dumps(dict(s.params), sort_keys=True) for s in self.settings}
        self.affected = {s.kind: 0 for s in self.settings}
        self.stage = self.profile.stage
        self.scale_sources: dict[str, int] = {}
        self.deltas: dict[str, list] = {s.kind: [] for s in self.settings} if self.trace else {}
        # pointing_jitter's noise-restoring Gaussian is drawn in read_noise's field when both run
        # (one field of the summed variance; kinds/noise.py read_noise)
        chain = [ELEMENT_KINDS[s.kind].alias_of or s.kind for s in self.settings]  # in chain order
        self.fold_noise = {"pointing_jitter", "read_noise"} <= set(chain)
        # striping_1f's ERR growth is done by read_noise's when it runs right after (Batch.defer_rnoise)
        self.defer_rnoise = ("striping_1f", "read_noise") in set(zip(chain, chain[1:], strict=False))
        # bits of the kinds that touch every element, preset in every truth mask
        self.dense_bits = np.uint32(
            # element kinds all have a bit (kinds/__init__.py)
            sum({1 << cast(int, ELEMENT_KINDS[s.kind].bit) for s in self.settings if ELEMENT_KINDS[s.kind].marks_all})
        )

    def new_truth(self, shape: tuple[int, ...], preset: bool = True) -> np.ndarray:
        """A truth mask for a batch: the bits of every-element kinds already set.
        ``preset=False``: not yet - the image path's workers set them on their
        own share (:func:`_apply_tiles`), so the fill runs in parallel."""
        if not preset:
            return np.empty(shape, dtype=np.uint32)
        return np.full(shape, self.dense_bits, dtype=np.uint32)

    def apply(self, batch: Batch, truth: np.ndarray) -> list[KindRecord]:
        """Apply every kind in chain order, marking ``truth`` (from
        :meth:`new_truth`, shaped like the batch); return per kind (name,
        affected per packet, magnitude per packet, expected touched elements). Thread-safe."""
        records = []
        if self.trace:
            batch.trace_shares = {}
        for setting in self.settings:
            spec = ELEMENT_KINDS[setting.kind]
            before = batch.value.astype(np.float64) if self.trace else None
            effect = spec.apply(batch, setting.params, self.draws[setting.kind])  # type: ignore[misc]  # element kinds all have apply (kinds/__init__.py)
            if self.trace:
                records_delta = batch.value.astype(np.float64) - before  # type: ignore[operator]  # before is set when tracing
                for other, share in cast(dict, batch.trace_shares).items():  # a folded kind's part of this change
                    records_delta -= share
                    batch.trace[other] = batch.trace[other] + share
                cast(dict, batch.trace_shares).clear()
                batch.trace[setting.kind] = records_delta
            if not spec.marks_all:  # every-element kinds are preset by new_truth
                effect.mark(truth, spec.bit)  # type: ignore[arg-type]  # element kinds all have a bit (kinds/__init__.py)
            records.append(
                (setting.kind, effect.counts(batch), np.asarray(effect.magnitude, dtype=np.float64), effect.expected)
            )
        return records

    def batch(self, **kwargs: Any) -> Batch:
        """A Batch of this run: its stage and the exposure of the product."""
        batch = Batch(stage=self.stage, exposure=pick(self.exposures, kwargs.pop("source", None)), **kwargs)
        batch.trace = {}
        batch.fold_noise = self.fold_noise
        batch.defer_rnoise = self.defer_rnoise
        return batch

    def keep_trace(self, batch: Batch, rows: np.ndarray) -> None:
        """Keep the batch's per-kind changes with the table rows they belong to."""
        if self.trace:
            for kind, delta in batch.trace.items():
                self.deltas[kind].append((delta.reshape(-1), np.asarray(rows).reshape(-1)))

    def traced(self) -> dict[str, tuple[list, list]]:
        return {kind: ([d for d, _ in parts], [r for _, r in parts]) for kind, parts in self.deltas.items()}

    def record(self, batch: Batch, records: list[KindRecord]) -> None:
        """Account for one applied batch (main thread only)."""
        self.coverage.add(batch)
        self.scale_sources[batch.scale_source] = (
            self.scale_sources.get(batch.scale_source, 0) + batch.n * batch.elements
        )
        for kind, counts, magnitude, expected in records:
            self.coverage.expect(kind, expected)
            self.affected[kind] += int(counts.sum())
            self.summaries.append((batch.seq, kind, batch.elements, counts, magnitude))

    def _summary(self) -> pl.DataFrame:
        if not self.summaries:
            return pl.DataFrame(schema=SUMMARY_SCHEMA)
        seq, kind, elements, counts, magnitude = zip(*self.summaries, strict=False)
        sizes = [len(s) for s in seq]
        kinds = pl.Series(np.repeat(np.array(kind, dtype=object), sizes), dtype=pl.Utf8)
        frame = pl.DataFrame(
            {
                "seq": np.concatenate(seq),
                "kind": kinds,
                "bit": np.repeat([ELEMENT_KINDS[k].bit for k in kind], sizes).astype(np.int32),
                "elements": np.repeat(elements, sizes).astype(np.int64),
                "affected": np.concatenate(counts).astype(np.int64),
                "magnitude": np.concatenate(magnitude),
                "params": kinds.replace_strict(self.params_json, return_dtype=pl.Utf8),
            },
            schema=SUMMARY_SCHEMA,
        )
        return frame.sort(["seq", "bit", "kind"], maintain_order=True)

    def result(self, data: pl.DataFrame | None, truth: pl.DataFrame | None, rows: int) -> PerturbResult:
        summary = self._summary()
        total = max(self.coverage.elements, 1)
        fractions = {kind: count / total for kind, count in self.affected.items()}
        expected = {}
        for s in self.settings:
            expect = ELEMENT_KINDS[s.kind].expect
            expected[s.kind] = expect(s.params, self.coverage) if expect and self.coverage.elements else None
        return PerturbResult(
            data,
            truth,
            summary,
            fractions,
            expected,
            self.t_ref,
            rows,
            stage=self.stage,
            scale_sources=dict(self.scale_sources),
        )


def _workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _check_table(table: pl.DataFrame, schema: dict, observation: str, family: str) -> pl.DataFrame:
    missing = [c for c in schema if c not in table.columns]
    if missing:
        raise PerturbError(f"observation {observation!r}: {family} table is missing column {missing[0]!r}")
    if table.is_empty():
        raise PerturbError(f"observation {observation!r}: {family} table is empty: nothing to perturb")
    for column, dtype in schema.items():
        if table[column].dtype != dtype:
            try:
                table = table.with_columns(pl.col(column).cast(dtype, strict=True))
            except Exception as exc:  # noqa: BLE001 - any cast failure is a bad column
                raise PerturbError(f"observation {observation!r}: column {column!r} is not {dtype}: {exc}") from None
        if table[column].null_count() and column not in OPTIONAL_PLANES:  # absent planes are null
            raise PerturbError(f"observation {observation!r}: column {column!r} has nulls")
    if (table["seq"] < 0).any():
        raise PerturbError(f"observation {observation!r}: column 'seq' has negative packet numbers")
    return table.select(list(schema))


def reference_time(event_time: np.ndarray | pl.Series) -> float:
    """Default ``t_ref``: the earliest finite event time (0 if there is none)."""
    times = np.asarray(event_time, dtype=np.float64)
    finite = times[np.isfinite(times)]
    return float(finite.min()) if len(finite) else 0.0


# --- spectra -----------------------------------------------------------------


def perturb_spectra(
    table: pl.DataFrame,
    profile: Profile,
    *,
    observation: str,
    seed: int,
    t_ref: float | None = None,
    exposures: Mapping[str, Exposure] | Exposure | None = None,
    trace: bool = False,
) -> PerturbResult:
    """Perturb a bronze spectra table (SPECTRA_SCHEMA): one packet per ``seq``.

    ``exposures``: the product's header facts (:func:`hwosim_assets.perturb.exposure.exposures`
    of its bronze metadata record) - integration time, detector, readout; without
    them a generic 100 s H2RG exposure is assumed. ``trace``: also return each
    kind's change of every flux value (``result.deltas``), for diagnostics."""
    table = _check_table(table, SPECTRA_SCHEMA, observation, "spectra")
    t_ref = reference_time(table["event_time"]) if t_ref is None else t_ref
    run = _Run(profile, observation, seed, "spectra", t_ref, exposures, trace)
    data, truth = _spectra(table, run)
    result = run.result(data, truth, len(table))
    if trace:
        result.deltas = {
            kind: np.concatenate(parts)[np.argsort(np.concatenate(rows))] if parts else np.zeros(len(table))
            for kind, (parts, rows) in run.traced().items()
        }
    return result


VARIANCES = {"flux_var_poisson": "var_poisson", "flux_var_rnoise": "var_rnoise"}


def _spectra(table: pl.DataFrame, run: _Run) -> tuple[pl.DataFrame, pl.DataFrame]:
    seq = table["seq"].to_numpy()
    channel = table["channel"].to_numpy()
    columns = {c: table[c].to_numpy().copy() for c in ("flux", "flux_error", "wavelength", "dq")}
    for name in VARIANCES:  # a variance the product lacks is NaN throughout: left alone
        values = table[name].to_numpy()
        if np.isfinite(values).any():
            columns[name] = values.copy()
    npixels: np.ndarray | None
    npixels = table["npixels"].to_numpy()
    npixels = npixels if np.isfinite(npixels).any() else None
    times = table["event_time"].to_numpy()
    truth = np.zeros(len(table), dtype=np.uint32)
    order = np.lexsort((channel, seq))
    first = np.flatnonzero(np.r_[True, seq[order][1:] != seq[order][:-1]])
    size = np.diff(np.r_[first, len(order)])
    for m in np.unique(size):
        starts = first[size == m]
        per_chunk = max(1, CHUNK_ELEMENTS // int(m))
        for c0 in range(0, len(starts), per_chunk):
            rows = order[starts[c0 : c0 + per_chunk, None] + np.arange(m)[None, :]]  # (k, m) row numbers
            batch = run.batch(
                family="spectra",
                value=columns["flux"][rows],
                error=columns["flux_error"][rows],
                wavelength=columns["wavelength"][rows],
                seq=seq[rows[:, 0]],
                epoch=seq[rows[:, 0]],
                time_mjd=np.nan_to_num(times[rows[:, 0]], nan=run.t_ref),
                cols=channel[rows].astype(np.int64),
                rows=None,
                t_ref=run.t_ref,
                dq=columns["dq"][rows],
                npixels=npixels[rows] if npixels is not None else None,
                **{attr: columns[name][rows] for name, attr in VARIANCES.items() if name in columns},
            )
            mask = run.new_truth(batch.value.shape)
            run.record(batch, run.apply(batch, mask))
            columns["flux"][rows] = batch.value
            columns["flux_error"][rows] = batch.error
            columns["wavelength"][rows] = batch.wavelength
            columns["dq"][rows] = batch.dq
            for name, attr in VARIANCES.items():
                if name in columns:
                    columns[name][rows] = getattr(batch, attr)
            truth[rows] = mask
            run.keep_trace(batch, rows)
    data = table.with_columns(*(pl.Series(name, values) for name, values in columns.items()))
    truth_table = pl.DataFrame({"seq": seq, "channel": channel, "truth": truth}, schema=SPECTRA_TRUTH_SCHEMA)
    return data, truth_table


# --- images ------------------------------------------------------------------


def _payloads(column: pa.Array | pa.ChunkedArray, name: str, observation: str) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, offsets) of a binary Arrow column, zero-copy."""
    if isinstance(column, pa.ChunkedArray):  # combine_chunks copies even a single chunk
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if column.null_count:
        raise PerturbError(f"observation {observation!r}: column {name!r} has null payloads")
    _, offsets, data = column.buffers()
    width = np.int64 if pa.types.is_large_binary(column.type) else np.int32
    offsets = np.frombuffer(offsets, dtype=width)[column.offset : column.offset + len(column) + 1].astype(np.int64)
    values = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, dtype=np.uint8)
    return values, offsets


def _binary_column(planes: list[tuple[np.ndarray, np.ndarray]], lengths: np.ndarray, like: pa.DataType) -> pa.Array:
    """An Arrow binary column (of type ``like``) whose row i is the bytes of the
    plane assigned to row i; planes are (row numbers, stack) pairs."""
    large = pa.types.is_large_binary(like)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64 if large else np.int32)
    if len(planes) == 1 and np.array_equal(planes[0][0], np.arange(len(lengths))):
        data = planes[0][1].reshape(-1).view(np.uint8)  # already in row order: no copy
    else:
        data = np.empty(int(offsets[-1]), dtype=np.uint8)
        for rows, stack in planes:
            flat = stack.reshape(len(rows), -1).view(np.uint8)
            for row, payload in zip(rows, flat, strict=False):
                data[offsets[row] : offsets[row + 1]] = payload
    kind = pa.large_binary() if large else pa.binary()
    return pa.Array.from_buffers(kind, len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


IMAGE_PLANES = ("sci", "err", "dq", "var_poisson", "var_rnoise")  # what the kinds read and write


def _apply_tiles(
    run: _Run,
    planes: Mapping[str, np.ndarray | None],
    truth: np.ndarray,
    seq: np.ndarray,
    frame: np.ndarray,
    y0: np.ndarray,
    x0: np.ndarray,
    times: np.ndarray,
    source: str | None = None,
    spectral_2d: bool = False,
) -> None:
    """Perturb a stack of same-shape tiles in place (sci, err and, where
    present, dq and the variances), marking ``truth`` (from
    ``new_truth(preset=False)``: each unit presets its own share).

    The stack is cut into units of ~CHUNK_ELEMENTS pixels that the worker
    threads take in turn (numpy releases the GIL); each unit is a Batch of
    views into the stack, so kinds write straight into the output."""
    sci = cast(np.ndarray, planes["sci"])  # sci and err are always given
    _, ny, nx = sci.shape
    per_unit = max(1, CHUNK_ELEMENTS // (ny * nx))
    optional = {name: planes.get(name) for name in ("dq", "var_poisson", "var_rnoise")}

    def work(part: slice) -> tuple[Batch, list[KindRecord]]:
        truth[part] = run.dense_bits  # the preset bits (new_truth(preset=False) left them to the workers)
        batch = run.batch(
            family="images",
            value=sci[part],
            error=planes["err"][part],  # type: ignore[index]  # sci and err are always given
            wavelength=None,
            seq=seq[part],
            epoch=frame[part],
            time_mjd=times[part],
            cols=x0[part, None] + np.arange(nx)[None, :],
            rows=y0[part, None] + np.arange(ny)[None, :],
            t_ref=run.t_ref,
            source=source,
            spectral_2d=spectral_2d,
            **{name: (array[part] if array is not None else None) for name, array in optional.items()},
        )
        return batch, run.apply(batch, truth[part])

    units = [slice(i, i + per_unit) for i in range(0, len(sci), per_unit)]

    def collect(done: Iterable[tuple[Batch, list[KindRecord]]]) -> None:
        for (batch, records), part in zip(done, units, strict=False):
            run.record(batch, records)
            run.keep_trace(batch, np.arange(len(sci))[part])

    if len(units) == 1 or _workers() == 1:
        # one unit (a streamed batch of one frame): no pool - a fresh worker thread per batch
        # would also take its own malloc arena, and the freed temporaries of both stay resident
        collect(map(work, units))
        return
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        collect(pool.map(work, units))


def perturb_tile_stack(
    sci: np.ndarray,
    err: np.ndarray,
    *,
    seq: np.ndarray,
    frame: np.ndarray,
    y0: np.ndarray,
    x0: np.ndarray,
    event_time: np.ndarray,
    profile: Profile,
    observation: str,
    seed: int,
    t_ref: float | None = None,
    dq: np.ndarray | None = None,
    var_poisson: np.ndarray | None = None,
    var_rnoise: np.ndarray | None = None,
    exposures: Mapping[str, Exposure] | Exposure | None = None,
    spectral_2d: bool = False,
    trace: bool = False,
) -> tuple[np.ndarray, PerturbResult]:
    """Array form of :func:`perturb_images` for n tiles of one shape (or whole
    frames): ``sci``/``err`` (n, ny, nx) float32 - and ``dq`` (uint32) and the
    variances (float32) when given - are perturbed in place; returns the
    (n, ny, nx) uint32 truth and the summary. Same bytes as the table path
    for the same packets. ``trace``: ``result.deltas[kind]`` is (n, ny, nx)."""
    if sci.dtype != np.float32 or err.dtype != np.float32 or sci.shape != err.shape or sci.ndim != 3:
        raise PerturbError(f"observation {observation!r}: sci/err must be (n, ny, nx) float32 stacks")
    as_int = lambda a: np.asarray(a, dtype=np.int64)  # noqa: E731
    times = np.asarray(event_time, dtype=np.float64)
    t_ref = reference_time(times) if t_ref is None else t_ref
    run = _Run(profile, observation, seed, "images", t_ref, exposures, trace)
    truth = run.new_truth(sci.shape, preset=False)
    planes = {"sci": sci, "err": err, "dq": dq, "var_poisson": var_poisson, "var_rnoise": var_rnoise}
    _apply_tiles(
        run,
        planes,
        truth,
        as_int(seq),
        as_int(frame),
        as_int(y0),
        as_int(x0),
        np.nan_to_num(times, nan=t_ref),
        spectral_2d=spectral_2d,
    )
    result = run.result(None, None, len(sci))
    if trace:
        result.deltas = {}
        for kind, (parts, rows) in run.traced().items():
            delta = np.zeros(sci.size)
            for d, r in zip(parts, rows, strict=False):
                delta.reshape(len(sci), -1)[r] = d.reshape(len(r), -1)
            result.deltas[kind] = delta.reshape(sci.shape)
    return truth, result


def _image_arrow(table: pa.Table, run: _Run, observation: str) -> tuple[pa.Table, pa.Table]:
    """Perturb image tiles held in an Arrow table; returns (data, truth) tables.

    Tiles are grouped by shape and product (``source``: each product has its
    own exposure); planes a group's tiles lack (null) are left out for it."""
    ny = table.column("ny").to_numpy().astype(np.int64)
    nx = table.column("nx").to_numpy().astype(np.int64)
    seq = table.column("seq").to_numpy().astype(np.int64)
    frame = table.column("frame").to_numpy().astype(np.int64)
    y0 = table.column("y0").to_numpy().astype(np.int64)
    x0 = table.column("x0").to_numpy().astype(np.int64)
    times = np.nan_to_num(table.column("event_time").to_numpy().astype(np.float64), nan=run.t_ref)
    sources = np.asarray(table.column("source").to_pylist(), dtype=object) if "source" in table.column_names else None
    if (ny <= 0).any() or (nx <= 0).any():
        raise PerturbError(f"observation {observation!r}: columns 'ny'/'nx' must be positive")
    planes, present = {}, {}
    for name in IMAGE_PLANES + ("wavelength",):
        if name not in table.column_names:
            continue
        column = table.column(name)
        valid = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        present[name] = valid
        if name in ("sci", "err") and not valid.all():
            raise PerturbError(f"observation {observation!r}: column {name!r} has null payloads")
        if name == "wavelength" or not valid.any():
            continue
        values, offsets = _payloads(column, name, observation)
        itemsize = np.dtype(PIXEL_DTYPES[name]).itemsize
        bad = np.flatnonzero((np.diff(offsets) != ny * nx * itemsize) & valid)
        if len(bad):
            raise PerturbError(
                f"observation {observation!r}: column {name!r} row {bad[0]} holds {np.diff(offsets)[bad[0]]} bytes, "
                f"expected ny*nx*{itemsize} = {ny[bad[0]] * nx[bad[0]] * itemsize}"
            )
        planes[name] = (values, offsets)

    def stack(name: str, rows: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        values, offsets = planes[name]
        out = np.empty((len(rows),) + shape, dtype=PIXEL_DTYPES[name])
        flat = out.reshape(len(rows), -1).view(np.uint8)
        span = flat.shape[1]
        if len(rows) and np.array_equal(offsets[rows], offsets[rows[0]] + span * np.arange(len(rows))):
            flat[:] = values[offsets[rows[0]] : offsets[rows[0]] + span * len(rows)].reshape(len(rows), span)
        else:
            for i, row in enumerate(rows):
                flat[i] = values[offsets[row] : offsets[row + 1]]
        return out

    groups = []
    keys = np.stack([ny, nx], axis=1)
    labels = (
        np.zeros(len(ny), dtype=np.int64) if sources is None else np.unique(sources.astype(str), return_inverse=True)[1]
    )
    for shape in np.unique(keys, axis=0):
        shape = (int(shape[0]), int(shape[1]))
        same = (keys == shape).all(axis=1)
        for label in np.unique(labels[same]):
            rows = np.flatnonzero(same & (labels == label))
            # "rows", "truth": arrays; each plane: its stack, or None where the group lacks it
            group: dict[str, Any] = {"rows": rows, "truth": run.new_truth((len(rows),) + shape, preset=False)}
            for name in IMAGE_PLANES:
                group[name] = stack(name, rows, shape) if name in planes and present[name][rows].all() else None
            wavelength = "wavelength" in present and present["wavelength"][rows].any()
            source = str(sources[rows[0]]) if sources is not None else None
            _apply_tiles(
                run,
                group,
                group["truth"],
                seq[rows],
                frame[rows],
                y0[rows],
                x0[rows],
                times[rows],
                source=source,
                spectral_2d=bool(wavelength),
            )
            groups.append(group)
    pixels = ny * nx
    data = table
    for name in IMAGE_PLANES:
        if name not in planes:
            continue
        written = [(g["rows"], g[name]) for g in groups if g[name] is not None]
        kind = table.schema.field(name).type
        if sum(len(r) for r, _ in written) == len(ny):
            column = _binary_column(written, pixels * 4, kind)
        else:  # some tiles lack the plane: keep their nulls, write the others
            payloads = table.column(name).to_pylist()
            for rows, stack_ in written:
                for row, tile in zip(rows, stack_, strict=False):
                    payloads[row] = tile.tobytes()
            column = pa.array(payloads, type=kind)
        data = data.set_column(data.schema.get_field_index(name), name, column)
    sci_type = table.schema.field("sci").type
    truth_table = pa.table(
        {
            "seq": pa.array(seq, pa.int64()),
            "truth": _binary_column([(g["rows"], g["truth"]) for g in groups], pixels * 4, sci_type),
        }
    )
    return data, truth_table


def perturb_images(
    table: pl.DataFrame,
    profile: Profile,
    *,
    observation: str,
    seed: int,
    t_ref: float | None = None,
    exposures: Mapping[str, Exposure] | Exposure | None = None,
) -> PerturbResult:
    """Perturb a bronze image-tile table (IMAGE_TILE_SCHEMA): one packet per
    tile; ``exposures`` as for :func:`perturb_spectra`, found by the tiles'
    ``source``."""
    table = _check_table(table, IMAGE_TILE_SCHEMA, observation, "images")
    t_ref = reference_time(table["event_time"]) if t_ref is None else t_ref
    run = _Run(profile, observation, seed, "images", t_ref, exposures)
    arrow = table.to_arrow(compat_level=pl.CompatLevel.oldest())
    data, truth = _image_arrow(arrow, run, observation)
    planes = [cast(pl.Series, pl.from_arrow(data.column(name))).alias(name) for name in IMAGE_PLANES]  # zero-copy
    return run.result(table.with_columns(planes), cast(pl.DataFrame, pl.from_arrow(truth)), len(table))


# --- streaming ---------------------------------------------------------------


def perturb_parquet(
    src_path: str | Path,
    dst_path: str | Path,
    truth_path: str | Path,
    family: str,
    profile: Profile,
    observation: str,
    seed: int,
    batch_rows: int | None = None,
    *,
    t_ref: float | None = None,
    compression: str = "zstd",
    exposures: Mapping[str, Exposure] | Exposure | None = None,
) -> PerturbResult:
    """Perturb a bronze Parquet file into ``dst_path`` (+ truth into
    ``truth_path``) batch by batch, never holding more than ``batch_rows``
    rows: the same bytes as the in-memory functions, at a memory cost set by
    the batch size. Spectra rows must be grouped by ``seq`` (as bronze writes
    them); a packet cut by a batch boundary is carried into the next batch."""
    if family not in FAMILIES:
        raise PerturbError(f"observation {observation!r}: family must be one of {FAMILIES}, got {family!r}")
    schema = SPECTRA_SCHEMA if family == "spectra" else IMAGE_TILE_SCHEMA
    # pre_buffer=False: the default read cache keeps every row group it has
    # read until the file is closed, so memory would grow with the file
    source = pq.ParquetFile(src_path, pre_buffer=False)
    missing = [c for c in schema if c not in source.schema_arrow.names]
    if missing:
        raise PerturbError(f"observation {observation!r}: {src_path} is missing column {missing[0]!r}")
    if source.metadata.num_rows == 0:
        raise PerturbError(f"observation {observation!r}: {src_path} is empty: nothing to perturb")
    if t_ref is None:
        t_ref = reference_time(pq.read_table(src_path, columns=["event_time"]).column("event_time").to_numpy())
    run = _Run(profile, observation, seed, family, t_ref, exposures)
    batch_rows = batch_rows or (256 if family == "images" else 1 << 16)
    writers: dict[str, pq.ParquetWriter] = {}

    def write(path: str | Path, name: str, table: pa.Table) -> None:
        if name not in writers:
            writers[name] = pq.ParquetWriter(path, table.schema, compression=compression)
        writers[name].write_table(table)

    rows = 0
    try:
        if family == "images":
            for record_batch in source.iter_batches(batch_size=batch_rows, columns=list(schema)):
                chunk = pa.Table.from_batches([record_batch])
                metadata = chunk.drop_columns(list(PIXEL_DTYPES))  # the planes are checked by _image_arrow
                _check_table(pl.from_arrow(metadata), _without_planes(schema), observation, family)  # type: ignore[arg-type]  # a Table gives a DataFrame
                data, truth = _image_arrow(chunk, run, observation)
                write(dst_path, "data", data)
                write(truth_path, "truth", truth)
                rows += chunk.num_rows
        else:
            for data, truth in _spectra_batches(source, batch_rows, run, observation):
                write(dst_path, "data", data.to_arrow(compat_level=pl.CompatLevel.oldest()))
                write(truth_path, "truth", truth.to_arrow(compat_level=pl.CompatLevel.oldest()))
                rows += len(data)
    finally:
        for writer in writers.values():
            writer.close()
    return run.result(None, None, rows)


def _without_planes(schema: dict) -> dict:
    return {k: v for k, v in schema.items() if k not in PIXEL_DTYPES}


def _spectra_batches(
    source: pq.ParquetFile, batch_rows: int, run: _Run, observation: str
) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """Yield perturbed (data, truth) per batch, holding back the last packet of
    each batch until its rows are complete."""
    carry: pl.DataFrame | None = None
    done = -1
    for record_batch in source.iter_batches(batch_size=batch_rows, columns=list(SPECTRA_SCHEMA)):
        chunk = _check_table(pl.from_arrow(record_batch), SPECTRA_SCHEMA, observation, "spectra")  # type: ignore[arg-type]  # a RecordBatch gives a DataFrame
        if carry is not None:
            chunk = pl.concat([carry, chunk])
        last = chunk["seq"][-1]
        carry = chunk.filter(pl.col("seq") == last)
        ready = chunk.filter(pl.col("seq") != last)
        if ready.is_empty():
            continue
        if ready["seq"].min() <= done:  # type: ignore[operator]  # seq: non-null Int64 (_check_table), min is an int
            raise PerturbError(
                f"observation {observation!r}: rows are not grouped by 'seq'; sort the table by seq first"
            )
        done = ready["seq"].max()  # type: ignore[assignment]  # seq: non-null Int64 (_check_table), max is an int
        yield _spectra(ready, run)
    if carry is not None and not carry.is_empty():
        if carry["seq"][0] <= done:
            raise PerturbError(
                f"observation {observation!r}: rows are not grouped by 'seq'; sort the table by seq first"
            )
        yield _spectra(carry, run)
