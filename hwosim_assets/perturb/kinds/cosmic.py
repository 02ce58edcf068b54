"""Cosmic rays in physical units, before (``live``) or after (``archive``)
the pipeline's jump step.

**Rate.** Hits per element = flux (events/cm^2/s) x the detector's pixel
area (18 um H2RG, 25 um MIRI) x the pixels behind the element (NPIXELS for
an extracted channel) x the product's integration time (EFFINTTM; see
:mod:`hwosim_assets.perturb.exposure`). Each hit deposits on average
``deposit_e`` electrons (exponential spread). Large events - snowballs on
the near-IR H2RGs, showers on MIRI's Si:As arrays ([SNOW] in
:mod:`hwosim_assets.perturb.detectors`) - come at ``large_per_s`` per full
near-IR detector (MIRI: half that), scaled by the area the element covers.

**live** (raw-like: what reaches the ground before calibration): every hit
lands at full amplitude; large events saturate their core (one full well
per pixel) and leave a halo of ``HALO_E`` per pixel; nothing is flagged.

**archive** (what a cal / calints / x1dints carries after the jump step):
the jump step (jwst ``JumpStep`` defaults: ``rejection_threshold`` 4.0 sigma,
5.0 with four groups, 6.0 with three, skipped below three; jwst docs
"jump" arguments) compares a hit with the noise of one group difference -
the detector's group read noise and the pixel's own shot noise per group.

* A detected hit is flagged JUMP_DET (its four neighbours too, the jump
  step's ``flag_4_neighbors`` default, for image pixels) and the ramp is
  fitted in two pieces: no charge remains, but the slope is noisier. For a
  read-noise-limited ramp of N groups cut after n1, the variance grows by
  N^3 / (n1^3 + n2^3) (least-squares slope variance ~ 1/n^3 per segment);
  that extra variance is drawn, added, and written into VAR_RNOISE and ERR,
  as the pipeline's own ramp fit would.
* A hit below threshold stays in the ramp: a step of q at fraction u of the
  ramp biases the fitted charge by q x 6u(1 - u) (least-squares slope of a
  step; mean q over u). Nothing flags it.
* Large events: where the jump step expands large events by default
  (NIRCam, NIRSpec: ``expand_large_events``) the core and a ring of twice
  its radius are flagged and only the noise of the split ramps remains;
  elsewhere (NIRISS, MIRI showers) the saturated core is flagged and the
  halo charge stays, unflagged.

Extracted spectra are one row of channels: a single hit touches one channel
(its pixel is summed into that channel; inter-pixel capacitance of ~1-2 %
into the next channel is below every channel's noise and is left out), a
large event of radius r touches 2r + 1 channels plus its halo.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from hwosim_assets.perturb.batch import Batch, Coverage, Effect
from hwosim_assets.perturb.dq import JUMP_DET
from hwosim_assets.perturb.draws import Draws
from hwosim_assets.perturb.rng import Stream
from hwosim_assets.perturb.spec import Expectation, KindSpec, Param

BOTH = frozenset({"spectra", "images"})
LARGE_RADII = np.arange(2, 7)  # px, snowball core radius: "hundreds of pixels" with the halo ([SNOW])
HALO_E = 200.0  # e- per halo pixel: the "low level of excess counts" around large events ([SNOW]); assumed size
SHOWER_SHARE = 0.5  # MIRI showers are "at least a factor of 2" rarer than near-IR snowballs ([SNOW])
NEIGHBOUR_SIGMA = 10.0  # jump step: neighbours are flagged for jumps above min_jump_to_flag_neighbors (10 sigma)
SINGLE_DY, SINGLE_DX = (a.ravel() for a in np.mgrid[-1:2, -1:2])
# centre 1, edge neighbours 5 %, corners 2 %: charge diffusion plus inter-pixel capacitance
SINGLE_WEIGHT = np.array([0.02, 0.05, 0.02, 0.05, 1.0, 0.05, 0.02, 0.05, 0.02])
EDGE = np.array([False, True, False, True, False, True, False, True, False])


def jump_threshold(ngroups: int) -> float | None:
    """The jump step's sigma threshold for a ramp of ``ngroups`` (None: the step is skipped)."""
    if ngroups < 3:
        return None
    return 6.0 if ngroups == 3 else 5.0 if ngroups == 4 else 4.0


