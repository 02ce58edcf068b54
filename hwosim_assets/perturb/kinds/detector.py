"""Detector defects and limits: hot/warm/dead pixels, dead columns,
saturation and persistence - in the product's electrons, raw-like
(``live``) or as the calibrated product carries them (``archive``).

Spectra are one row of channels; a channel sums NPIXELS pixels of one
detector column (its aperture), so a defect or an afterimage reaches a
channel only where it falls inside that aperture.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import cast

import numpy as np

from hwosim_assets.perturb.batch import DETECTOR_PIXELS as G
from hwosim_assets.perturb.batch import SECONDS_PER_DAY, Batch, Coverage, Effect
from hwosim_assets.perturb.dq import DEAD, DO_NOT_USE, HOT, SATURATED, WARM
from hwosim_assets.perturb.draws import Draws
from hwosim_assets.perturb.rng import Stream
from hwosim_assets.perturb.spec import Expectation, KindSpec, Param

BOTH = frozenset({"spectra", "images"})
APERTURE_ROWS = 64  # the tallest extraction aperture the defect maps cover (NPIXELS beyond are clamped)


def _frozen(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mark cached arrays read-only: they are shared by every later call."""
    for array in arrays:
        array.setflags(write=False)
    return arrays


def _grid(batch: Batch) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(ny, nx, first detector row, first detector column) of each packet;
    spectra are one row whose columns are the channel positions."""
    if batch.family == "images":
        _, ny, nx = batch.value.shape
        rows = cast(np.ndarray, batch.rows)  # an image batch has its detector rows
        return ny, nx, rows[:, 0] % G, batch.cols[:, 0] % G
    return 1, batch.value.shape[1], np.zeros(batch.n, dtype=np.int64), batch.cols[:, 0] % G


def _disc(radius: int) -> tuple[np.ndarray, np.ndarray]:
    dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    keep = dy**2 + dx**2 <= radius**2
    return dy[keep], dx[keep]


def _place(
    batch: Batch,
    owner: np.ndarray,
    cy: np.ndarray,
    cx: np.ndarray,
    dy: np.ndarray,
    dx: np.ndarray,
    weight: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices into ``value`` and weights of footprint pixels that fall
    inside their packet. cy, cx: (E,) local centres; dy, dx, weight: (E, K)."""
    ny, nx, _, _ = _grid(batch)
    y = cy[:, None] + dy
    x = cx[:, None] + dx
    inside = (y >= 0) & (y < ny) & (x >= 0) & (x < nx) & (weight > 0)
    flat = (owner[:, None] * (ny * nx) + y * nx + x)[inside]
    return flat.astype(np.int64), np.broadcast_to(weight, inside.shape)[inside]


def _deposit(batch: Batch, flat: np.ndarray, electrons: np.ndarray) -> None:
    """Add charge (electrons) at flat indices, converted to data units."""
    np.add.at(batch.value.reshape(-1), flat, (electrons * batch.scale_at(flat)).astype(batch.value.dtype))


def _gauss(stream: Stream, count: int, lane: int) -> np.ndarray:
    """(n, count) standard normals of the packets of ``stream``."""
    return stream.normal(count, lane=lane)


# --- fixed-pattern defects ---------------------------------------------------


CLASSES = ("warm", "hot", "dead")  # later classes overwrite earlier ones at the same position


