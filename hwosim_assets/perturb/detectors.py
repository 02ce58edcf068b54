"""The JWST detectors' physical constants the perturbations are scaled with.

Products say which detector took them (header ``DETECTOR``); everything a
kind needs that the product itself does not carry - the gain, the read noise
of one frame pair, the pixel pitch that turns a cosmic-ray flux per cm^2 into
hits per pixel, the full well, which large-event artifacts the detector
shows and which direction its 1/f noise runs in - comes from this table.
Each figure cites where it was read. Figures marked "recalled" could not be
re-read from the page while this table was written and should be checked
against it; they are used only where a product carries no variance of its
own (see :mod:`hwosim_assets.perturb.exposure`).

Sources:

* [NRC-OV] JDox "NIRCam Detector Overview": ten 2048 x 2048 HgCdTe H2RG SCAs,
  2040 x 2040 light-sensitive plus a 4-pixel reference border; SW pixels
  0.031", LW 0.063".
* [NRC-PERF] JDox "NIRCam Detector Performance" (recalled: gain ~2.0 e-/DN,
  CDS read noise ~15 e-, full well ~100 ke-).
* [NIS] STScI "NIRISS at a Glance": 18 um pixels, CDS noise 23 e-, gain
  1.5 e-/ADU, 0.0654"/pixel.
* [NRS-PERF] JDox "NIRSpec Detector Performance": gain "near unity" for both
  SCAs; JDox "NIRSpec Detector Readout Modes and Patterns": the total-noise
  requirement is < 6 e- over ~1000 s (met with IRS2); CDS read noise ~14 e-
  (recalled).
* [MIRI-PERF] JDox "MIRI Detector Performance", Table 1 (flight): gain ~4
  e/ADU, read noise ~6 DN, dark ~0.2 e/s, full well ~210,000 e.
* [MIRI-OV] JDox "MIRI Detector Overview": Si:As IBC, 1024 x 1024, 25 um
  pixels, 0.11"/pixel, CDS ~14 e- (ground), conversion gain 5.5 e/DN.
* [SNOW] JDox "Shower and Snowball Artifacts": about one snowball every 20 s
  per 2K x 2K near-IR detector; showers (MIRI) at least 2x rarer; the jump
  step removes snowballs by default for NIRCam, NIRSpec and some NIRISS modes
  (``expand_large_events``), MIRI showers only for some imaging modes
  (``find_showers``).
* [1F] Schlawin et al. 2020 (AJ 160, 231): NIRCam grism dispersion runs
  parallel to the fast-read direction, so its 1/f bands lie along the
  spectrum; NIRISS SOSS and NIRSpec 1/f stripes run across the dispersion
  direction (one offset per column of the DMS frame; Albert et al. 2023
  correct SOSS column by column). MIRI's Si:As arrays are not read by
  SIDECAR ASICs and show no such banding.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Detector:
    """One JWST detector type."""

    name: str
    technology: str  # "H2RG" (HgCdTe, near-IR) or "SiAs" (MIRI)
    gain_e_per_dn: float
    read_noise_cds_e: float  # noise of one frame difference (correlated double sample), e-
    pixel_um: float  # pixel pitch
    pixel_scale_mas: float
    full_well_e: float
    large_events: str  # "snowball" (near-IR) or "shower" (MIRI)
    large_events_flagged: bool  # the jump step's default removes them ([SNOW])
    stripes: str  # 1/f offsets constant along "rows" or "columns" of the DMS frame, or "none"
    source: str

    @property
    def pixel_area_cm2(self) -> float:
        return (self.pixel_um * 1e-4) ** 2

    @property
    def detector_area_cm2(self) -> float:
        """Area of the full array (2048^2 H2RG, 1024^2 MIRI): large-event rates are per detector."""
        side = 1024 if self.technology == "SiAs" else 2048
        return side * side * self.pixel_area_cm2


_NRC_SW = Detector(
    name="NIRCam SW",
    technology="H2RG",
    gain_e_per_dn=2.0,
    read_noise_cds_e=15.0,
    pixel_um=18.0,
    pixel_scale_mas=31.0,
    full_well_e=100_000.0,
    large_events="snowball",
    large_events_flagged=True,
    stripes="rows",
    source="[NRC-OV] [NRC-PERF] [SNOW] [1F]",
)
_NRC_LW = replace(_NRC_SW, name="NIRCam LW", pixel_scale_mas=63.0)
_NRS = Detector(
    name="NIRSpec",
    technology="H2RG",
    gain_e_per_dn=1.0,
    read_noise_cds_e=14.0,
    pixel_um=18.0,
    pixel_scale_mas=100.0,
    full_well_e=100_000.0,
    large_events="snowball",
    large_events_flagged=True,
    stripes="columns",
    source="[NRS-PERF] [SNOW] [1F]",
)
_NIS = Detector(
    name="NIRISS",
    technology="H2RG",
    gain_e_per_dn=1.5,
    read_noise_cds_e=23.0,
    pixel_um=18.0,
    pixel_scale_mas=65.4,
    full_well_e=100_000.0,
    large_events="snowball",
    large_events_flagged=False,
    stripes="columns",
    source="[NIS] [SNOW] [1F]",
)
_MIRI = Detector(
    name="MIRI",
    technology="SiAs",
    gain_e_per_dn=4.0,
    read_noise_cds_e=24.0,
    pixel_um=25.0,
    pixel_scale_mas=110.0,
    full_well_e=210_000.0,
    large_events="shower",
    large_events_flagged=False,
    stripes="none",
    source="[MIRI-PERF] read noise ~6 DN x gain ~4; [MIRI-OV] [SNOW]",
)

DETECTORS: dict[str, Detector] = {
    **{f"NRC{m}{i}": replace(_NRC_SW, name=f"NRC{m}{i}") for m in "AB" for i in range(1, 5)},
    "NRCALONG": replace(_NRC_LW, name="NRCALONG"),
    "NRCBLONG": replace(_NRC_LW, name="NRCBLONG"),
    "NRS1": replace(_NRS, name="NRS1"),
    "NRS2": replace(_NRS, name="NRS2"),
    "NIS": replace(_NIS, name="NIS"),
    "MIRIMAGE": replace(_MIRI, name="MIRIMAGE"),
    "MIRIFUSHORT": replace(_MIRI, name="MIRIFUSHORT"),
    "MIRIFULONG": replace(_MIRI, name="MIRIFULONG"),
}

# A product that names no known detector (synthetic tables, other missions):
# a generic JWST near-IR H2RG with the NIRCam SW figures.
GENERIC = replace(_NRC_SW, name="GENERIC")


def detector(name: str | None) -> Detector:
    """The detector a product names (its DETECTOR header), else the generic H2RG."""
    return DETECTORS.get((name or "").strip().upper(), GENERIC)
