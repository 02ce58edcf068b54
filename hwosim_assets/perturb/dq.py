"""JWST data-quality flags, and which of them each perturbation sets in-band.

Values are stdatamodels' ``dqflags.pixel`` (jwst pipeline "Data quality
flags" table): bit 0 DO_NOT_USE = 1, 1 SATURATED = 2, 2 JUMP_DET = 4,
3 DROPOUT = 8, 4 OUTLIER = 16, 5 PERSISTENCE = 32, 8 UNRELIABLE_ERROR = 256,
10 DEAD = 1024, 11 HOT = 2048, 12 WARM = 4096, 13 LOW_QE = 8192,
22 UNRELIABLE_BIAS, 24 UNRELIABLE_SLOPE, 25 UNRELIABLE_FLAT, 28
FLUX_ESTIMATED, 30 OTHER_BAD_PIXEL.

Two namespaces, never mixed:

* **DQ (in-band)**: the product's own ``dq`` column or plane, in the JWST
  values, set only where the real pipeline would have noticed what was done
  (:data:`IN_BAND`): a detected jump, a saturated pixel, a dead or hot pixel
  in the bad-pixel mask, data lost in transmission. What the pipeline cannot
  see (extra noise, drifts, sub-threshold hits, bit flips) leaves DQ alone.
  Consumers read it.
* **Truth (apart, under ``truth/``)**: one bit per kind, the answer key. Each
  kind's truth bit is the JWST DQ bit whose documented meaning describes
  what the kind did (:data:`TRUTH_BIT`), so a truth value never means
  something else than the same value would in DQ (no 1024 = saturation
  while DQ 1024 = DEAD); where JWST has no closer flag the catch-all
  OTHER_BAD_PIXEL is used.
"""

from __future__ import annotations

DQ = {
    "DO_NOT_USE": 1 << 0,
    "SATURATED": 1 << 1,
    "JUMP_DET": 1 << 2,
    "DROPOUT": 1 << 3,
    "OUTLIER": 1 << 4,
    "PERSISTENCE": 1 << 5,
    "UNRELIABLE_ERROR": 1 << 8,
    "DEAD": 1 << 10,
    "HOT": 1 << 11,
    "WARM": 1 << 12,
    "LOW_QE": 1 << 13,
    "UNRELIABLE_BIAS": 1 << 22,
    "UNRELIABLE_SLOPE": 1 << 24,
    "UNRELIABLE_FLAT": 1 << 25,
    "FLUX_ESTIMATED": 1 << 28,
    "OTHER_BAD_PIXEL": 1 << 30,
}
DO_NOT_USE, SATURATED, JUMP_DET, DROPOUT = DQ["DO_NOT_USE"], DQ["SATURATED"], DQ["JUMP_DET"], DQ["DROPOUT"]
DEAD, HOT, WARM = DQ["DEAD"], DQ["HOT"], DQ["WARM"]

# kind -> (DQ flag whose meaning its truth bit carries, why)
TRUTH_BIT: dict[str, tuple[str, str]] = {
    "missing_values": ("DO_NOT_USE", "a lost value is not to be used"),
    "saturation": ("SATURATED", "clipped at the full well"),
    "cosmic_rays": ("JUMP_DET", "a charge jump in the ramp"),
    "dropouts": ("DROPOUT", "data lost in transmission"),
    "bit_flips": ("OUTLIER", "an upset value is an outlier"),
    "persistence": ("PERSISTENCE", "afterimage charge"),
    "striping_1f": ("UNRELIABLE_ERROR", "correlated noise beyond a white-noise error"),
    "dead_columns": ("DEAD", "no response"),
    "hot_pixels": ("HOT", "hot, warm or dead pixel of the defect map"),
    "shot_noise": ("LOW_QE", "fewer photons detected"),
    "offset_drift": ("UNRELIABLE_BIAS", "bias drift"),
    "read_noise": ("UNRELIABLE_SLOPE", "extra slope variance (noisy pixel)"),
    "gain_drift": ("UNRELIABLE_FLAT", "response (gain) drift"),
    "pointing_jitter": ("FLUX_ESTIMATED", "flux resampled onto the pixel grid"),
    "spectral_shift": ("OTHER_BAD_PIXEL", "no closer JWST flag: the catch-all"),
}

# kind -> in-band DQ it sets, per processing stage (what the pipeline would notice)
IN_BAND: dict[str, dict[str, str]] = {
    "cosmic_rays": {"archive": "JUMP_DET where the jump step's 4-sigma test fires", "live": "-"},
    "saturation": {"archive": "SATURATED (+ DO_NOT_USE when no group is left)", "live": "-"},
    "hot_pixels": {"archive": "HOT / WARM; dead: DEAD + DO_NOT_USE, value NaN", "live": "-"},
    "dead_columns": {"archive": "DEAD + DO_NOT_USE, value NaN", "live": "-"},
    "dropouts": {"archive": "DROPOUT + DO_NOT_USE, value NaN", "live": "DROPOUT + DO_NOT_USE, value NaN"},
    "missing_values": {"archive": "DO_NOT_USE, value NaN", "live": "DO_NOT_USE, value NaN"},
}


def bit_of(kind: str) -> int:
    """The truth bit (0-31) of a kind."""
    return DQ[TRUTH_BIT[kind][0]].bit_length() - 1


def mapping_markdown() -> str:
    """Truth bit, its JWST DQ name, and the in-band DQ each kind sets, for the README."""
    lines = [
        "| kind | truth bit | value | JWST DQ of that value | in-band DQ set (archive) | in-band DQ set (live) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind, (flag, why) in sorted(TRUTH_BIT.items(), key=lambda item: DQ[item[1][0]]):
        band = IN_BAND.get(kind, {})
        lines.append(
            f"| `{kind}` | {bit_of(kind)} | {DQ[flag]} | {flag} ({why}) | {band.get('archive', '-')} | {band.get('live', '-')} |"
        )
    return "\n".join(lines)
