"""Figures for materializations: what a perturbation did, at a glance.

Each function returns PNG bytes, so the Dagster layer can store them in the
lake and link them from the materialization metadata; :func:`preview` makes
the small copy shown inline in the UI.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no screen on servers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from hwosim_assets.records import PIXEL_DTYPES  # noqa: E402


def _png(fig, dpi: int = 90) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


PREVIEW_WIDTH = 480  # pixels: a preview of about 20-40 KB, small beside what an event log row holds


def preview(png: bytes, width: int = PREVIEW_WIDTH) -> bytes:
    """A smaller copy of a PNG (every k-th pixel, k chosen for ``width``), for inline display:
    the UI shows markdown images from data: URLs, not files in the lake."""
    image = plt.imread(io.BytesIO(png), format="png")
    step = max(1, int(np.ceil(image.shape[1] / width)))
    buf = io.BytesIO()
    plt.imsave(buf, image[::step, ::step], format="png")
    return buf.getvalue()


def spectra_before_after(before: pl.DataFrame, after: pl.DataFrame, truth: pl.DataFrame, title: str) -> bytes:
    """One integration's spectrum and the white-light curve, before and after."""
    fig, (ax_spec, ax_curve) = plt.subplots(1, 2, figsize=(11, 3.8))
    seq = int(before["seq"].median())
    finite = pl.when(pl.col("flux").is_finite()).then(pl.col("flux"))  # inf / NaN (bit flips...) not drawn
    curves = []
    for table, label, style in ((before, "bronze", "-"), (after, "perturbed", "-")):
        one = table.filter(pl.col("seq") == seq).sort("channel").with_columns(flux=finite)
        ax_spec.plot(one["wavelength"], one["flux"].fill_null(np.nan), style, lw=0.8, label=label, alpha=0.85)
        curve = table.group_by("seq").agg(pl.col("event_time").first(), finite.sum().alias("flux")).sort("seq")
        summed = curve["flux"].to_numpy().astype(np.float64)  # a sum of huge values can itself be inf
        ax_curve.plot(
            curve["event_time"], np.where(np.isfinite(summed), summed, np.nan), ".", ms=2.5, label=label, alpha=0.85
        )
        curves.append(summed)
    # y limits from the bronze values: a perturbed value of 1e308 would otherwise overflow the axis range
    ax_spec.set_ylim(**_limits(before["flux"].to_numpy()))
    ax_curve.set_ylim(**_limits(curves[0]))
    ax_spec.set(xlabel="wavelength [micron]", ylabel="flux [Jy]")
    ax_curve.set(xlabel="event time [MJD]", ylabel="summed flux [Jy]", title="white-light curve")
    flagged = truth.filter(pl.col("seq") == seq)["truth"].to_numpy()
    ax_spec.set_title(f"integration seq={seq}: {np.count_nonzero(flagged)}/{flagged.size} channels changed")
    ax_spec.legend()
    fig.suptitle(title)
    return _png(fig)


def _limits(values: np.ndarray) -> dict[str, float]:
    """bottom/top around the 0.5-99.5 % range of the finite values, with a margin."""
    finite = values[np.isfinite(values)].astype(np.float64)
    if not finite.size:
        return {"bottom": 0.0, "top": 1.0}
    lo, hi = np.percentile(finite, [0.5, 99.5])
    pad = 0.15 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.1
    return {"bottom": float(lo - pad), "top": float(hi + pad)}


def images_before_after(before: pl.DataFrame, after: pl.DataFrame, truth: pl.DataFrame, title: str) -> bytes:
    """The tile with the most flagged pixels, before and after, with its truth mask."""
    counts = [int(np.count_nonzero(np.frombuffer(t, dtype="<u4"))) for t in truth["truth"]]
    i = int(np.argmax(counts)) if counts else 0
    return tile_with_truth(
        before.row(i, named=True), after.row(i, named=True), np.frombuffer(truth["truth"][i], dtype="<u4"), title
    )


def _stretch(data: np.ndarray) -> dict[str, float]:
    """vmin/vmax at the 1st and 99th percentiles of the finite pixels, in float64 (a float32 tile
    with values near its limit overflows matplotlib's own float32 normalisation)."""
    finite = data[np.isfinite(data)].astype(np.float64)
    if not finite.size:
        return {"vmin": 0.0, "vmax": 1.0}
    lo, hi = np.percentile(finite, [1, 99])
    return {"vmin": float(lo), "vmax": float(hi if hi > lo else lo + 1.0)}


