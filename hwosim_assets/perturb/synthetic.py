"""Small synthetic bronze tables (exact bronze schemas) for tests and
benchmarks: a smooth stellar spectrum per integration, and star fields cut
into tiles the way the bronze reader cuts frames.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from hwosim_assets.records import (
    IMAGE_TILE_SCHEMA,
    OPTIONAL_PLANES,
    PIXEL_DTYPES,
    SPECTRA_OPTIONAL,
    SPECTRA_SCHEMA,
    complete,
)


def spectra_table(
    n_integrations: int = 20,
    n_channels: int = 200,
    *,
    seed: int = 0,
    start_mjd: float = 60000.0,
    cadence_s: float = 60.0,
) -> pl.DataFrame:
    """One row per integration x channel: 0.6-2.8 um, ~0.4 Jy with 0.3 % errors
    (~1e5 e- at the peak, as a bright time-series target), a few NaN channels
    as real x1dints have."""
    rng = np.random.default_rng(seed)
    wavelength = np.linspace(0.6, 2.8, n_channels)
    flux = 0.4 * np.exp(-((wavelength - 1.2) ** 2) / 0.8)
    seq = np.repeat(np.arange(n_integrations), n_channels)
    error = np.tile(flux * 3e-3 + 1e-5, n_integrations)
    values = np.tile(flux, n_integrations) + error * rng.standard_normal(seq.size)
    values[rng.random(seq.size) < 0.002] = np.nan
    return complete(
        pl.DataFrame(
            {
                "seq": seq,
                "integration": seq + 1,
                "channel": np.tile(np.arange(n_channels), n_integrations),
                "event_time": start_mjd + seq * cadence_s / 86400.0,
                "wavelength": np.tile(wavelength, n_integrations),
                "flux": values,
                "flux_error": error,
                "dq": np.zeros(seq.size, dtype=np.int32),
            },
            schema={k: SPECTRA_SCHEMA[k] for k in SPECTRA_SCHEMA if k not in SPECTRA_OPTIONAL},
        ),
        "spectra",
    )


def star_field(shape: tuple[int, int], *, seed: int = 0, stars: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(sci, err) float32 frames: background 1.0 +- 0.05 and Gaussian stars with
    peaks up to ~2000x the background noise (some beyond any full well)."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    sci = (1.0 + 0.05 * rng.standard_normal(shape)).astype(np.float32)
    yy, xx = np.mgrid[0:ny, 0:nx]
    for _ in range(stars):
        cy, cx, peak = rng.uniform(0, ny), rng.uniform(0, nx), 10 ** rng.uniform(0, 3)
        box = (slice(max(0, int(cy) - 8), int(cy) + 9), slice(max(0, int(cx) - 8), int(cx) + 9))
        sci[box] += (peak * np.exp(-((yy[box] - cy) ** 2 + (xx[box] - cx) ** 2) / 4.0)).astype(np.float32)
    err = np.sqrt(0.05**2 + np.maximum(sci - 1.0, 0) * 0.003).astype(np.float32)
    return sci, err


def tile_rows(
    sci: np.ndarray,
    err: np.ndarray,
    *,
    tile: int,
    frame: int,
    first_seq: int,
    event_time: float,
    source: str = "synthetic.fits",
) -> dict[str, list]:
    """Cut one frame into tile packets (row-major, edge tiles smaller)."""
    rows: dict[str, list] = {name: [] for name in IMAGE_TILE_SCHEMA}
    ny, nx = sci.shape
    seq = first_seq
    for y0 in range(0, ny, tile):
        for x0 in range(0, nx, tile):
            s = sci[y0 : y0 + tile, x0 : x0 + tile]
            rows["seq"].append(seq)
            rows["frame"].append(frame)
            rows["source"].append(source)
            rows["y0"].append(y0)
            rows["x0"].append(x0)
            rows["ny"].append(s.shape[0])
            rows["nx"].append(s.shape[1])
            rows["event_time"].append(event_time)
            rows["sci"].append(np.ascontiguousarray(s, dtype=PIXEL_DTYPES["sci"]).tobytes())
            rows["err"].append(
                np.ascontiguousarray(err[y0 : y0 + tile, x0 : x0 + tile], dtype=PIXEL_DTYPES["err"]).tobytes()
            )
            rows["dq"].append(np.zeros(s.shape, dtype=PIXEL_DTYPES["dq"]).tobytes())
            for plane in OPTIONAL_PLANES:
                rows[plane].append(None)
            seq += 1
    return rows


def image_table(
    n_frames: int = 2,
    shape: tuple[int, int] = (200, 200),
    tile: int = 64,
    *,
    seed: int = 0,
    start_mjd: float = 60000.0,
    cadence_s: float = 120.0,
) -> pl.DataFrame:
    """Frames of one star field (fresh noise per frame) cut into tiles; with the
    default 200 x 200 frames and 64-pixel tiles the edge tiles are 8 pixels."""
    columns: dict[str, list] = {name: [] for name in IMAGE_TILE_SCHEMA}
    for frame in range(n_frames):
        sci, err = star_field(shape, seed=seed * 1000 + frame)
        rows = tile_rows(
            sci,
            err,
            tile=tile,
            frame=frame,
            first_seq=len(columns["seq"]),
            event_time=start_mjd + frame * cadence_s / 86400,
        )
        for name in columns:
            columns[name] += rows[name]
    return pl.DataFrame(columns, schema=IMAGE_TILE_SCHEMA)