@lru_cache(maxsize=64)
def defect_map(key: int, p_items: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dark rate e-/s per pixel, class per pixel: 0 none, 1 warm, 2 hot, 3
    dead, sorted flat positions of all defects) over the 2048^2 detector:
    fixed for the observation. Each class places fraction x pixels at uniform
    random positions (with replacement); later classes overwrite earlier ones."""
    p = dict(p_items)
    size = G * G
    rate = np.zeros(size, dtype=np.float32)
    kind = np.zeros(size, dtype=np.int8)
    for lane, (cls, mean) in enumerate((("warm", p["warm_e_s"]), ("hot", p["hot_e_s"]), ("dead", 0.0))):
        count = int(round(p[f"{cls}_fraction"] * size))
        if count == 0:
            continue
        u = Stream(key, np.array([lane])).uniform(2 * count)[0]
        where = np.minimum((u[:count] * size).astype(np.int64), size - 1)
        rate[where] = mean * -np.log(u[count:]) if cls != "dead" else 0.0  # exponential spread of dark rates
        kind[where] = lane + 1
    frozen = _frozen(rate.reshape(G, G), kind.reshape(G, G), np.flatnonzero(kind))
    return cast(tuple[np.ndarray, np.ndarray, np.ndarray], frozen)  # _frozen returns the arrays it is given


@lru_cache(maxsize=64)
def aperture_defects(key: int, p_items: tuple) -> tuple[np.ndarray, ...]:
    """For extracted spectra: per (aperture height h = 1..APERTURE_ROWS, detector
    column), the summed dark rate, dead-pixel count and hot/warm presence of
    the defects in the column's first h rows (the aperture's pixels)."""
    rate, kind, _ = defect_map(key, p_items)
    rows = slice(0, APERTURE_ROWS)
    r, k = rate[rows].astype(np.float64), kind[rows]
    return _frozen(
        np.cumsum(r, axis=0),
        np.cumsum(k == 3, axis=0),
        np.maximum.accumulate(k == 2, axis=0),
        np.maximum.accumulate(k == 1, axis=0),
    )


def _defects_in_tiles(batch: Batch, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted flat detector positions (row * G + col) of defects, the
    (defect index, flat index into value) of those that fall in each tile."""
    ny, nx, row0, col0 = _grid(batch)
    if ny > G or nx > G:
        raise ValueError(f"tiles larger than the {G}-pixel detector are not supported ({ny}x{nx})")
    rows = positions // G
    picks, flats = [], []
    for lo, hi in ((row0, np.minimum(row0 + ny, G)), (np.zeros_like(row0), np.maximum(row0 + ny - G, 0))):
        a = np.searchsorted(positions, lo * G)
        b = np.searchsorted(positions, hi * G)
        count = b - a
        owner = np.repeat(np.arange(batch.n), count)
        cand = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count) + np.repeat(a, count)
        ly = (rows[cand] - row0[owner]) % G
        lx = (positions[cand] % G - col0[owner]) % G
        keep = lx < nx
        picks.append(cand[keep])
        flats.append(owner[keep] * (ny * nx) + ly[keep] * nx + lx[keep])
    return np.concatenate(picks), np.concatenate(flats).astype(np.int64)


def _keyed_normals(key: int, seq: np.ndarray, position: np.ndarray) -> np.ndarray:
    """One standard normal per (packet, detector position): the same whatever the chunking."""
    if len(seq) == 0:
        return np.empty(0)
    return Stream(key, seq.astype(np.int64) * (G * G) + position.astype(np.int64)).normal(1)[:, 0]


