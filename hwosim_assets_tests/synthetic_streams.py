"""Synthetic perturbed tables in the shared record schemas, for tests and benchmarks of the stream layer.

The stream layer only needs tables shaped like ``records.SPECTRA_SCHEMA`` and
``records.IMAGE_TILE_SCHEMA``; generating them here keeps its tests and
benchmarks independent of the ingest and perturbation stages.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from hwosim_assets.records import complete


def spectra_table(
    n_packets: int, n_channels: int, *, cadence_s: float = 10.0, t0_mjd: float = 60000.0, seed: int = 0
) -> pl.DataFrame:
    """``n_packets`` integrations x ``n_channels`` bins, one integration every ``cadence_s`` seconds."""
    rng = np.random.default_rng(seed)
    seq = np.repeat(np.arange(n_packets, dtype=np.int64), n_channels)
    channel = np.tile(np.arange(n_channels, dtype=np.int32), n_packets)
    n = len(seq)
    flux = rng.normal(1.0, 0.01, n)
    return pl.DataFrame(
        {
            "seq": seq,
            "integration": (seq + 1).astype(np.int32),
            "channel": channel,
            "event_time": t0_mjd + (seq + 0.5) * cadence_s / 86400.0,
            "wavelength": 0.6 + 2.2 * channel / max(n_channels - 1, 1),
            "flux": flux,
            "flux_error": np.full(n, 0.01),
            "dq": np.zeros(n, dtype=np.int32),
        },
    ).pipe(complete, "spectra")


def image_tiles(n_packets: int, tile: int = 16, *, seed: int = 0) -> pl.DataFrame:
    """``n_packets`` square tiles of random float32 SCI/ERR and uint32 DQ planes."""
    rng = np.random.default_rng(seed)
    planes = lambda dtype: [rng.random((tile, tile)).astype(dtype).tobytes() for _ in range(n_packets)]  # noqa: E731
    seq = np.arange(n_packets, dtype=np.int64)
    return pl.DataFrame(
        {
            "seq": seq,
            "frame": (seq // 4).astype(np.int32),
            "source": ["synthetic_cal.fits"] * n_packets,
            "y0": ((seq % 4) // 2 * tile).astype(np.int32),
            "x0": ((seq % 2) * tile).astype(np.int32),
            "ny": np.full(n_packets, tile, dtype=np.int32),
            "nx": np.full(n_packets, tile, dtype=np.int32),
            "event_time": 60000.0 + seq // 4 * 100.0 / 86400.0,
            "sci": planes("<f4"),
            "err": planes("<f4"),
            "dq": [np.zeros((tile, tile), "<u4").tobytes() for _ in range(n_packets)],
        },
    ).pipe(complete, "images")
