"""models.yaml: read safely, checked strictly, every mistake named with file, model and field."""

import pytest

from hwosim_assets.evaluate.config import ModelsConfigError, load_models
from hwosim_assets.evaluate.model import load_model


def test_the_packaged_models_are_the_four_baselines_and_they_load():
    config = load_models()
    assert list(config.models) == ["sigma-clip", "median-filter", "stream-health", "transit-fit"]
    assert config.baselines == tuple(config.models) and config.rates.per_second == (10.0, 100.0, 1000.0)
    for spec in config.models.values():
        assert load_model(spec.reference, spec.params, name=spec.name).obj is not None


@pytest.mark.parametrize(
    "text, says",
    [
        ("models:\n  - name: a\n    model: just_a_module\n", "model 'a': field model: must be package.module:factory"),
        (
            "models:\n  - name: a\n    model: m:F\n    parms: {}\n",
            "model 'a': field parms: unknown key 'parms' (did you mean 'params'?)",
        ),
        (
            "models:\n  - {name: a, model: 'm:F'}\n  - {name: a, model: 'm:G'}\n",
            "model 'a': field name: duplicate model name",
        ),
        ("models:\n  - {name: A B, model: 'm:F'}\n", "field name: must be a slug"),
        ("models:\n  - {name: a, model: 'm:F', params: {x: {y: 1}}}\n", "parameter 'x' must be a number, text"),
        ("models:\n  - {name: a, model: 'm:F', baseline: 'yes'}\n", "field baseline: must be true or false"),
        (
            "models: []\nrates: {per_second: [0]}\n",
            "rates.per_second.0: must be a number of packets per second in [0.001, 100000], got 0",
        ),
        ("models: []\nrates: {per_second: []}\n", "rates.per_second: must not be empty"),
        ("models:\n  - &a {name: a, model: 'm:F'}\n  - *a\n", "YAML anchors (&a) are not allowed"),
        ("version: 2\nmodels: []\n", "version: must be 1 (the only version understood)"),
        ("- not a mapping\n", "expected a top-level 'models:' list"),
    ],
)
def test_mistakes_are_named_with_file_model_and_field(tmp_path, text, says):
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(ModelsConfigError) as error:
        load_models(path)
    assert str(error.value).startswith(str(path)) and says in str(error.value), str(error.value)