def hot_pixels(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Fixed hot, warm and dead pixels (the same detector pixels in every packet).

    * live (raw-like): a hot or warm pixel adds its dark current x the
      integration time (exponentially spread around the class mean); a dead
      pixel collects nothing.
    * archive: the dark step subtracts the dark current, leaving its shot
      noise (drawn, and added to VAR_POISSON and ERR); the bad-pixel mask
      flags HOT / WARM; a dead pixel is DEAD + DO_NOT_USE and NaN.

    Extracted channels see the defects inside their aperture (the column's
    first NPIXELS rows): their dark charge is summed, and a dead pixel takes
    its share (1 / NPIXELS) of the channel's flux away, flagged DEAD (the
    channel itself still has data).

    Magnitude: number of elements with a defect in the packet."""
    items = tuple(sorted(p.items()))
    key = draws.key("observation")
    archive = batch.stage == "archive"
    seconds = batch.seconds
    if batch.family == "spectra":
        cum_rate, cum_dead, any_hot, any_warm = aperture_defects(key, items)
        aperture = batch.aperture()
        height = np.clip(np.rint(aperture).astype(np.int64), 0, APERTURE_ROWS)
        has = height > 0
        h = np.maximum(height, 1) - 1
        col = batch.cols % G
        charge = np.where(has, cum_rate[h, col] * seconds, 0.0)
        dead = np.where(has, cum_dead[h, col], 0)
        hot, warm = has & any_hot[h, col], has & any_warm[h, col]
        bad = (charge > 0) | (dead > 0)
        scale = batch.per_electron
        if archive:
            z = _keyed_normals(draws.key("packet"), np.broadcast_to(batch.seq[:, None], bad.shape)[bad], col[bad])
            noise = np.zeros(bad.shape)
            noise[bad] = z * np.sqrt(charge[bad])
            batch.value += noise * scale
            batch.add_variance(charge * scale**2, "poisson", where=bad)
            batch.flag(hot, HOT)
            batch.flag(warm & ~hot, WARM)
            batch.flag(dead > 0, DEAD)
        else:
            batch.value += np.where(bad, charge * scale, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            kept = np.where(dead > 0, 1.0 - dead / np.maximum(aperture, 1.0), 1.0)
        batch.value *= kept
        expected = -np.expm1(
            -(p["hot_fraction"] + p["warm_fraction"] + p["dead_fraction"]) * np.minimum(aperture, APERTURE_ROWS)
        )
        return Effect(bad, bad.sum(axis=1).astype(float), expected=(expected.sum(axis=1), np.zeros(batch.n)))
    fraction = -math.expm1(-(p["hot_fraction"] + p["warm_fraction"] + p["dead_fraction"]))
    # the per-defect arrays grow with the defect fraction (12 % of the pixels at level 5): a few
    # packets at a time, in bounded memory (packets are independent: the same result)
    step = max(1, int(DEFECT_BUDGET / max(fraction * batch.elements, 1.0)))
    parts = [slice(i, min(i + step, batch.n)) for i in range(0, batch.n, step)]
    flat = np.concatenate(
        [
            _defects_part(batch.packets(part) if len(parts) > 1 else batch, key, items, draws, archive, seconds)
            + part.start * batch.elements
            for part in parts
        ]
    )
    return Effect(
        flat,
        np.bincount(flat // batch.elements, minlength=batch.n).astype(float),
        expected=(np.full(batch.n, fraction * batch.elements), np.zeros(batch.n)),
    )


DEFECT_BUDGET = 1 << 18  # defect pixels handled together in hot_pixels: a few MB per temporary


def _defects_part(batch: Batch, key: int, items: tuple, draws: Draws, archive: bool, seconds: float) -> np.ndarray:
    """:func:`hot_pixels` on the packets of an image batch: the defects of the
    map that fall in them; returns their flat indices."""
    rate, kind, positions = defect_map(key, items)
    pick, flat = _defects_in_tiles(batch, positions)
    det = positions[pick]
    cls = kind.reshape(-1)[det]
    charge = rate.reshape(-1)[det].astype(np.float64) * seconds
    values = batch.value.reshape(-1)
    scale = batch.scale_at(flat)
    live_pixels = cls != 3
    if archive:
        z = _keyed_normals(draws.key("packet"), batch.seq[flat // batch.elements], det)
        values[flat[live_pixels]] += (z * np.sqrt(charge) * scale)[live_pixels].astype(values.dtype)
        batch.add_variance_at(flat[live_pixels], (charge * scale**2)[live_pixels], "poisson")
        batch.flag(flat[cls == 2], HOT)
        batch.flag(flat[cls == 1], WARM)
        batch.blank(flat[cls == 3], DEAD | DO_NOT_USE)
    else:
        values[flat[live_pixels]] += (charge * scale)[live_pixels].astype(values.dtype)
        values[flat[~live_pixels]] = 0
    return flat


def expect_hot_pixels(p: Mapping[str, float], coverage: Coverage) -> Expectation:
    """The map is fixed: only distinct detector positions (columns for spectra) vary."""
    mean, _ = coverage.expected_total("hot_pixels")
    fraction = mean / max(coverage.elements, 1)
    n = coverage.positions if coverage.family == "images" else coverage.columns
    return Expectation(fraction, 4 * math.sqrt(fraction * (1 - fraction) / n) + 0.05 * fraction + 1 / n)


@lru_cache(maxsize=64)
def dead_column_set(key: int, columns: int) -> np.ndarray:
    """The first ``columns`` of a random permutation of the detector columns:
    a higher level keeps every column of a lower one dead."""
    order = np.argsort(Stream(key, np.array([0])).uniform(G)[0], kind="stable")
    dead = np.zeros(G, dtype=bool)
    dead[order[: int(columns)]] = True
    return _frozen(dead)[0]


def dead_columns(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Whole detector columns with no response, fixed for the observation:
    raw-like (live) they read zero; calibrated (archive) the bad-pixel mask
    has them DEAD + DO_NOT_USE and their values are NaN - an extracted
    channel on a dead column has nothing to sum and is NaN too, never 0 Jy.

    Magnitude: number of dead columns crossing the packet."""
    dead = dead_column_set(draws.key("observation"), int(p["columns"]))[batch.cols % G]
    if batch.family == "spectra":
        where = dead
    else:
        _, ny, nx = batch.value.shape
        packet, col = np.nonzero(dead)
        where = ((packet * ny * nx + col)[:, None] + np.arange(ny)[None, :] * nx).ravel()
    if batch.stage == "archive":
        batch.blank(where, DEAD | DO_NOT_USE)
    else:
        batch.value.reshape(-1)[where if batch.family == "images" else np.flatnonzero(dead)] = 0
    return Effect(where, dead.sum(axis=1).astype(float))


