"""The baselines over level-0 ... level-5 on the sample time series, the real MIRI LRS x1dints and the
sample images: what the README reports, checked.

Level 0 is the clean data, bit for bit: the flagger, the health detector and
the transit fitter raise no false alarm there (on the real MIRI product the
flagger does flag a few values: real single-channel dips of the product
itself, which the truth cannot know of - the README shows them), the
reconstructor returns the sample data unchanged; every error curve of the
flagger and the reconstructor grows with the level.
"""

import numpy as np
import pytest

from hwosim_assets.evaluate.config import load_models
from hwosim_assets.evaluate.offline import score_offline
from hwosim_assets.perturb import load_profiles
from hwosim_assets_tests import scoring_data
from hwosim_assets_tests.mast_server import REAL_JWST_DIR

PROFILES = load_profiles()
BASELINES = load_models().models  # the packaged models.yaml: the four baselines
LEVELS = [f"level-{n}" for n in range(6)]


def curves(family, obs_id, clean) -> dict[str, list]:
    """model name -> its scorecards at level 0..5."""
    out = {}
    for level in LEVELS:
        key = scoring_data.answers(family, obs_id, clean, level)
        p = PROFILES[level]
        for spec in BASELINES.values():
            card = score_offline(
                spec,
                key,
                profile=level,
                profile_hash=p.config_hash,
                seed=scoring_data.SEED,
                stream_faults=p.stream_faults,
            )
            assert card.status in ("ok", "skipped"), card.error
            if card.status == "ok":
                out.setdefault(spec.name, []).append(card.metrics)
    return out


def non_decreasing(values, what):
    assert all(b >= a for a, b in zip(values, values[1:], strict=False)), f"{what}: {np.round(values, 4).tolist()}"


@pytest.fixture(scope="module")
def sample_spectra():
    return curves("spectra", *scoring_data.sample_bronze("spectra"))


@pytest.fixture(scope="module")
def sample_images():
    return curves("images", *scoring_data.sample_bronze("images"))


@pytest.fixture(scope="module")
def miri():
    series = scoring_data.real_time_series()
    if not series:
        pytest.skip(f"no real x1dints time series in {REAL_JWST_DIR}; see its README")
    obs_id, clean = series[0]
    return curves("spectra", obs_id, clean)


@pytest.mark.parametrize("data", ["sample_spectra", "sample_images", "miri"])
def test_flagger_and_reconstructor_degrade_with_the_level(data, request):
    c = request.getfixturevalue(data)
    non_decreasing([m["flags.error"] for m in c["sigma-clip"]], f"{data} sigma-clip flags.error")
    non_decreasing([m["cleaned.error"] for m in c["median-filter"]], f"{data} median-filter cleaned.error")
    non_decreasing([m["health.error"] for m in c["stream-health"]], f"{data} stream-health health.error")
    assert c["sigma-clip"][5]["flags.error"] > 10 * max(c["sigma-clip"][1]["flags.error"], 1e-3)
    assert c["stream-health"][0]["health.error"] == 0.0


@pytest.mark.parametrize("data", ["sample_spectra", "sample_images"])
def test_level_0_no_false_alarm_and_no_reconstruction_error_on_the_samples(data, request):
    c = request.getfixturevalue(data)
    clean = {name: metrics[0] for name, metrics in c.items()}
    assert clean["sigma-clip"]["flags.false_alarms"] == 0 and clean["sigma-clip"]["flags.positives"] == 0
    assert clean["median-filter"]["cleaned.mae_err"] == 0.0 and clean["median-filter"]["cleaned.coverage"] == 1.0
    assert clean["stream-health"]["health.error"] == 0.0


def test_the_real_miri_product_at_level_0(miri):
    clean = {name: metrics[0] for name, metrics in miri.items()}
    assert clean["transit-fit"]["events.false_alarms"] == 0 and clean["stream-health"]["health.error"] == 0.0
    # the real product's own outliers: under 1 % of its values, and none is a perturbation
    assert clean["sigma-clip"]["flags.positives"] == 0 and clean["sigma-clip"]["flags.false_alarm_rate"] < 0.01
    # the reconstructor replaces exactly those: its own error, small
    assert clean["median-filter"]["cleaned.mae_err"] < 0.5


def test_the_transit_fitter_finds_the_injected_transit_early(sample_spectra):
    clean = sample_spectra["transit-fit"][0]
    assert clean["events.detected"] == 1 and clean["events.false_alarms"] == 0
    assert abs(clean["events.timing_error_s"]) < 108  # within one integration of the true mid-time
    assert -0.2 < clean["events.depth_bias"] < 0  # a box is shallower than the limb-darkened centre
    assert clean["events.nab_score"] > 90  # reported at ingress, early in its window
    worst = max(m["events.error"] for m in sample_spectra["transit-fit"][3:])
    assert worst > 2 * clean["events.error"]  # heavy perturbation hides or distorts it
