"""Models under test: the model interface, baseline models, scoring against the truth. No Dagster here.

One arrow per step:

* :mod:`.model`        ``package.module:factory`` -> a loaded model with its identity
* :mod:`.predictions`  what a model may answer per packet, checked
* :mod:`.answers`      the answer key of an observation x profile (clean values, truth, events)
* :mod:`.harness`      one model fed one packet at a time, answers kept, scored at the end
* :mod:`.metrics`      precision, recall, F1, average precision, errors in ERR, NAB
* :mod:`.offline`      a perturbed partition, delivered as its stream faults would
* :mod:`.live`         a stream table through the SDK, at the stream's pace, and the rate sweep
* :mod:`.scorecard`    one model's scores with model, profile and seed identity
* :mod:`.store`        the ``hwosim_scores`` SQL table
* :mod:`.robustness`   corruption error per level, mCE and relative mCE against the baselines
* :mod:`.config`       models.yaml
* :mod:`.baselines`    the reference models
"""