def expect_dead_columns(p: Mapping[str, float], coverage: Coverage) -> Expectation:
    """Columns are a random subset of the 2048, so the dead share of the W
    columns covered is hypergeometric around columns / 2048."""
    fraction = p["columns"] / G
    width = min(max(coverage.columns, 1), G)
    dead = min(max(int(round(p["columns"])), 0), G)
    # the exact hypergeometric band (1e-4 each side): a Gaussian 4-sigma band is far too narrow
    # when the product sees few columns (a 100-column cut-out catches a dead one in ~5 % of runs)
    total = math.comb(G, width)
    pmf = [math.comb(dead, k) * math.comb(G - dead, width - k) / total for k in range(min(dead, width) + 1)]
    cdf = np.cumsum(pmf)
    low = int(np.searchsorted(cdf, 1e-4))
    high = int(np.searchsorted(cdf, 1 - 1e-4))
    mean = dead * width / G
    spread = max(high - mean, mean - low, 0.0)
    return Expectation(fraction, spread / width + 1e-9)


def saturation(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Saturation at ``well_fraction`` x the detector's full well
    (:mod:`hwosim_assets.perturb.detectors`), judged on the brightest pixel:
    an image pixel's own charge, or ``core_fraction`` of an extracted
    channel's charge (the trace's peak pixel).

    * live: the ramp plateaus - the value is clipped where the peak pixel
      reaches the well.
    * archive: the saturation step flags the groups after the well is
      reached and the ramp is fitted from the n = N x well / peak groups
      before (SATURATED): the value stays, its noise grows (read noise by
      (N/n)^3, shot noise by N/n; drawn, and written into the variances and
      ERR). Fewer than two good groups leave no slope: NaN, SATURATED +
      DO_NOT_USE.

    Magnitude: number of saturated elements.

    The test runs a few packets at a time and the rest only on the saturated
    elements (flat indices), so no full-size float64 temporary is made."""
    well = p["well_fraction"] * batch.detector.full_well_e
    factor = p["core_fraction"] if batch.family == "spectra" else 1.0
    n, size = batch.n, batch.elements
    values = batch.value.reshape(n, size)
    scale = batch.per_electron_rows()
    rows_saturated = np.empty((n, size), dtype=bool)
    with np.errstate(invalid="ignore"):
        for part in batch._pieces():
            value = values[part]
            electrons = np.where(value > 0, value / scale[part], 0.0)  # Batch.electrons, piece by piece
            peak_part = electrons * factor
            np.logical_and(np.isfinite(peak_part), peak_part > well, out=rows_saturated[part])
    counts = rows_saturated.sum(axis=1).astype(float)
    saturated = rows_saturated.reshape(batch.value.shape)
    flat = np.flatnonzero(saturated)
    if len(flat) == 0:
        return Effect(saturated, np.zeros(batch.n))
    value_flat = batch.value.reshape(-1)
    scale_flat = batch.scale_at(flat)
    if batch.stage == "live":
        limit = (well / factor * scale_flat).astype(batch.value.dtype)
        value_flat[flat] = np.minimum(value_flat[flat], limit)
        return Effect(saturated, counts)
    peak = value_flat[flat] / scale_flat * factor  # positive: the saturated are above the well
    ngroups = batch.exposure.groups
    good = np.floor(ngroups * well / peak)
    lost = good < 2
    kept = ~lost
    if kept.any():
        n_good = good[kept]
        rn = np.broadcast_to(batch.exposure.read_noise_e(), (len(flat),))[kept]
        extra_e2 = rn**2 * ((ngroups / n_good) ** 3 - 1.0) + peak[kept] * (ngroups / n_good - 1.0)
        flat_kept = flat[kept]
        z = _keyed_normals(draws.key("packet"), batch.seq[flat_kept // batch.elements], flat_kept % batch.elements)
        scale = scale_flat[kept]
        value_flat[flat_kept] += (z * np.sqrt(extra_e2) * scale).astype(batch.value.dtype)
        batch.add_variance_at(flat_kept, extra_e2 * scale**2, "rnoise")
        batch.flag(flat_kept, SATURATED)
    if lost.any():
        batch.blank(flat[lost], SATURATED | DO_NOT_USE)
    return Effect(saturated, counts)


# --- persistence -------------------------------------------------------------

DECAY_WINDOW_TAU = 5.0  # afterimages older than 5 tau (< 0.7 %) are dropped
PACKETS_PER_PASS = 256  # packets x afterimages arrays are built this many packets at a time (bounded memory)


@lru_cache(maxsize=4096)
def afterimages_in_bin(key: int, time_bin: int, per_bin: float, bin_s: float) -> np.ndarray:
    """(k, 3) array of (onset s, row, col) of bright-source afterimages that
    start in one absolute time bin, anywhere on the 2048^2 detector."""
    stream = Stream(key, np.array([time_bin]))
    count = int(stream.poisson(np.array([per_bin]))[0])
    if count == 0:
        return np.empty((0, 3))
    _, u = stream.events(np.array([count]), width=3, lane=1)
    return _frozen(np.column_stack([(time_bin + u[:, 0]) * bin_s, np.floor(u[:, 1] * G), np.floor(u[:, 2] * G)]))[0]


def persistence(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Afterimages of earlier bright sources: charge trapped during an earlier
    exposure leaks out as a faint copy of the source decaying as
    exp(-dt / tau). Sources appear at ``rate_per_hour`` anywhere on the
    detector on an absolute time grid, so every packet sees the same
    afterimages whatever the order it is processed in. An extracted channel
    sees an afterimage only when it falls on its aperture (the column's first
    NPIXELS rows), with the share of its profile inside. Neither stage flags
    them: the persistence step needs the previous exposures' trap state,
    which archive products of other programs do not have.

    Magnitude: number of afterimages touching the packet."""
    flats, weights, counts = [], [], np.zeros(batch.n)
    for first in range(0, batch.n, PACKETS_PER_PASS):
        part = slice(first, min(first + PACKETS_PER_PASS, batch.n))
        flat, w, count = _afterimages(batch, p, draws, part)
        flats.append(flat)
        weights.append(w)
        counts[part] = count
    flat, w = np.concatenate(flats), np.concatenate(weights)
    if len(flat) == 0:
        return Effect.nothing(batch)
    _deposit(batch, flat, w)
    return Effect(flat, counts)


