"""The baselines over level-0 ... level-5 on the sample time series, the real MIRI LRS x1dints and the
sample images: what the README reports, checked.

Level 0 is the clean data, bit for bit: the flagger, the health detector and
the transit fitter raise no false alarm there, the reconstructor returns the
sample data unchanged; every error curve of the flagger and the
reconstructor grows with the level. The real MIRI product has anomalies of
its own (mostly single-channel dips of 6 to 47 ERR), which the truth cannot know
of: the answer key finds them on the clean data, without any model
(``AnswerKey.preexisting``), and scores them apart.
"""

import numpy as np
import pytest

from hwosim_assets.evaluate.answers import PREEXISTING_DQ, preexisting_mask
from hwosim_assets.evaluate.config import load_models
from hwosim_assets.evaluate.offline import ModelSpec, score_offline
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
def miri_bronze():
    series = scoring_data.real_time_series()
    if not series:
        pytest.skip(f"no real x1dints time series in {REAL_JWST_DIR}; see its README")
    return series[0]


@pytest.fixture(scope="module")
def miri(miri_bronze):
    return curves("spectra", *miri_bronze)


def err_rule(key):
    """The pre-existing values the ERR rule alone finds (no DQ), among the received ones."""
    return preexisting_mask(key.clean, key.clean_err, None, key.starts, key.channel) & key.received


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
    assert clean["sigma-clip"]["flags.preexisting_flagged"] == 0


@pytest.mark.parametrize("family", ["spectra", "images"])
def test_the_samples_have_no_pre_existing_anomaly_but_their_do_not_use_pixels(family):
    """The samples are Gaussian noise on a model: the ERR rule finds nothing in them. The only
    pre-existing values are the star field's hot pixels, HOT | DO_NOT_USE and 5e4 e- and more
    above the sky (the time series' DO_NOT_USE ends are NaN, not scored; its HOT channels
    carry ordinary values and no DO_NOT_USE)."""
    key = scoring_data.answers(family, *scoring_data.sample_bronze(family), "level-0")
    assert not err_rule(key).any()
    marked = key.received & ((key.clean_dq & PREEXISTING_DQ) != 0)
    assert np.array_equal(key.preexisting, marked)
    assert key.preexisting.sum() == (24 if family == "images" else 0)


def test_the_real_miri_product_at_level_0(miri, miri_bronze):
    clean = {name: metrics[0] for name, metrics in miri.items()}
    assert clean["transit-fit"]["events.false_alarms"] == 0 and clean["stream-health"]["health.error"] == 0.0
    flagger = clean["sigma-clip"]
    assert flagger["flags.positives"] == 0
    # the product's own anomalies: found on the clean data by the answer key, the same for every
    # model (a model that flags nothing is told the same count) and every level
    key = scoring_data.answers("spectra", *miri_bronze, "level-0")
    preexisting = int(key.preexisting.sum())
    assert preexisting > 50 and np.array_equal(key.preexisting, err_rule(key))  # its DQ is all 0
    assert flagger["flags.preexisting"] == preexisting
    nothing = ModelSpec("nothing", "hwosim_assets_tests.scoring_models:Raises", {"at": -1})  # flags nothing
    p = PROFILES["level-0"]
    blind = score_offline(
        nothing,
        key,
        profile="level-0",
        profile_hash=p.config_hash,
        seed=scoring_data.SEED,
        stream_faults=p.stream_faults,
    )
    assert blind.metrics["flags.preexisting"] == preexisting and blind.metrics["flags.preexisting_flagged"] == 0
    level_5 = scoring_data.answers("spectra", *miri_bronze, "level-5")
    rule = [preexisting_mask(k.clean, k.clean_err, k.clean_dq, k.starts, k.channel) for k in (key, level_5)]
    assert np.array_equal(*rule)  # from the clean data: one set for every level
    assert not (level_5.preexisting & ~key.preexisting).any()  # less what a perturbation hit or made missing
    # every flag of the flagger at level 0 is one of those anomalies (19 of the 89: a channel's repeated
    # dip is not new to it once an earlier dip is among what it saw unflagged) ...
    assert flagger["flags.preexisting_flagged"] >= 15
    # ... and none is a false alarm: a normal value judged against a reference that is itself one of
    # the product's dips (channel 247 at integration 4: two of its three earlier integrations are
    # dips; channel 183 at integration 7: four of its six are) is within what the channel did
    # before, and the flagger flags only what is new (these two were its false alarms before it did)
    assert flagger["flags.false_alarms"] == 0
    # the reconstructor replaces the anomalies it finds: its own error, small
    assert clean["median-filter"]["cleaned.mae_err"] < 0.5


def test_the_transit_fitter_finds_the_injected_transit_early(sample_spectra):
    clean = sample_spectra["transit-fit"][0]
    assert clean["events.detected"] == 1 and clean["events.false_alarms"] == 0
    assert abs(clean["events.timing_error_s"]) < 108  # within one integration of the true mid-time
    assert -0.2 < clean["events.depth_bias"] < 0  # a box is shallower than the limb-darkened centre
    assert clean["events.nab_score"] > 90  # reported at ingress, early in its window
    worst = max(m["events.error"] for m in sample_spectra["transit-fit"][3:])
    assert worst > 2 * clean["events.error"]  # heavy perturbation hides or distorts it
