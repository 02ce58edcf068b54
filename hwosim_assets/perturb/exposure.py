"""What one product says about how its values were taken: integration time,
readout, detector, units - the header facts that put a perturbation in
physical units.

The bronze stage keeps, per observation, one row per product with its
header facts (``bronze/<family>/<obs>.products.parquet``, from
:func:`hwosim_assets.ingest.fits_reader.header_facts`). :func:`exposures`
turns that record into an :class:`Exposure` per product; the engine is
handed them and gives every batch the one of its product.

Time a value integrates over (:attr:`Exposure.seconds`):

* per-integration products (x1dints, calints, rateints): ``EFFINTTM``, the
  effective integration time - each row or frame is one integration;
* exposure-level products (x1d, cal, rate, i2d, s2d): ``EFFEXPTM``, since
  their values are slopes fitted over every integration of the exposure;
* neither header: 100 s, the old fixed convention, flagged by
  ``Exposure.known`` = False so reports can say so.

Read noise of one pixel of one integration (:meth:`Exposure.read_noise_e`):
a slope fitted to N equally spaced groups, each the mean of NFRAMES frames
with per-frame noise sigma_f = CDS / sqrt(2), has a charge uncertainty over
the ramp of

    sigma_Q = sigma_f / sqrt(NFRAMES) * sqrt(12 (N - 1) / (N (N + 1)))

(least-squares slope of N points, times the ramp length); N = 2 gives one
CDS noise, as it should. This is the floor the products' own
``VAR_RNOISE`` is compared with in the fidelity report.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from hwosim_assets.perturb.detectors import Detector, detector

DEFAULT_SECONDS = 100.0
PER_INTEGRATION = frozenset({"x1dints", "calints", "rateints"})


@dataclass(frozen=True)
class Exposure:
    """Header facts of one product (any may be missing)."""

    product: str = ""
    product_type: str = ""
    instrument: str = ""
    detector_name: str = ""
    exp_type: str = ""
    readpatt: str = ""
    ngroups: int | None = None
    nframes: int | None = None
    tgroup: float | None = None
    effinttm: float | None = None
    effexptm: float | None = None
    nints: int | None = None
    bunit: str = ""
    photmjsr: float | None = None
    pixar_sr: float | None = None
    dispaxis: int | None = None  # DISPAXIS of the science header: 1 = dispersion along x, 2 = along y
    detector: Detector = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "detector", detector(self.detector_name))

    @property
    def known(self) -> bool:
        """Whether the integration time came from the product's headers."""
        return self._seconds() is not None

    def _seconds(self) -> float | None:
        per_int = self.product_type in PER_INTEGRATION or not self.product_type
        first, second = (self.effinttm, self.effexptm) if per_int else (self.effexptm, self.effinttm)
        for value in (first, second):
            if value is not None and math.isfinite(value) and value > 0:
                return float(value)
        return None

    @property
    def seconds(self) -> float:
        """Time one value integrates over, s (module docstring)."""
        return self._seconds() or DEFAULT_SECONDS

    @property
    def groups(self) -> int:
        return int(self.ngroups) if self.ngroups and self.ngroups > 0 else 2

    def read_noise_e(self) -> float:
        """Read noise of one pixel over one integration's fitted ramp, e- (module docstring)."""
        n = self.groups
        frames = max(int(self.nframes or 1), 1)
        sigma_frame = self.detector.read_noise_cds_e / math.sqrt(2.0) / math.sqrt(frames)
        if n < 2:
            return self.detector.read_noise_cds_e
        return sigma_frame * math.sqrt(12.0 * (n - 1) / (n * (n + 1)))

    def group_noise_e(self) -> float:
        """Noise of one group difference from read noise alone, e- (what the jump step compares a jump with)."""
        frames = max(int(self.nframes or 1), 1)
        return self.detector.read_noise_cds_e / math.sqrt(frames)

    def data_per_electron(self) -> float | None:
        """Data units per electron from the headers (gain x time and the
        photometric conversion), for products without VAR_POISSON: MJy/sr
        values are DN/s x PHOTMJSR; DN/s values are electrons / (gain x time).
        None when the unit is not one of those."""
        unit = (self.bunit or "").replace(" ", "").lower()
        per_dn_s = 1.0 / (self.detector.gain_e_per_dn * self.seconds)
        if unit in ("dn/s", "counts/s", "dn/sec"):
            return per_dn_s
        if unit == "mjy/sr" and self.photmjsr and self.photmjsr > 0 and self.photmjsr < 1e6:
            return per_dn_s * self.photmjsr
        if unit == "mjy" and self.photmjsr and self.pixar_sr and 0 < self.photmjsr < 1e6:
            return per_dn_s * self.photmjsr * self.pixar_sr
        return None

    @property
    def dispersion_axis(self) -> int:
        """The array axis a spectrum is dispersed along: 2 (y, rows of a 2-D
        spectrum, e.g. MIRI LRS) where the product says DISPAXIS = 2; else 1
        (x) - the default when DISPAXIS is missing or unknown, as for NIRSpec
        and NIRISS SOSS, whose spectra run along x."""
        return 2 if self.dispaxis == 2 else 1

    def with_product_type(self, product_type: str) -> Exposure:
        return replace(self, product_type=product_type)


GENERIC = Exposure()

_COLUMNS = {
    "product": "product",
    "product_type": "product_type",
    "instrument": "instrume",
    "detector_name": "detector",
    "exp_type": "exp_type",
    "readpatt": "readpatt",
    "ngroups": "ngroups",
    "nframes": "nframes",
    "tgroup": "tgroup",
    "effinttm": "effinttm",
    "effexptm": "effexptm",
    "nints": "nints",
    "bunit": "bunit",
    "photmjsr": "photmjsr",
    "pixar_sr": "pixar_sr",
    "dispaxis": "dispaxis",
}


def from_facts(row: Mapping) -> Exposure:
    """An Exposure from one row of the bronze metadata record (lower-case header names)."""
    values = {}
    for attr, column in _COLUMNS.items():
        value = row.get(column)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        values[attr] = value
    return Exposure(**values)


def exposures(record: pl.DataFrame | Iterable[Mapping[str, Any]]) -> dict[str, Exposure]:
    """{product or file name: Exposure} for every row of a metadata record (a
    polars DataFrame or a list of mappings). Both the product name and the
    file name are keys, so an image tile's ``source`` finds its product."""
    rows = record.to_dicts() if isinstance(record, pl.DataFrame) else list(record)
    found: dict[str, Exposure] = {}
    for row in rows:
        exposure = from_facts(row)
        for key in (row.get("product"), row.get("file")):
            if key:
                found[str(key)] = exposure
    return found


def pick(found: Mapping[str, Exposure] | Exposure | None, source: str | None = None) -> Exposure:
    """The Exposure for a product: by name, else the only one, else the first
    spectrum-like one, else the generic one."""
    if found is None:
        return GENERIC
    if isinstance(found, Exposure):
        return found
    if source and source in found:
        return found[source]
    distinct = list(dict.fromkeys(found.values()))
    if len(distinct) == 1:
        return distinct[0]
    for exposure in distinct:
        if exposure.product_type in ("x1dints", "x1d"):
            return exposure
    return distinct[0] if distinct else GENERIC
