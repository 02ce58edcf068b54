"""The harness: models loaded by reference, answers checked, failures named, scores that mean what they say.

On the sample time series (a real product of the pipeline, 200 integrations x
500 channels) perturbed with the engine: a model that answers the truth
scores perfectly, its inverse scores nothing, and a model that fails is
recorded with its packet while the others are scored.
"""

import numpy as np
import pytest

from hwosim_assets.evaluate.harness import Session
from hwosim_assets.evaluate.model import ModelError, load_model
from hwosim_assets.evaluate.offline import ModelSpec, delivery, packets, score_offline
from hwosim_assets.perturb import load_profiles
from hwosim_assets_tests import scoring_data, scoring_models

M = "hwosim_assets_tests.scoring_models:"
PROFILES = load_profiles()


@pytest.fixture(scope="module")
def key():
    obs_id, clean = scoring_data.sample_bronze("spectra")
    return scoring_data.answers("spectra", obs_id, clean, "level-3")


def score(key, spec, profile="level-3"):
    p = PROFILES[profile]
    return score_offline(
        spec, key, profile=profile, profile_hash=p.config_hash, seed=scoring_data.SEED, stream_faults=p.stream_faults
    )


@pytest.mark.parametrize(
    "reference, params, says",
    [
        ("not a reference", {}, "is not of the form package.module:factory"),
        ("no_such_package.models:Model", {}, "cannot import 'no_such_package.models'"),
        (M + "Missing", {}, "has no attribute 'Missing'"),
        (M + "broken_factory", {}, "broken_factory(**{}) raised RuntimeError: the factory itself fails"),
        (M + "Raises", {"wrong": 1}, "unexpected keyword argument 'wrong'"),
        (M + "NoMethods", {}, "has neither predict_one nor score_one"),
    ],
)
def test_a_bad_reference_is_a_clear_error_naming_the_model(reference, params, says):
    with pytest.raises(ModelError) as error:
        load_model(reference, params, name="mine")
    assert says in str(error.value) and ("'mine'" in str(error.value) or "not a reference" in reference)


def test_a_model_that_answers_the_truth_scores_perfectly_and_its_inverse_not_at_all(key):
    for i, seq in enumerate(key.seqs):
        a, b = key.starts[i], key.starts[i + 1]
        scoring_models.ANSWERS[int(seq)] = {"flags": key.corrupted[a:b], "cleaned": key.clean[a:b]}
    assert key.corrupted.sum() > 1000  # level 3 corrupts many values beyond 5 ERR
    perfect = score(key, ModelSpec("oracle", M + "Oracle"))
    assert perfect.status == "ok", perfect.error
    m = perfect.metrics
    assert m["flags.precision"] == m["flags.recall"] == m["flags.f1"] == 1.0 and m["flags.error"] == 0.0
    assert m["cleaned.mae_err"] == 0.0 and m["cleaned.coverage"] == 1.0
    assert m["cleaned.passthrough_mae_err"] > 1.0  # doing nothing would have cost
    # per kind: every kind that corrupted a value, other than those touching every value, is recalled
    kinds = [k for k in m if k.startswith("flags.recall.")]
    assert kinds and all(m[k] == 1.0 for k in kinds)
    assert not any(k.endswith(("read_noise", "gain_drift", "offset_drift")) for k in kinds)
    inverse = score(key, ModelSpec("inverse", M + "Oracle", {"invert": True})).metrics
    assert inverse["flags.precision"] == inverse["flags.recall"] == 0.0
    # only the packets delivered are scored: lost ones are the stream's, duplicates count once
    assert m["run.packets_scored"] <= len(key.seqs) and m["run.packets_delivered"] >= m["run.packets_scored"]


def test_a_model_that_raises_is_recorded_with_its_packet_and_the_others_are_scored(key):
    bad = score(key, ModelSpec("fragile", M + "Raises", {"at": int(key.seqs[5])}))
    assert bad.status == "failed"
    assert f"model 'fragile' ({M}Raises) raised ValueError in predict_one (scoring_models.py:" in bad.error
    assert (
        f"at packet seq={int(key.seqs[5])} lap=0" in bad.error
        and f"cannot cope with seq {int(key.seqs[5])}" in bad.error
    )
    good = score(key, ModelSpec("sigma-clip", "hwosim_assets.evaluate.baselines:SigmaClipFlagger"))
    assert good.status == "ok" and good.metrics["flags.f1"] > 0
    rows = bad.rows()
    assert rows["status"].to_list() == ["failed"] * len(rows) and bad.error in rows["error"][0]


@pytest.mark.parametrize(
    "what, says",
    [
        ("shape", "returned malformed flags at packet seq={at} lap=0 offset="),
        ("dtype", "dtype float64, expected bool"),
        ("key", "unknown key 'flagz'"),
        ("kind", "'gremlins' is not a perturbation kind"),
        ("event", "time must be a finite number, got 'noon'"),
        ("type", "expected a dict or a Prediction, got list"),
    ],
)
def test_a_malformed_prediction_names_the_model_the_packet_and_the_field(key, what, says):
    # a packet the level-3 stream delivers, as in the test above (whether seq 2 is depends on the profile's
    # random draws: not delivered under the re-anchored level-3, whose hash keys them)
    at = int(key.seqs[5])
    card = score(key, ModelSpec("sloppy", M + "Malformed", {"what": what, "at": at}))
    says = says.format(at=at)
    assert card.status == "failed" and "model 'sloppy'" in card.error and says in card.error, card.error
    assert card.metrics["run.packets_delivered"] >= 1  # what it did before is kept


def test_same_model_data_and_seed_give_the_same_scores_and_identity(key):
    spec = ModelSpec("sigma-clip", "hwosim_assets.evaluate.baselines:SigmaClipFlagger", {"threshold": 6.0})
    one, two = score(key, spec), score(key, spec)
    assert one.reproducible() == two.reproducible() and one.scorecard_id == two.scorecard_id
    assert (
        one.model_hash
        and one.model_version.startswith("hwosim ")
        and one.profile_hash == PROFILES["level-3"].config_hash
    )
    other = score(key, ModelSpec("sigma-clip", spec.reference, {"threshold": 5.0}))
    assert other.model_hash != one.model_hash and other.scorecard_id != one.scorecard_id
    assert set(one.metrics) - set(one.reproducible()) == {k for k in one.metrics if k.startswith("timing.")}


def test_score_one_is_scored_by_average_precision(key):
    card = score(key, ModelSpec("scorer", M + "Scorer"))
    ap = card.metrics["scores.average_precision"]
    prevalence = key.corrupted[key.received].mean()
    assert card.status == "ok" and prevalence < ap <= 1.0  # better than chance on real corruption


def test_offline_delivery_follows_the_profiles_stream_faults(key):
    p = PROFILES["degraded"]
    order, faults = delivery(key, p.stream_faults, seed=1, profile_hash=p.config_hash)
    delivered = key.seqs[order]
    assert len(faults.lost) > 0 and {(0, int(s)) for s in delivered}.isdisjoint(faults.lost)
    assert len(delivered) - len(set(delivered.tolist())) == len(faults.duplicated)
    again, _ = delivery(key, p.stream_faults, seed=1, profile_hash=p.config_hash)
    assert np.array_equal(order, again)  # the replay's keyed faults: the same every time
    model = load_model(M + "Scorer")
    session = Session(model, key)
    for packet in packets(key, order):
        session.feed(packet)
    assert [d[0] for d in session.delivered] == list(range(len(order)))  # offsets: contiguous, as in a stream