def tile_with_truth(before: dict, after: dict, truth: np.ndarray, title: str) -> bytes:
    """One image tile before and after, and where the truth mask flags changes."""
    shape = (before["ny"], before["nx"])
    sci0 = np.frombuffer(before["sci"], dtype=PIXEL_DTYPES["sci"]).reshape(shape)
    sci1 = np.frombuffer(after["sci"], dtype=PIXEL_DTYPES["sci"]).reshape(shape)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
    for ax, data, label in ((axes[0], sci0, "bronze"), (axes[1], sci1, "perturbed"), (axes[2], sci1, "")):
        # each panel its own 1-99 % stretch: at level 5 the perturbed tile's range is not the bronze one's
        # clipped to the stretch in float64: a bit flip's 3e38 overflows matplotlib's float32 colour lookup
        limits = _stretch(data)
        shown = np.clip(data.astype(np.float64), limits["vmin"], limits["vmax"])
        ax.imshow(shown, origin="lower", cmap="gray", **limits)
        ax.set_title(label)
    axes[2].imshow(np.ma.masked_equal(truth.reshape(shape), 0), origin="lower", cmap="autumn", alpha=0.7)
    axes[2].set_title("truth mask (any kind)")
    fig.suptitle(title)
    return _png(fig)


def fidelity_ratios(rows, title: str) -> bytes:
    """Measured / target per kind and level (the fidelity report), with the +-20 % band."""
    measured = [r for r in rows if r.ratio is not None and not r.kind.startswith("(")]
    kinds = sorted({r.kind for r in measured})
    fig, ax = plt.subplots(figsize=(11, 0.32 * len(kinds) + 1.6))
    ax.axvspan(0.8, 1.2, color="0.9", label="within 20 %")
    ax.axvline(1.0, color="0.5", lw=0.8)
    for level in sorted({r.level for r in measured}):
        mine = [r for r in measured if r.level == level]
        ax.scatter(
            [r.ratio for r in mine],
            [kinds.index(r.kind) + (level - 3) * 0.08 for r in mine],
            s=18,
            label=f"level {level}",
        )
    ax.set_yticks(range(len(kinds)), kinds)
    ax.set_xlabel("measured / target")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def robustness(curves: pl.DataFrame, rates: pl.DataFrame, title: str, dpi: int = 90) -> bytes:
    """Error against perturbation level per prediction kind (one line per model and observation),
    and, when live scorecards exist, the fraction of packets answered within the cadence against
    the stream rate."""
    kinds = sorted(set(curves["kind"].to_list())) if len(curves) else []
    panels = len(kinds) + (1 if len(rates) else 0)
    fig, axes = plt.subplots(1, max(panels, 1), figsize=(3.6 * max(panels, 1), 3.2), squeeze=False)
    axes = axes[0]
    styles = ["-", "--", ":", "-."]
    observations = sorted(set(curves["observation"].to_list())) if len(curves) else []
    for ax, kind in zip(axes, kinds, strict=False):
        part = curves.filter(pl.col("kind") == kind)
        for (model, obs), line in part.group_by(["model", "observation"], maintain_order=True):
            line = line.sort("level")
            style = styles[observations.index(obs) % len(styles)]
            ax.plot(line["level"], line["error"], style, marker="o", ms=3, label=f"{model} / {obs[:24]}")
        ax.set(xlabel="perturbation level", ylabel="error", title=kind, xticks=range(6))
        ax.legend(fontsize=6)
    if len(rates):
        ax = axes[len(kinds)]
        for (model, obs), line in rates.group_by(["model", "observation"], maintain_order=True):
            line = line.sort("rate")
            ax.plot(line["rate"], line["within_cadence"], marker="o", ms=3, label=f"{model} / {obs[:24]}")
        ax.set(
            xscale="log",
            xlabel="stream rate [packets/s]",
            ylabel="answered within cadence",
            ylim=(-0.05, 1.05),
            title="keeping up (live)",
        )
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    return _png(fig, dpi)