def ramp_residual(u: np.ndarray, ngroups: int) -> np.ndarray:
    """Share of an undetected jump's charge the fitted ramp keeps (module docstring)."""
    if ngroups <= 2:
        return np.ones_like(u)
    return 6.0 * u * (1.0 - u)


def split_variance(u: np.ndarray, ngroups: int) -> np.ndarray:
    """Extra read-noise variance of a ramp cut at fraction u, in units of the
    whole ramp's read-noise variance: N^3 / (n1^3 + n2^3) - 1 (segments of
    fewer than two groups give no slope and are dropped)."""
    n = max(int(ngroups), 2)
    n1 = np.floor(u * n)
    n2 = n - n1
    kept = np.where(n1 >= 2, n1**3, 0.0) + np.where(n2 >= 2, n2**3, 0.0)
    return np.where(kept > 0, n**3 / np.maximum(kept, 1.0) - 1.0, 0.0)


def _normals(u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _rates(batch: Batch, p: Mapping[str, float]) -> tuple[np.ndarray | float, np.ndarray | float]:
    """(single-hit, large-event) expected counts per element of the batch: a
    scalar for images (one pixel behind every element, one integration time:
    the rate is uniform, and no full-size array is made), (n, m) for spectra."""
    pixels = batch.aperture() if batch.family == "spectra" else 1.0
    det = batch.detector
    single = p["rate_cm2_s"] * det.pixel_area_cm2 * batch.seconds * pixels
    share = SHOWER_SHARE if det.large_events == "shower" else 1.0
    large = p["large_per_s"] * share * batch.seconds * pixels * det.pixel_area_cm2 / det.detector_area_cm2
    return single, large


def _draw(
    lam: np.ndarray | float, stream: Stream, lane: int, width: int, batch: Batch
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poisson counts per packet, then for each event its element (chosen with
    probability proportional to ``lam``) and ``width`` uniforms. A scalar
    ``lam`` (uniform rate) places events at element floor(u x m) directly."""
    n, m = batch.n, batch.elements
    if np.ndim(lam) == 0:
        counts = stream.poisson(np.full(n, float(lam) * m), lane=lane)
        owner, u = stream.events(counts, width=width + 1, lane=lane + 1)
        element = np.minimum((u[:, 0] * m).astype(np.int64), m - 1)
        return owner, owner * m + element, u[:, 1:]
    flat = np.asarray(lam).reshape(n, -1)
    counts = stream.poisson(flat.sum(axis=1), lane=lane)
    owner, u = stream.events(counts, width=width + 1, lane=lane + 1)
    if len(owner) == 0:
        return owner, np.empty(0, dtype=np.int64), u
    cumulative = np.cumsum(flat.reshape(-1))  # one pass over the batch: rows end where the next begins
    row_end = cumulative.reshape(n, -1)[:, -1]
    row_start = row_end - flat.sum(axis=1)
    target = row_start[owner] + u[:, 0] * (row_end[owner] - row_start[owner])
    position = np.searchsorted(cumulative, target, side="right")
    element = np.clip(position - owner * flat.shape[1], 0, flat.shape[1] - 1)
    return owner, owner * flat.shape[1] + element, u[:, 1:]


def _per_packet_sum(values: np.ndarray | float, batch: Batch) -> np.ndarray:
    """(n,) sums over each packet's elements of a per-element figure (a scalar: m times it)."""
    if np.ndim(values) == 0:
        return np.full(batch.n, float(values) * batch.elements)
    return np.asarray(values).reshape(batch.n, -1).sum(axis=1)


def _pixel_electrons(batch: Batch, flat: np.ndarray) -> np.ndarray:
    """Charge of one pixel behind each element (a channel's charge / NPIXELS)."""
    values = batch.value.reshape(-1)[flat].astype(np.float64)
    electrons = np.where(values > 0, values / batch.scale_at(flat), 0.0)
    if batch.family == "spectra":
        electrons = electrons / np.maximum(batch.aperture().reshape(-1)[flat], 1.0)
    return np.nan_to_num(electrons)


def _land(
    batch: Batch, flat: np.ndarray, charge: np.ndarray, tau: np.ndarray, z: np.ndarray, forced: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Put hits of ``charge`` e- on elements ``flat``, live or through the jump
    step (archive); returns the flat indices touched and those flagged."""
    if batch.stage == "live" or len(flat) == 0:
        np.add.at(batch.value.reshape(-1), flat, (charge * batch.scale_at(flat)).astype(batch.value.dtype))
        return flat, flat[:0]
    ngroups = batch.exposure.groups
    threshold = jump_threshold(ngroups)
    group_noise = batch.exposure.group_noise_e()
    sigma = np.sqrt(group_noise**2 + _pixel_electrons(batch, flat) / ngroups)
    detected = np.zeros(len(flat), dtype=bool) if threshold is None else charge > threshold * sigma
    if forced is not None and threshold is not None:
        detected |= forced
    keep = ~detected
    residual = charge[keep] * ramp_residual(tau[keep], ngroups)
    np.add.at(batch.value.reshape(-1), flat[keep], (residual * batch.scale_at(flat[keep])).astype(batch.value.dtype))
    if detected.any():
        hit = flat[detected]
        rows = np.maximum(batch.aperture().reshape(-1)[hit], 1.0) if batch.family == "spectra" else 1.0
        rn = batch.exposure.read_noise_e()
        extra_e2 = rn**2 * rows * split_variance(tau[detected], ngroups)
        scale = batch.scale_at(hit)
        np.add.at(batch.value.reshape(-1), hit, (z[detected] * np.sqrt(extra_e2) * scale).astype(batch.value.dtype))
        batch.add_variance_at(hit, extra_e2 * scale**2, "rnoise")
        batch.flag(hit, JUMP_DET)
    return flat, flat[detected]


def _place(batch: Batch, element: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of footprint offsets (E, K) around elements, and which fall inside their packet."""
    if batch.family == "images":
        _, ny, nx = batch.value.shape
    else:
        ny, nx = 1, batch.value.shape[1]
    owner, local = np.divmod(element, ny * nx)
    y = (local // nx)[:, None] + dy
    x = (local % nx)[:, None] + dx
    inside = (y >= 0) & (y < ny) & (x >= 0) & (x < nx)
    return owner[:, None] * (ny * nx) + np.clip(y, 0, ny - 1) * nx + np.clip(x, 0, nx - 1), inside


def _disc(radius: int) -> tuple[np.ndarray, np.ndarray]:
    dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    keep = dy**2 + dx**2 <= radius**2
    return dy[keep], dx[keep]


EVENT_BUDGET = 1 << 19  # footprint elements (events x pixels each) landed together: ~4 MB per temporary


def _parts(batch: Batch, single: np.ndarray | float, large: np.ndarray | float) -> list[slice]:
    """Packet ranges whose expected footprint elements stay near EVENT_BUDGET:
    the event arrays grow with the rate (a particle event puts ~0.2 hits on
    every pixel of a 100 s frame, the flare rate ~1), so they are built part
    by part. One part for the usual galactic rates."""
    footprint = 9.0 if batch.family == "images" else 1.0
    per_packet = _per_packet_sum(single, batch) * footprint + _per_packet_sum(large, batch) * _large_area(batch)
    total = float(per_packet.sum())
    if total <= EVENT_BUDGET or batch.n <= 1:
        return [slice(0, batch.n)]
    step = max(1, int(batch.n * EVENT_BUDGET / total))
    return [slice(i, min(i + step, batch.n)) for i in range(0, batch.n, step)]


def cosmic_rays(batch: Batch, p: Mapping[str, float], draws: Draws) -> Effect:
    """Cosmic-ray hits in the product's own units, live or after the jump step
    (module docstring). Magnitude: number of hits (single and large) on the packet.

    Packets are independent (each has its own draws), so at high rates the
    batch is taken a few packets at a time (:func:`_parts`) - the same hits,
    in bounded memory; the touched elements are then kept as a mask."""
    single, large = _rates(batch, p)
    parts = _parts(batch, single, large)
    if len(parts) == 1:
        where, counts = _cosmic_part(batch, p, draws, single, large)
    else:
        mask = np.zeros(batch.value.shape, dtype=bool)
        counts = np.zeros(batch.n)
        for part in parts:
            sub = batch.packets(part)
            sub_single = single if np.ndim(single) == 0 else np.asarray(single)[part]
            sub_large = large if np.ndim(large) == 0 else np.asarray(large)[part]
            touched, counts[part] = _cosmic_part(sub, p, draws, sub_single, sub_large)
            mask[part].reshape(-1)[touched] = True
        where = mask
    images = batch.family == "images"
    footprint = 9.0 if images else 1.0
    area = _large_area(batch)
    expected = _per_packet_sum(-np.expm1(-(single * footprint + large * area)), batch)
    variance = _per_packet_sum(single * footprint**2, batch)  # Poisson hits x footprint^2
    # large events are rare (a few per detector-hour): their count gets a Poisson bound, not a Gaussian one
    events = _per_packet_sum(large, batch)
    return Effect(where, counts, expected=(expected, variance, events))


def _cosmic_part(
    batch: Batch, p: Mapping[str, float], draws: Draws, single: np.ndarray | float, large: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """Land the hits of the batch's packets: (flat indices touched, hits per packet)."""
    stream = draws.packets(batch.seq)
    touched, flagged = [], []
    images = batch.family == "images"
    ngroups = batch.exposure.groups

    owner, element, u = _draw(single, stream, lane=0, width=4, batch=batch)
    if len(element):
        charge = p["deposit_e"] * -np.log(u[:, 0])
        z = _normals(u[:, 2], u[:, 3])
        if images:  # a 3x3 footprint; the centre's detection flags the edge neighbours (flag_4_neighbors)
            flat, inside = _place(batch, element, SINGLE_DY[None, :], SINGLE_DX[None, :])
            q = charge[:, None] * SINGLE_WEIGHT[None, :]
            forced = None
            if batch.stage == "archive" and jump_threshold(ngroups) is not None:
                centre_sigma = np.sqrt(
                    batch.exposure.group_noise_e() ** 2 + _pixel_electrons(batch, flat[:, 4]) / ngroups
                )
                forced = (charge > NEIGHBOUR_SIGMA * centre_sigma)[:, None] & EDGE[None, :]
                forced = forced[inside]
            tau = np.broadcast_to(u[:, 1:2], q.shape)[inside]
            zz = np.broadcast_to(z[:, None], q.shape)[inside]
            t, f = _land(batch, flat[inside], q[inside], tau, zz, forced)
        else:
            t, f = _land(batch, element, charge, u[:, 1], z)
        touched.append(t)
        flagged.append(f)
    counts = np.bincount(owner, minlength=batch.n).astype(float)

    owner_l, element_l, ul = _draw(large, stream, lane=2, width=4, batch=batch)
    if len(element_l):
        radius = LARGE_RADII[np.minimum((ul[:, 0] * len(LARGE_RADII)).astype(int), len(LARGE_RADII) - 1)]
        t, f = _large(batch, element_l, radius, ul)
        touched.append(t)
        flagged.append(f)
        counts += np.bincount(owner_l, minlength=batch.n)
    where = np.concatenate(touched) if touched else np.empty(0, dtype=np.int64)
    return where, counts


def _large_area(batch: Batch) -> float:
    """Mean elements a large event touches (core, expanded ring and halo)."""
    r = LARGE_RADII.astype(float)
    if batch.family == "images":
        return float(np.mean([len(_disc(int(2 * x + 2))[0]) for x in r]))
    return float(np.mean(2 * (2 * r + 2) + 1))


def _large(batch: Batch, element: np.ndarray, radius: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Snowballs / showers: a saturated core of ``radius``, a halo out to 2r + 2."""
    det = batch.detector
    images = batch.family == "images"
    biggest = int(2 * LARGE_RADII.max() + 2)
    if images:
        dy, dx = _disc(biggest)
    else:
        dx = np.arange(-biggest, biggest + 1)
        dy = np.zeros_like(dx)
    dist = np.sqrt(dy**2 + dx**2)[None, :]
    r = radius[:, None].astype(float)
    core = dist <= r
    ring = (dist > r) & (dist <= 2 * r)  # what expand_large_events flags beyond the core (expand factor 2)
    halo = (dist > r) & (dist <= 2 * r + 2)
    flat, inside = _place(batch, element, dy[None, :], dx[None, :])
    rows = np.maximum(batch.aperture().reshape(-1)[flat], 1.0) if not images else np.ones(flat.shape)
    if not images:  # a channel holds min(NPIXELS, chord of the disc) pixels of the event
        chord = np.where(
            core,
            2 * np.sqrt(np.maximum(r**2 - dx[None, :] ** 2, 0)) + 1,
            2 * np.sqrt(np.maximum((2 * r + 2) ** 2 - dx[None, :] ** 2, 0)) + 1,
        )
        rows = np.minimum(rows, chord)
    live = batch.stage == "live"
    expand = det.large_events_flagged and det.large_events == "snowball"
    tau = np.broadcast_to(u[:, 1:2], flat.shape)
    z = np.broadcast_to(_normals(u[:, 2], u[:, 3])[:, None], flat.shape)
    touched = (core | halo) & inside
    if live:
        charge = np.where(core, det.full_well_e, np.where(halo, HALO_E, 0.0)) * rows
        sel = touched
        np.add.at(
            batch.value.reshape(-1), flat[sel], (charge[sel] * batch.scale_at(flat[sel])).astype(batch.value.dtype)
        )
        return flat[sel], flat[:0]
    flagged_mask = (core | (ring if expand else np.zeros_like(ring))) & inside
    residual_mask = halo & ~flagged_mask & inside
    if residual_mask.any():  # halo charge the jump step left in the ramp
        sel = residual_mask
        charge = HALO_E * rows[sel] * ramp_residual(tau[sel], batch.exposure.groups)
        np.add.at(batch.value.reshape(-1), flat[sel], (charge * batch.scale_at(flat[sel])).astype(batch.value.dtype))
    hit = flat[flagged_mask]
    if len(hit):
        rn = batch.exposure.read_noise_e()
        extra_e2 = rn**2 * rows[flagged_mask] * split_variance(tau[flagged_mask], batch.exposure.groups)
        scale = batch.scale_at(hit)
        np.add.at(batch.value.reshape(-1), hit, (z[flagged_mask] * np.sqrt(extra_e2) * scale).astype(batch.value.dtype))
        batch.add_variance_at(hit, extra_e2 * scale**2, "rnoise")
        batch.flag(hit, JUMP_DET)
    return flat[touched], hit


def _poisson_spread(lam: float, tail: float = 1e-4) -> float:
    """How far a Poisson count of mean ``lam`` strays from it, either way,
    with probability below ``tail`` on each side: a Gaussian 4-sigma band
    fails for the few-event counts of snowballs and showers (one event where
    0.01 were expected is 10 sigma, and happens once in a hundred runs)."""
    if lam <= 0:
        return 0.0
    term = cdf = math.exp(-lam) if lam < 700 else 0.0
    if term == 0.0:  # large counts: the Gaussian band is right
        return 4.0 * math.sqrt(lam)
    k = 0
    while 1.0 - cdf > tail:
        k += 1
        term *= lam / k
        cdf += term
    return max(k - lam, min(lam, 4.0 * math.sqrt(lam)))


def expect_cosmic_rays(p: Mapping[str, float], coverage: Coverage) -> Expectation:
    """The kind's own per-batch expectation (1 - exp(-hits x footprint) per element), summed;
    single hits within 4 sigma, large events within a Poisson bound of their count x their largest area."""
    mean, var = coverage.expected_total("cosmic_rays")
    events, _ = coverage.expected_total("cosmic_rays:events")
    n = max(coverage.elements, 1)
    fraction = mean / n
    largest = (
        len(_disc(int(2 * LARGE_RADII[-1] + 2))[0])
        if coverage.family == "images"
        else 2 * (2 * LARGE_RADII[-1] + 2) + 1
    )
    spread = 4 * math.sqrt(var) + _poisson_spread(events) * largest
    # footprints clipped at packet edges lose up to ~15 % of their area in small tiles
    return Expectation(fraction, 0.15 * fraction + spread / n + 1 / n)


COSMIC_RAYS = KindSpec(
    name="cosmic_rays",
    summary="cosmic-ray hits (single, snowball, shower), raw-like or after the jump step",
    grounding=(
        "Hits = flux x pixel area x NPIXELS x EFFINTTM of the product; ~5200 e- per hit "
        "(Rauscher & Fixsen 2025, PASP 137, 095003); snowballs ~1 per 20 s per 2K near-IR "
        "detector, MIRI showers >= 2x rarer (JDox 'Shower and Snowball Artifacts'); archive "
        "stage: jwst jump step defaults (4 sigma; 5 / 6 sigma for 4 / 3 groups; "
        "flag_4_neighbors; expand_large_events for NIRCam and NIRSpec). The JWST ETC assumes "
        "8 events/cm^2/s (JDox 'JWST ETC Cosmic Ray Implementation')."
    ),
    families=BOTH,
    params=(
        Param("rate_cm2_s", "events/cm^2/s", "nonneg", "cosmic-ray flux on the detector", high=1e5),
        Param("deposit_e", "e-", "nonneg", "mean charge of a single hit", high=1e7),
        Param(
            "large_per_s",
            "1/s",
            "nonneg",
            "snowballs per second per 2K near-IR detector (MIRI showers: half)",
            high=1e3,
        ),
    ),
    levels={
        "rate_cm2_s": (0, 2.3, 4.9, 49.0, 490.0, 3047.0),
        "deposit_e": (5200.0,),
        "large_per_s": (0, 0.05, 0.05, 0.1, 0.1, 0.1),
    },
    anchors={
        1: "2.3 /cm^2/s: galactic rate measured by NIRSpec at L2 near solar maximum (Rauscher & Fixsen 2025); "
        "one snowball per 20 s per detector (JDox 'Shower and Snowball Artifacts')",
        2: "4.9 /cm^2/s: solar-minimum galactic rate (Robberto 2009, mirage's cosmic-ray library 'SUNMIN')",
        3: "49 /cm^2/s: 10x galactic, a moderate solar particle event; snowball rate doubled (JDox: 'highly variable')",
        4: "490 /cm^2/s: 100x galactic, a strong solar particle event",
        5: "3047 /cm^2/s: the flare rate of Robberto 2009 (mirage 'FLARES'), the worst in the literature",
    },
    is_off=lambda p: p["rate_cm2_s"] == 0 and p["large_per_s"] == 0,
    apply=cosmic_rays,
    expect=expect_cosmic_rays,
)