def _afterimages(
    batch: Batch, p: Mapping[str, float], draws: Draws, part: slice
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices, charges (e-) and per-packet counts of afterimages on packets ``part``."""
    tau = p["tau_s"]
    bin_s = tau
    t_s = batch.time_mjd[part] * SECONDS_PER_DAY
    n = len(t_s)
    first = np.floor((t_s - DECAY_WINDOW_TAU * tau) / bin_s).astype(np.int64)
    last = np.floor(t_s / bin_s).astype(np.int64)
    per_bin = p["rate_per_hour"] * bin_s / 3600.0
    bins: np.ndarray | list[int] = np.arange(first.min(), last.max() + 1) if n else []
    events: list[np.ndarray] | np.ndarray = [
        afterimages_in_bin(draws.key("time_bin"), int(b), per_bin, bin_s) for b in bins
    ]
    events = np.concatenate(events) if events else np.empty((0, 3))
    if len(events) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0), np.zeros(n)
    ny, nx, row0, col0 = _grid(batch)
    row0, col0 = row0[part], col0[part]
    radius = int(math.ceil(3 * p["radius_px"]))
    age = t_s[:, None] - events[None, :, 0]
    lx = (events[None, :, 2] - col0[:, None] + radius) % G - radius
    if batch.family == "images":
        ly = (events[None, :, 1] - row0[:, None] + radius) % G - radius
        near = (age >= 0) & (age <= DECAY_WINDOW_TAU * tau) & (ly < ny + radius) & (lx < nx + radius)
    else:  # the aperture: rows 0 .. NPIXELS-1 of the column
        height = np.median(batch.aperture()[part], axis=1)[:, None]
        ly = np.broadcast_to(events[None, :, 1], age.shape)
        near = (age >= 0) & (age <= DECAY_WINDOW_TAU * tau) & (ly < height + radius) & (lx < nx + radius) & (height > 0)
    owner, which = np.nonzero(near)
    if batch.family == "images":
        dy, dx = _disc(radius)
        weight = np.broadcast_to(np.exp(-(dy**2 + dx**2) / (2 * p["radius_px"] ** 2)), (len(owner), len(dx)))
        cy = ly[owner, which].astype(np.int64)
    else:
        dx = np.arange(-radius, radius + 1)
        dy = np.zeros_like(dx)
        rows = np.arange(int(np.max(batch.aperture()[part], initial=1)))[None, :]
        inside = np.exp(-((rows - events[which, 1][:, None]) ** 2) / (2 * p["radius_px"] ** 2))
        inside = np.where(rows < np.median(batch.aperture()[part], axis=1)[owner][:, None], inside, 0.0).sum(axis=1)
        weight = np.exp(-(dx**2) / (2 * p["radius_px"] ** 2))[None, :] * inside[:, None]
        cy = np.zeros(len(owner), dtype=np.int64)
    amplitude = p["amplitude_e"] * np.exp(-age[owner, which] / tau)
    offset = part.start
    flat, w = _place(
        batch,
        owner + offset,
        cy,
        lx[owner, which].astype(np.int64),
        dy[None, :],
        dx[None, :],
        weight * amplitude[:, None],
    )
    return flat, w, np.bincount(owner, minlength=n).astype(float)


HOT_PIXELS = KindSpec(
    name="hot_pixels",
    summary="fixed hot, warm and dead pixels",
    grounding=(
        "JWST bad-pixel reference files flag DEAD, HOT and WARM pixels (stdatamodels "
        "dqflags) - ~1.7 % of the NIRCam LW pixels are flagged (grizli pull request #277); "
        "the kind adds defects the product's own mask missed: new hot pixels appear in science "
        "data (grizli issue #200) and MIRI's bad pixels change within days (jwst "
        "outlier_detection docs, IFU). Dark charge = rate x the product's integration time."
    ),
    families=BOTH,
    params=(
        Param("hot_fraction", "", "probability", "share of hot pixels"),
        Param("warm_fraction", "", "probability", "share of warm pixels"),
        Param("dead_fraction", "", "probability", "share of dead pixels"),
        Param("hot_e_s", "e-/s", "nonneg", "mean dark current of a hot pixel", high=1e6),
        Param("warm_e_s", "e-/s", "nonneg", "mean dark current of a warm pixel", high=1e6),
    ),
    levels={
        "hot_fraction": (0, 0.0001, 0.0005, 0.004, 0.01, 0.03),
        "warm_fraction": (0, 0.00015, 0.0015, 0.01, 0.03, 0.07),
        "dead_fraction": (0, 0.00005, 0.0002, 0.003, 0.005, 0.02),
        "hot_e_s": (10.0,),
        "warm_e_s": (1.0,),
    },
    anchors={
        1: "0.03 % new bad pixels: outliers found in 2025 NIRCam LW imaging beyond the CRDS DO_NOT_USE mask "
        "(jwst_1431.pmap) - 'an additional ~0.03% of the LW detector pixels' (grizli pull request #277, "
        "'Update utils.py'); new NIRCam LW hot pixels, ~20 % of them intermittent, are found in science data "
        "(grizli issue #200)",
        3: "1.7 % bad: the share of NIRCam LW pixels already flagged in grizli's bad-pixel masks (CRDS "
        "DO_NOT_USE pixels and earlier additions: '~1.7% which were already flagged', grizli pull request "
        "#277) - a product calibrated with a stale or missing mask",
        5: "12 % bad: the share of FGS2 pixels its early bad-pixel reference mask flagged (FGS1: 6 %; jwst "
        "issue #6366, 'FGS Mask File rarely sets the DO NOT USE bit') - the largest flagged share on record "
        "for a JWST H2RG",
    },
    is_off=lambda p: p["hot_fraction"] + p["warm_fraction"] + p["dead_fraction"] == 0,
    apply=hot_pixels,
    expect=expect_hot_pixels,
)

DEAD_COLUMNS = KindSpec(
    name="dead_columns",
    summary="whole dead detector columns (dead channels in spectra)",
    grounding=(
        "Column defects are flagged in the JWST bad-pixel masks (DQ DEAD + DO_NOT_USE); an "
        "amplifier or column-buffer failure blanks whole columns of a 2048-column H2RG."
    ),
    families=BOTH,
    params=(Param("columns", "columns per 2048", "count", "dead columns on the detector", high=2048),),
    levels={"columns": (0, 1, 2, 4, 8, 32)},
    anchors={
        1: "what-if (no record): one dead column - no dead column of a JWST H2RG is documented",
        2: "2 columns: the MIRI imager's two shorted columns 385 and 386, flagged in its bad-pixel mask "
        "(JDox 'MIRI Imaging Known Issues')",
        5: "what-if (no record): 32 columns, a failing column buffer - no such failure is on record",
    },
    is_off=lambda p: p["columns"] == 0,
    apply=dead_columns,
    expect=expect_dead_columns,
)

SATURATION = KindSpec(
    name="saturation",
    summary="saturation at a fraction of the detector's full well",
    grounding=(
        "Full well ~100 ke- for the H2RGs (JDox NIRCam/NIRSpec detector performance) and "
        "~210,000 e- for MIRI (JDox 'MIRI Detector Performance'); archive products fit the "
        "ramp from the groups before saturation and flag SATURATED (jwst saturation step)."
    ),
    families=BOTH,
    params=(
        Param(
            "well_fraction",
            "x full well",
            "positive",
            "usable share of the detector's full well (inf = off)",
            high=math.inf,
        ),
        Param("core_fraction", "", "fraction", "spectra: share of a channel's charge in its brightest pixel"),
    ),
    levels={"well_fraction": (math.inf, 1.0, 0.78, 0.7, 0.4, 0.2), "core_fraction": (0.4,)},
    anchors={
        1: "1.0: the documented full wells - only sources that truly saturate do",
        2: "0.78: MIRI's usable share - the ETC saturation limit of 193,655 e- against a 250,000 e- full "
        "well (JDox 'JWST ETC Saturation', Table 1)",
        3: "0.7: the usable share for time series - NIRCam's time-series ETC limits are ~70 % of full well "
        "(73,990 e- SW; same table), a bright time-series target saturating early",
        4: "interpolated",
        5: "what-if (no record): 0.2 - a well shrunk to a fifth (a raised bias, or the charge of a preceding "
        "saturating exposure); no such loss is documented",
    },
    is_off=lambda p: math.isinf(p["well_fraction"]),
    apply=saturation,
)

PERSISTENCE = KindSpec(
    name="persistence",
    summary="decaying afterimages of earlier bright sources",
    grounding=(
        "NIRCam persistence: residual images lasting seconds to hours; the long "
        "time constant is ~1000 s (JDox 'NIRCam Persistence'; STScI IJDPW notes); "
        "charge-trapping persistence settles over 5-15 min in NIRCam time series "
        "(Schlawin et al. 2023); MIRI latents are < 1 % (JDox 'MIRI Detector "
        "Performance'), up to 1.69 % after a saturating star (arXiv:2512.15477)."
    ),
    families=BOTH,
    params=(
        Param("rate_per_hour", "1/h", "nonneg", "new afterimages per hour on the detector", high=1e4),
        Param("amplitude_e", "e-", "nonneg", "initial afterimage peak", high=1e7),
        Param("tau_s", "s", "positive", "decay time constant", high=1e6),
        Param("radius_px", "px", "positive", "afterimage (PSF core) sigma", high=100),
    ),
    levels={
        "rate_per_hour": (0, 2, 5, 10, 30, 100),
        "amplitude_e": (0, 100, 200, 500, 1000, 3500),
        "tau_s": (1000.0,),
        "radius_px": (1.5,),
    },
    anchors={
        1: "what-if figure: a few faint (100 e-, 0.1 % of a full well) afterimages an hour - persistence is "
        "'typically inconsequential for NIRCam observations' (JDox 'NIRCam Persistence'); no typical rate is "
        "published",
        2: "interpolated",
        3: "interpolated",
        4: "1000 e-: 1 % of a ~100 ke- H2RG well, the bound of the '< 1 %' latent images of MIRI's flight "
        "measurements (JDox 'MIRI Detector Performance', Table 1)",
        5: "3500 e-: 1.69 % of a saturating source's level 11.6 min after it (MIRI F2100W, arXiv:2512.15477, "
        "'A Characterization of JWST MIRI Detector Persistence ...'; there a flux deficit) x MIRI's ~210,000 e- "
        "full well; NIRCam "
        "long-term persistence has forced repeats (JDox 'NIRCam Persistence'); rate: a bright field just "
        "before (what-if)",
    },
    is_off=lambda p: p["rate_per_hour"] * p["amplitude_e"] == 0,
    apply=persistence,
)
