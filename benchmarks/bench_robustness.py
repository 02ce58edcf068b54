"""The baselines over level-0 ... level-5 on the sample time series, the real MIRI LRS x1dints and the
sample images: the README's results table and plot.

    python benchmarks/bench_robustness.py            # prints the table
    python benchmarks/bench_robustness.py --write    # and rewrites the README's block and benchmarks/robustness.png

Every baseline of the packaged models.yaml is scored offline (the harness,
the profile's stream faults, the seed of the embedded default) on each
product perturbed by the engine at each level; the real products are
discovered in ../shared/data/jwst (HWOSIM_TEST_JWST_DIR), never named.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hwosim_assets import plots  # noqa: E402
from hwosim_assets.evaluate import robustness  # noqa: E402
from hwosim_assets.evaluate.config import load_models  # noqa: E402
from hwosim_assets.evaluate.offline import ModelSpec, score_offline  # noqa: E402
from hwosim_assets.evaluate.scorecard import frame  # noqa: E402
from hwosim_assets.perturb import load_profiles  # noqa: E402
from hwosim_assets_tests import scoring_data  # noqa: E402

LEVELS = [f"level-{n}" for n in range(6)]
SHOWN = {  # model -> (metric, how it reads)
    "sigma-clip": [
        ("flags.error", "flags wrong (1 - accuracy)"),
        ("flags.f1", "F1"),
        ("flags.false_alarms", "false alarms"),
        ("flags.preexisting", "the product's own anomalies (pre-existing)"),
        ("flags.preexisting_flagged", "pre-existing ones flagged"),
    ],
    "median-filter": [("cleaned.mae_err", "MAE [ERR]"), ("cleaned.passthrough_mae_err", "MAE doing nothing [ERR]")],
    "stream-health": [("health.error", "decisions wrong"), ("health.gaps.true", "packets lost")],
    "transit-fit": [
        ("events.depth_bias", "depth bias"),
        ("events.timing_error_s", "mid-time error [s]"),
        ("events.false_alarms_per_hour", "false alarms / h"),
        ("events.nab_score", "NAB score"),
    ],
}


NOTHING = ModelSpec("do-nothing", "benchmarks.bench_robustness:DoNothing")


class DoNothing:
    """The side-by-side reference: flags nothing and returns the values it got as its reconstruction."""

    def predict_one(self, packet):
        return {"flags": np.zeros(packet.values.shape, dtype=bool), "cleaned": packet.values}


def datasets():
    yield "sample time series", "spectra", *scoring_data.sample_bronze("spectra")
    for obs_id, table in scoring_data.real_time_series():
        yield f"real {obs_id.split('_', 1)[1]}", "spectra", obs_id, table
    yield "sample images", "images", *scoring_data.sample_bronze("images")


RATIO = {"flags.error": "flags wrong", "cleaned.mae_err": "MAE"}  # against the do-nothing answer


def shown(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if float(value).is_integer() and abs(value) < 1e6:
        return f"{int(value)}"
    return f"{value:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the README block and benchmarks/robustness.png")
    args = parser.parse_args()
    profiles, models = load_profiles(), load_models()
    cards, reference_cards, lines = (
        [],
        [],
        ["| data | model | figure | " + " | ".join(str(n) for n in range(6)) + " |", "|" + " --- |" * 9],
    )
    t0 = time.perf_counter()
    for label, family, obs_id, clean in datasets():
        by_model: dict[str, list[dict]] = {}
        for level in LEVELS:
            key = scoring_data.answers(family, obs_id, clean, level)
            p = profiles[level]
            for spec in [*models.models.values(), NOTHING]:
                card = score_offline(
                    spec,
                    key,
                    profile=level,
                    profile_hash=p.config_hash,
                    seed=scoring_data.SEED,
                    stream_faults=p.stream_faults,
                )
                if card.status == "ok":
                    (cards if spec is not NOTHING else reference_cards).append(card)
                    by_model.setdefault(spec.name, []).append(card.metrics)
        nothing = by_model.pop(NOTHING.name)
        for model, metrics in by_model.items():
            for metric, what in SHOWN[model]:
                if metric in metrics[0]:
                    lines.append(
                        f"| {label} | {model} | {what} | " + " | ".join(shown(m.get(metric)) for m in metrics) + " |"
                    )
            for metric, what in RATIO.items():  # side by side with doing nothing, same data, same run
                if metric in metrics[0]:
                    ratios = [
                        ours.get(metric, math.nan) / ref[metric] if ref.get(metric) else math.nan
                        for ours, ref in zip(metrics, nothing, strict=False)
                    ]
                    lines.append(
                        f"| {label} | {model} | {what} / doing nothing | "
                        + " | ".join("-" if math.isnan(r) else f"{r:.2f}x" for r in ratios)
                        + " |"
                    )
    seconds = time.perf_counter() - t0
    table = "\n".join(lines)
    print(table)
    print(f"\n{len(cards)} scorecards of the baselines (+ the do-nothing reference) in {seconds:.1f} s")
    rows = frame(cards)
    summary = robustness.summary(robustness.level_curves(frame(cards + reference_cards)), list(models.baselines))
    summary_lines = "\n".join(
        [
            "ImageNet-C summary over the three products (each kind's baseline is 100 %; below is better), mean error per level:",
            "",
            "| model | kind | mCE | relative mCE | " + " | ".join(f"level {n}" for n in range(6)) + " |",
            "|" + " --- |" * 10,
            *(
                f"| {r['model']} | {r['kind']} | {shown(r['mce_pct'])} % | {shown(r['relative_mce_pct'])} % | "
                + " | ".join(shown(r[f"level_{n}"]) for n in range(6))
                + " |"
                for r in summary.iter_rows(named=True)
            ),
        ]
    )
    print("\n" + summary_lines)
    png = plots.robustness(
        robustness.level_curves(rows),
        robustness.rate_curves(rows),
        "the baselines: error per perturbation level (offline)",
    )
    if args.write:
        (REPO / "benchmarks" / "robustness.png").write_bytes(png)
        readme = REPO / "README.md"
        text = readme.read_text()
        start, end = "<!-- robustness-results -->", "<!-- /robustness-results -->"
        head, rest = text.split(start, 1)
        block = (
            f"{table}\n\n{summary_lines}\n\n![error per level of each baseline](benchmarks/robustness.png)\n\n"
            f"`python benchmarks/bench_robustness.py --write` ({len(cards)} scorecards in {seconds:.0f} s)."
        )
        readme.write_text(head + start + "\n" + block + "\n" + end + rest.split(end, 1)[1])
        print("README.md and benchmarks/robustness.png rewritten")


if __name__ == "__main__":
    main()
