"""Which products to take: the one selection rule every source (MAST, files, samples) applies.

Kept apart from the MAST client so that the Dagster layer can build a
selection from run config without importing astroquery.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

import polars as pl

from hwosim_assets.records import SUPPORTED_PRODUCT_TYPES

DEFAULT_CALIB_LEVELS = (2, 3)  # calibrated exposures and combined science products


def _as_tuple(value: str | Iterable[Any] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    return tuple(str(v).strip() for v in values if str(v).strip())


def normalize_program(program: str) -> str:
    """JWST program ids as the catalog keeps them: 5 digits, zero-padded."""
    return program.zfill(5) if program.isdigit() else program


@dataclass(frozen=True)
class Selection:
    """Which JWST products to take. Empty tuples mean "any".

    ``instruments`` are MAST instrument names ("NIRISS/SOSS") or bare
    instruments ("NIRISS", matching all its modes). No ``product_types`` means
    every supported one (records.SUPPORTED_PRODUCT_TYPES). ``calib_level``
    None means levels 2 and 3. Lists are accepted and stored as tuples so that a
    Selection stays hashable and immutable.
    """

    programs: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    instruments: tuple[str, ...] = ()
    product_types: tuple[str, ...] = ()
    calib_level: int | None = None
    max_products: int = 50

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("programs", tuple(normalize_program(p) for p in _as_tuple(self.programs)))
        set_("targets", _as_tuple(self.targets))
        set_("instruments", tuple(i.upper() for i in _as_tuple(self.instruments)))
        types = tuple(t.lower() for t in _as_tuple(self.product_types)) or SUPPORTED_PRODUCT_TYPES
        unsupported = [t for t in types if t not in SUPPORTED_PRODUCT_TYPES]
        if unsupported:
            raise ValueError(
                f"unsupported product type(s) {unsupported}: supported are {', '.join(SUPPORTED_PRODUCT_TYPES)}"
            )
        set_("product_types", types)
        if self.calib_level is not None and self.calib_level not in (0, 1, 2, 3, 4):
            raise ValueError(f"calib_level {self.calib_level} is not a MAST calibration level (0-4)")
        if self.max_products < 1:
            raise ValueError(f"max_products must be at least 1, got {self.max_products}")

    @property
    def calib_levels(self) -> tuple[int, ...]:
        return DEFAULT_CALIB_LEVELS if self.calib_level is None else (self.calib_level,)

    def __str__(self) -> str:
        parts = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if getattr(self, f.name) not in ((), None)]
        return f"Selection({', '.join(parts)})"


def instrument_matches(instrument: str | None, wanted: tuple[str, ...]) -> bool:
    """A bare instrument ("NIRISS") matches all its modes ("NIRISS/SOSS"); a mode only itself."""
    if not wanted:
        return True
    name = (instrument or "").upper()
    return any(name == w or name.startswith(w + "/") for w in wanted)


def select_products(catalog: pl.DataFrame, selection: Selection) -> pl.DataFrame:
    """The rows of a catalog (CATALOG_SCHEMA) that a selection asks for, capped.

    One rule for every source: sorted by observation and file name before the
    cap, so the same selection always keeps the same products.
    """
    rows = catalog.filter(
        pl.col("product_type").is_in(list(selection.product_types))
        & pl.col("calib_level").is_in(list(selection.calib_levels))
    )
    if selection.programs:
        rows = rows.filter(pl.col("program").is_in(list(selection.programs)))
    if selection.targets:
        wanted = [t.upper() for t in selection.targets]
        rows = rows.filter(pl.col("target").str.to_uppercase().is_in(wanted))
    if selection.instruments:
        keep = [instrument_matches(i, selection.instruments) for i in rows["instrument"].to_list()]
        rows = rows.filter(pl.Series(keep, dtype=pl.Boolean))
    return rows.sort("obs_id", "filename").head(selection.max_products)
