"""Detector events: cosmic rays, hot/warm/dead pixels, dead columns,
saturation and persistence.

Spectra are treated as one-row images (a packet of m channels is a 1 x m
tile), so footprints and defect maps are written once for both families.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Mapping

import numpy as np

from hwosim_assets.perturb.batch import DETECTOR_PIXELS as G
from hwosim_assets.perturb.batch import PIXEL_AREA_CM2, SECONDS_PER_DAY, Batch, Effect
from hwosim_assets.perturb.draws import Draws
from hwosim_assets.perturb.rng import Stream
from hwosim_assets.perturb.spec import Expectation, KindSpec, Param

BOTH = frozenset({"spectra", "images"})


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
        return ny, nx, batch.rows[:, 0] % G, batch.cols[:, 0] % G
    return 1, batch.value.shape[1], np.zeros(batch.n, dtype=np.int64), batch.cols[:, 0] % G


def _place(batch: Batch, owner, cy, cx, dy, dx, weight) -> tuple[np.ndarray, np.ndarray]:
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


# --- cosmic rays -------------------------------------------------------------

SNOWBALL_CORE_E = 60_000.0  # snowball cores saturate: about one full well per pixel
SNOWBALL_RADII = np.arange(2, 7)  # px
SHOWER_LENGTHS = np.arange(8, 41)  # px, track length of a secondary shower


def _disc(radius: int) -> tuple[np.ndarray, np.ndarray]:
    dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    keep = dy**2 + dx**2 <= radius**2
    return dy[keep], dx[keep]


SINGLE_DY, SINGLE_DX = (a.ravel() for a in np.mgrid[-1:2, -1:2])
# centre 1, edge neighbours 5 %, corners 2 %: charge diffusion plus inter-pixel capacitance
SINGLE_WEIGHT = np.array([0.02, 0.05, 0.02, 0.05, 1.0, 0.05, 0.02, 0.05, 0.02])


def footprint_areas(family: str) -> dict[str, np.ndarray]:
    """Elements covered by each footprint shape (for the expected fraction)."""
    if family == "images":
        return {
            "single": np.array([9.0]),
            "snowball": np.array([float(len(_disc(int(r))[0])) for r in SNOWBALL_RADII]),
            "shower": SHOWER_LENGTHS.astype(float),
        }
    return {
        "single": np.array([3.0]),
        "snowball": 2.0 * SNOWBALL_RADII + 1,
        "shower": (SHOWER_LENGTHS // 4 + 1).astype(float),
    }


def _cosmic_footprints(batch: Batch, p, owner, u) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices and deposited electrons of every event's footprint."""
    ny, nx, _, _ = _grid(batch)
    images = batch.family == "images"
    cy = np.floor(u[:, 0] * ny).astype(np.int64)
    cx = np.floor(u[:, 1] * nx).astype(np.int64)
    kind = np.where(u[:, 2] < p["snowball_fraction"], 1, np.where(u[:, 2] < p["snowball_fraction"] + p["shower_fraction"], 2, 0))
    flats, charges = [], []

    def add(sel, dy, dx, weight, electrons):
        flat, charge = _place(batch, owner[sel], cy[sel], cx[sel], dy, dx, weight * electrons[:, None])
        flats.append(flat)
        charges.append(charge)

    single = kind == 0
    energy = p["deposit_e"] * -np.log(u[:, 5])  # exponential spread around the mean deposit
    if images:
        add(single, SINGLE_DY[None, :], SINGLE_DX[None, :], np.broadcast_to(SINGLE_WEIGHT, (int(single.sum()), 9)), energy[single])
    else:
        zero = np.zeros((1, 3), dtype=np.int64)
        add(single, zero, np.array([[-1, 0, 1]]), np.broadcast_to([0.05, 1.0, 0.05], (int(single.sum()), 3)), energy[single])
    snow = kind == 1
    if snow.any():  # every radius at once: the largest disc, masked to each event's radius
        radius = SNOWBALL_RADII[np.minimum((u[snow, 3] * len(SNOWBALL_RADII)).astype(int), len(SNOWBALL_RADII) - 1)]
        biggest = int(SNOWBALL_RADII.max())
        if images:
            dy, dx = _disc(biggest)
        else:
            dx = np.arange(-biggest, biggest + 1)
            dy = np.zeros_like(dx)
        within = (dy**2 + dx**2)[None, :] <= (radius**2)[:, None]
        add(snow, dy[None, :], dx[None, :], within.astype(float), np.full(len(radius), SNOWBALL_CORE_E))
    shower = kind == 2
    if shower.any():
        length = SHOWER_LENGTHS[np.minimum((u[shower, 3] * len(SHOWER_LENGTHS)).astype(int), len(SHOWER_LENGTHS) - 1)]
        if not images:
            length = length // 4 + 1
        t = np.arange(SHOWER_LENGTHS.max())[None, :] - (length[:, None] // 2)
        on = (t + length[:, None] // 2) < length[:, None]
        if images:
            angle = 2 * np.pi * u[shower, 4]
            step = np.stack([np.sin(angle), np.cos(angle)])
            step /= np.abs(step).max(axis=0)  # one pixel per step along the major axis
            dy = np.rint(t * step[0][:, None]).astype(np.int64)
            dx = np.rint(t * step[1][:, None]).astype(np.int64)
        else:
            dy, dx = np.zeros_like(t), t
        add(shower, dy, dx, np.where(on, 0.5, 0.0), np.full(int(shower.sum()), p["deposit_e"]))
    return np.concatenate(flats), np.concatenate(charges)


def _events_per_packet(batch: Batch, p: Mapping[str, float]) -> np.ndarray:
    """Expected cosmic-ray hits on each packet: rate x sensitive area x exposure."""
    pixels = batch.elements * (p["aperture_px"] if batch.family == "spectra" else 1.0)
    return np.full(batch.n, p["rate_cm2_s"] * p["exposure_s"] * pixels * PIXEL_AREA_CM2)


def cosmic_rays(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Cosmic-ray hits: a Poisson number of events per packet (rate per cm^2
    per s x 18 um pixel area x integration time), each a single hit (3x3
    footprint), a snowball (saturated disc, radius 2-6 px) or a shower
    (a track of 8-40 px).

    Magnitude: number of events on the packet."""
    packets = draws.packets(batch.seq)
    counts = packets.poisson(_events_per_packet(batch, p), lane=0)
    if counts.sum() == 0:
        return Effect(np.empty(0, dtype=np.int64), counts.astype(float))
    owner, u = packets.events(counts, width=6, lane=1)
    flat, electrons = _cosmic_footprints(batch, p, owner, u)
    _deposit(batch, flat, electrons)
    return Effect(flat, counts.astype(float))


def expect_cosmic_rays(p: Mapping[str, float], coverage) -> Expectation:
    """Boolean-model coverage 1 - exp(-events per element x mean footprint)."""
    areas = footprint_areas(coverage.family)
    f_sb, f_sh = p["snowball_fraction"], p["shower_fraction"]
    share = {"single": 1 - f_sb - f_sh, "snowball": f_sb, "shower": f_sh}
    mean_area = sum(share[k] * areas[k].mean() for k in areas)
    mean_sq = sum(share[k] * (areas[k] ** 2).mean() for k in areas)
    per_element = p["rate_cm2_s"] * p["exposure_s"] * PIXEL_AREA_CM2 * (p["aperture_px"] if coverage.family == "spectra" else 1)
    fraction = 1 - math.exp(-per_element * mean_area)
    events = per_element * coverage.elements
    sd = math.sqrt(events * mean_sq) / max(coverage.elements, 1)
    # footprints clipped at packet edges lose up to ~15 % of their area in small tiles
    return Expectation(fraction, 0.15 * fraction + 4 * sd + 1 / max(coverage.elements, 1))


# --- fixed-pattern defects ---------------------------------------------------


@lru_cache(maxsize=64)
def defect_map(key: int, shape: tuple[int, ...], p_items: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(excess dark charge in e- per pixel, dead mask, sorted flat positions of
    all defects) over the detector: fixed
    for the observation. Each class places fraction x pixels at uniform random
    positions (with replacement); later classes overwrite earlier ones."""
    p = dict(p_items)
    size = int(np.prod(shape))
    excess = np.zeros(size, dtype=np.float32)
    dead = np.zeros(size, dtype=bool)
    for lane, (cls, rate) in enumerate((("warm", p["warm_e_s"]), ("hot", p["hot_e_s"]), ("dead", 0.0))):
        count = int(round(p[f"{cls}_fraction"] * size))
        if count == 0:
            continue
        u = Stream(key, np.array([lane])).uniform(2 * count)[0]
        where = np.minimum((u[:count] * size).astype(np.int64), size - 1)
        if cls == "dead":
            dead[where] = True
            excess[where] = 0
        else:
            excess[where] = rate * p["exposure_s"] * -np.log(u[count:])  # exponential spread of dark rates
            dead[where] = False
    return _frozen(excess.reshape(shape), dead.reshape(shape), np.flatnonzero((excess != 0) | dead))


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


def hot_pixels(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Fixed hot, warm and dead pixels: hot and warm pixels add their dark
    current x exposure (exponentially spread around the class mean); dead
    pixels read zero. The same detector pixels are bad in every packet.

    Magnitude: number of bad pixels in the packet."""
    shape = (G, G) if batch.family == "images" else (G,)
    excess, dead, positions = defect_map(draws.key("observation"), shape, tuple(sorted(p.items())))
    if batch.family == "spectra":
        pos = batch.cols % G
        bad = (excess[pos] != 0) | dead[pos]
        batch.value[bad] += (excess[pos] * batch.per_electron)[bad]
        batch.value[dead[pos]] = 0
        return Effect(bad, bad.sum(axis=1).astype(float))
    pick, flat = _defects_in_tiles(batch, positions)
    det = positions[pick]
    values = batch.value.reshape(-1)
    values[flat] += (excess.reshape(-1)[det] * batch.scale_at(flat)).astype(values.dtype)
    values[flat[dead.reshape(-1)[det]]] = 0
    return Effect(flat, np.bincount(flat // batch.elements, minlength=batch.n).astype(float))


def expect_hot_pixels(p: Mapping[str, float], coverage) -> Expectation:
    rate = p["hot_fraction"] + p["warm_fraction"] + p["dead_fraction"]
    fraction = 1 - math.exp(-rate)  # positions drawn with replacement
    n = coverage.positions  # the map is fixed: only distinct detector positions count
    return Expectation(fraction, 4 * math.sqrt(fraction * (1 - fraction) / n) + 1 / n)


@lru_cache(maxsize=64)
def dead_column_set(key: int, columns: int) -> np.ndarray:
    """The first ``columns`` of a random permutation of the detector columns:
    a higher level keeps every column of a lower one dead."""
    order = np.argsort(Stream(key, np.array([0])).uniform(G)[0], kind="stable")
    dead = np.zeros(G, dtype=bool)
    dead[order[: int(columns)]] = True
    return _frozen(dead)[0]


def dead_columns(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Whole detector columns with no response (read zero); for spectra, dead
    channels. Fixed for the observation.

    Magnitude: number of dead columns crossing the packet."""
    dead = dead_column_set(draws.key("observation"), int(p["columns"]))[batch.cols % G]
    if batch.family == "spectra":
        batch.value[dead] = 0
        return Effect(dead, dead.sum(axis=1).astype(float))
    _, ny, nx = batch.value.shape
    packet, col = np.nonzero(dead)
    flat = ((packet * ny * nx + col)[:, None] + np.arange(ny)[None, :] * nx).ravel()
    batch.value.reshape(-1)[flat] = 0
    return Effect(flat, dead.sum(axis=1).astype(float))


def expect_dead_columns(p: Mapping[str, float], coverage) -> Expectation:
    """Columns are a random subset of the 2048, so the dead share of the W
    columns covered is hypergeometric around columns / 2048."""
    fraction = p["columns"] / G
    width = max(coverage.columns, 1)
    sd = math.sqrt(fraction * (1 - fraction) * max(G - width, 0) / (G - 1) / width)
    return Expectation(fraction, 4 * sd + 1e-9)


def saturation(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Clip at full well: elements above ``full_well_e`` (in data units) are set
    to it, as a saturated ramp would read.

    Magnitude: number of clipped elements."""
    limit = (p["full_well_e"] * batch.per_electron).astype(batch.value.dtype)
    limit = np.broadcast_to(limit, batch.value.shape)
    clipped = batch.value > limit
    np.minimum(batch.value, limit, out=batch.value)
    return Effect(clipped, clipped.reshape(batch.n, -1).sum(axis=1).astype(float))


# --- persistence -------------------------------------------------------------

DECAY_WINDOW_TAU = 5.0  # afterimages older than 5 tau (< 0.7 %) are dropped


@lru_cache(maxsize=4096)
def afterimages_in_bin(key: int, time_bin: int, per_bin: float, bin_s: float, shape: tuple[int, ...]) -> np.ndarray:
    """(k, 3) array of (onset s, row, col) of bright-source afterimages that
    start in one absolute time bin, anywhere on the detector."""
    stream = Stream(key, np.array([time_bin]))
    count = int(stream.poisson(np.array([per_bin]))[0])
    if count == 0:
        return np.empty((0, 3))
    _, u = stream.events(np.array([count]), width=3, lane=1)
    rows = np.floor(u[:, 1] * shape[0]) if len(shape) == 2 else np.zeros(count)
    return _frozen(np.column_stack([(time_bin + u[:, 0]) * bin_s, rows, np.floor(u[:, 2] * shape[-1])]))[0]


def persistence(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Afterimages of earlier bright sources: charge trapped during an earlier
    exposure leaks out as a faint copy of the source decaying as
    exp(-dt / tau). Sources appear at ``rate_per_hour`` anywhere on the
    detector on an absolute time grid, so every packet sees the same
    afterimages whatever the order it is processed in.

    Magnitude: number of afterimages touching the packet."""
    tau = p["tau_s"]
    bin_s = tau
    t_s = batch.time_mjd * SECONDS_PER_DAY
    first = np.floor((t_s - DECAY_WINDOW_TAU * tau) / bin_s).astype(np.int64)
    last = np.floor(t_s / bin_s).astype(np.int64)
    shape = (G, G) if batch.family == "images" else (G,)
    key = draws.key("time_bin")
    per_bin = p["rate_per_hour"] * bin_s / 3600.0
    window = int(np.max(last - first)) + 1
    bins = np.unique(first[:, None] + np.arange(window)[None, :])
    events = np.concatenate([afterimages_in_bin(key, int(b), per_bin, bin_s, shape) for b in bins])
    if len(events) == 0:
        return Effect.nothing(batch)
    ny, nx, row0, col0 = _grid(batch)
    radius = int(math.ceil(3 * p["radius_px"]))
    age = t_s[:, None] - events[None, :, 0]
    ly = (events[None, :, 1] - row0[:, None] + radius) % G - radius
    lx = (events[None, :, 2] - col0[:, None] + radius) % G - radius
    near = (age >= 0) & (age <= DECAY_WINDOW_TAU * tau) & (ly < ny + radius) & (lx < nx + radius)
    if batch.family == "spectra":
        near &= ly == 0
    owner, which = np.nonzero(near)
    if batch.family == "images":
        dy, dx = _disc(radius)
    else:
        dx = np.arange(-radius, radius + 1)
        dy = np.zeros_like(dx)
    weight = np.exp(-(dy**2 + dx**2) / (2 * p["radius_px"] ** 2))
    amplitude = p["amplitude_e"] * np.exp(-age[owner, which] / tau)
    flat, w = _place(
        batch, owner, ly[owner, which].astype(np.int64), lx[owner, which].astype(np.int64),
        dy[None, :], dx[None, :], np.broadcast_to(weight, (len(owner), len(dx))) * amplitude[:, None],
    )
    _deposit(batch, flat, w)
    return Effect(flat, np.bincount(owner, minlength=batch.n).astype(float))


COSMIC_RAYS = KindSpec(
    name="cosmic_rays",
    summary="cosmic-ray hits: single pixels, snowballs and showers",
    grounding=(
        "JWST ETC assumes 8 events/cm^2/s, each touching 9 pixels (JDox 'JWST ETC "
        "Cosmic Ray Implementation'); NIRSpec measured 4.3 falling to 2.3 "
        "ions/cm^2/s at L2, ~7 px and ~5200 e- per hit, with rare snowballs and "
        "showers (Rauscher & Fixsen 2025, PASP 137, 095003). Level 5 is a solar "
        "particle event, ~100x the galactic rate."
    ),
    families=BOTH,
    params=(
        Param("rate_cm2_s", "events/cm^2/s", "nonneg", "hit rate on the detector", high=1e4),
        Param("exposure_s", "s", "nonneg", "integration time of one packet", high=1e5),
        Param("deposit_e", "e-", "nonneg", "mean charge of a single hit (centre pixel)", high=1e7),
        Param("snowball_fraction", "", "probability", "share of hits that are snowballs"),
        Param("shower_fraction", "", "probability", "share of hits that are showers"),
        Param("aperture_px", "px", "positive", "spectra: extraction height (pixels summed per channel)", high=2048),
    ),
    levels={
        "rate_cm2_s": (0, 2.3, 5.0, 8.0, 50.0, 500.0),
        "exposure_s": (100.0,),
        "deposit_e": (5200.0,),
        "snowball_fraction": (0.0, 0.005, 0.005, 0.01, 0.02, 0.05),
        "shower_fraction": (0.0, 0.002, 0.002, 0.005, 0.01, 0.05),
        "aperture_px": (20.0,),
    },
    is_off=lambda p: p["rate_cm2_s"] * p["exposure_s"] == 0,
    apply=cosmic_rays,
    expect=expect_cosmic_rays,
)

HOT_PIXELS = KindSpec(
    name="hot_pixels",
    summary="fixed hot, warm and dead pixels",
    grounding=(
        "JWST bad-pixel reference files flag DEAD, HOT and WARM pixels (jwst "
        "pipeline DQ flags); H2RG arrays keep well over 98 % of pixels operable, "
        "and new hot pixels accumulate with radiation dose."
    ),
    families=BOTH,
    params=(
        Param("hot_fraction", "", "probability", "share of hot pixels"),
        Param("warm_fraction", "", "probability", "share of warm pixels"),
        Param("dead_fraction", "", "probability", "share of dead pixels (read zero)"),
        Param("hot_e_s", "e-/s", "nonneg", "mean dark current of a hot pixel", high=1e6),
        Param("warm_e_s", "e-/s", "nonneg", "mean dark current of a warm pixel", high=1e6),
        Param("exposure_s", "s", "nonneg", "integration time of one packet", high=1e5),
    ),
    levels={
        "hot_fraction": (0, 0.0002, 0.0005, 0.001, 0.003, 0.01),
        "warm_fraction": (0, 0.0005, 0.0015, 0.003, 0.01, 0.03),
        "dead_fraction": (0, 0.0001, 0.0002, 0.0005, 0.001, 0.005),
        "hot_e_s": (10.0,),
        "warm_e_s": (1.0,),
        "exposure_s": (100.0,),
    },
    is_off=lambda p: p["hot_fraction"] + p["warm_fraction"] + p["dead_fraction"] == 0,
    apply=hot_pixels,
    expect=expect_hot_pixels,
)

DEAD_COLUMNS = KindSpec(
    name="dead_columns",
    summary="whole dead detector columns (dead channels in spectra)",
    grounding=(
        "Column defects are flagged in the JWST bad-pixel masks (DQ DEAD/"
        "NON_SCIENCE); an amplifier or column-buffer failure blanks whole columns "
        "of a 2048-column H2RG."
    ),
    families=BOTH,
    params=(Param("columns", "columns per 2048", "count", "dead columns on the detector", high=2048),),
    levels={"columns": (0, 1, 2, 4, 8, 32)},
    is_off=lambda p: p["columns"] == 0,
    apply=dead_columns,
    expect=expect_dead_columns,
)

SATURATION = KindSpec(
    name="saturation",
    summary="clip at a (lowered) full well",
    grounding=(
        "H2RG full well is ~60-100 ke- (JDox NIRCam/NIRSpec detector performance); "
        "saturated groups are lost and bright pixels plateau. Lower levels mimic a "
        "reduced well (higher bias or longer groups)."
    ),
    families=BOTH,
    params=(Param("full_well_e", "e-", "positive", "clip level (inf = off)", high=math.inf),),
    levels={"full_well_e": (math.inf, 100_000, 80_000, 60_000, 40_000, 20_000)},
    is_off=lambda p: math.isinf(p["full_well_e"]),
    apply=saturation,
)

PERSISTENCE = KindSpec(
    name="persistence",
    summary="decaying afterimages of earlier bright sources",
    grounding=(
        "NIRCam persistence: residual images lasting seconds to hours; the long "
        "time constant is ~1000 s (JDox 'NIRCam Persistence'; STScI IJDPW notes); "
        "charge-trapping persistence settles over 5-15 min in NIRCam time series "
        "(Schlawin et al. 2023)."
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
        "amplitude_e": (0, 100, 200, 500, 1000, 3000),
        "tau_s": (1000.0,),
        "radius_px": (1.5,),
    },
    is_off=lambda p: p["rate_per_hour"] * p["amplitude_e"] == 0,
    apply=persistence,
)
