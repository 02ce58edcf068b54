"""Ground truth: one uint32 bit mask per element, one bit per kind.

Like a JWST DQ array, a truth value is the OR of the flags of everything
that touched the element; 0 means the element is exactly the bronze value.
Truth is written apart from the perturbed data (its own table under
``truth/`` in the lake), so a consumer never sees it by accident.

* spectra: one row per (seq, channel), column ``truth`` UInt32;
* images: one row per tile (seq), column ``truth`` Binary holding ny*nx
  little-endian uint32, laid out like the ``sci`` plane (:func:`tile_truth`).

Every element whose value differs from the input (in any column: value,
error, wavelength) has at least one bit set. An element may carry a bit and
still be unchanged (noise that rounded away, NaN + noise, a zero written
over a zero).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from hwosim_assets.perturb.kinds import ELEMENT_KINDS

TRUTH_DTYPE = "<u4"

BITS: dict[str, int] = {
    name: spec.bit for name, spec in ELEMENT_KINDS.items() if spec.alias_of is None and spec.bit is not None
}


def kinds_of(value: int) -> list[str]:
    """Names of the kinds whose bits are set in a truth value."""
    return [name for name, bit in BITS.items() if value >> bit & 1]


def bit_table_markdown() -> str:
    """The truth bit table, for the README."""
    lines = ["| bit | value | kind | what it marks |", "| --- | --- | --- | --- |"]
    for name, bit in sorted(BITS.items(), key=lambda item: item[1]):
        spec = ELEMENT_KINDS[name]
        aliases = [a for a, s in ELEMENT_KINDS.items() if s.alias_of == name]
        alias = f" (alias: {', '.join(f'`{a}`' for a in aliases)})" if aliases else ""
        families = "/".join(sorted(spec.families))
        lines.append(f"| {bit} | {1 << bit} | `{name}`{alias} | {spec.summary} ({families}) |")
    return "\n".join(lines)


def tile_truth(payload: bytes, ny: int, nx: int) -> np.ndarray:
    """The (ny, nx) truth mask of one tile from its ``truth`` payload."""
    return np.frombuffer(payload, dtype=TRUTH_DTYPE).reshape(ny, nx)


def _bits(values: np.ndarray) -> np.ndarray:
    return values.view(np.uint64 if values.dtype.itemsize == 8 else np.uint32)


def _planes(table: pl.DataFrame, plane: str) -> np.ndarray:
    """All tiles' payloads of one plane, concatenated, as raw uint32 words."""
    return np.frombuffer(b"".join(table[plane].to_list()), dtype=np.uint32)


def changed_elements(before: pl.DataFrame, after: pl.DataFrame, family: str) -> np.ndarray:
    """Boolean per element (spectra: per row; images: every tile's pixels in row
    order) - True where any value column differs bit for bit."""
    if family == "spectra":
        changed = np.zeros(len(before), dtype=bool)
        for column in ("flux", "flux_error", "wavelength", "event_time"):
            changed |= _bits(before[column].to_numpy()) != _bits(after[column].to_numpy())
        return changed | (before["dq"].to_numpy() != after["dq"].to_numpy())
    changed = np.zeros(int((before["ny"] * before["nx"]).sum()), dtype=bool)
    for plane in ("sci", "err", "dq"):
        changed |= _planes(before, plane) != _planes(after, plane)
    return changed


def truth_values(truth: pl.DataFrame, family: str) -> np.ndarray:
    """Truth per element, in the order of :func:`changed_elements`."""
    if family == "spectra":
        return truth["truth"].to_numpy()
    return _planes(truth, "truth")


def uncovered_changes(before: pl.DataFrame, after: pl.DataFrame, truth: pl.DataFrame, family: str) -> int:
    """How many changed elements carry no truth bit (0 for a correct run)."""
    return int((changed_elements(before, after, family) & (truth_values(truth, family) == 0)).sum())
