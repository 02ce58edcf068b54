"""Real data for the scoring tests: the sample products and the real JWST time series, perturbed.

Bronze tables are read once per test session (the FITS readers take about a
second per product); answer keys are made with the engine at any level.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import polars as pl

from hwosim_assets.evaluate.answers import AnswerKey, answer_key
from hwosim_assets.ingest import sample
from hwosim_assets.ingest.fits_reader import read_family
from hwosim_assets.ingest.products import identify
from hwosim_assets.perturb import load_profiles, perturb_images, perturb_spectra
from hwosim_assets_tests.mast_server import real_jwst_files

SEED = 20261124


@functools.cache
def sample_bronze(family: str) -> tuple[str, pl.DataFrame]:
    """(observation id, bronze table) of the sample time series (spectra) or star field (images)."""
    folder = Path(tempfile.mkdtemp(prefix="hwosim-sample-"))
    paths = sample.write_sample_products(folder)
    obs_id = sample.SPECTRA_OBS_ID if family == "spectra" else sample.IMAGE_OBS_ID
    chosen = [p for p in paths if sample.SAMPLE_PRODUCTS[p.name].obs_id == obs_id]
    return obs_id, read_family(family, chosen, 128)


@functools.cache
def real_time_series() -> tuple[tuple[str, pl.DataFrame], ...]:
    """(observation id, bronze table) of every real x1dints with more than one integration."""
    found = []
    for path in real_jwst_files():
        try:
            info = identify(path)
        except Exception:  # noqa: BLE001 - not ours to judge here; test_real_products does
            continue
        if info.product_type == "x1dints":
            table = read_family("spectra", [path])
            if table["seq"].n_unique() > 1:
                found.append((info.obs_id, table))
    return tuple(found)


@functools.cache
def _perturbed(family: str, obs_id: str, profile_name: str, clean_id: int):
    clean = _CLEAN[clean_id]
    profile = load_profiles()[profile_name]
    perturb = perturb_spectra if family == "spectra" else perturb_images
    result = perturb(clean, profile, observation=obs_id, seed=SEED)
    return result.data, result.truth


_CLEAN: dict[int, pl.DataFrame] = {}


def answers(family: str, obs_id: str, clean: pl.DataFrame, profile_name: str) -> AnswerKey:
    """The answer key of ``clean`` under one profile (perturbed with the engine, cached)."""
    _CLEAN[id(clean)] = clean
    data, truth = _perturbed(family, obs_id, profile_name, id(clean))
    return answer_key(family, clean, data, truth, obs_id)
