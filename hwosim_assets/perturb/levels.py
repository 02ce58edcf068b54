"""Severity levels 0-5 of every kind, as a markdown table for the README.

Level 0 leaves the data bit-identical; levels 1-5 raise the physical
parameters monotonically, anchored on records where there are any: 1 = the
typical observed figure, 3 = a bad day on record, 5 = the worst recorded
(severe, not destroyed). :func:`anchors_markdown` lists, per kind and level,
the figure and its source - or says it is interpolated, or an explicit
what-if and why no record exists (HWO-era links, residual upsets behind EDAC).
``python -m hwosim_assets.perturb.levels`` prints both tables.
"""

from __future__ import annotations

import math

from hwosim_assets.perturb.kinds import KINDS
from hwosim_assets.perturb.spec import LEVELS, KindSpec


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "∞"
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:g}"


def _rows(spec: KindSpec) -> list[str]:
    rows = []
    for i, param in enumerate(spec.params):
        values = [_fmt(spec.at_level(level)[param.name]) for level in LEVELS]
        name = f"`{spec.name}`" if i == 0 else ""
        unit = param.unit or "-"
        rows.append(f"| {name} | `{param.name}` | {unit} | " + " | ".join(values) + f" | {param.meaning} |")
    return rows


def levels_markdown() -> str:
    """Every kind's parameters at levels 0-5, then what each is grounded on."""
    head = "| kind | parameter | unit | " + " | ".join(str(level) for level in LEVELS) + " | meaning |"
    lines = [head, "|" + " --- |" * (len(LEVELS) + 4)]
    specs = [s for s in KINDS.values() if s.alias_of is None]
    for spec in specs:
        lines.extend(_rows(spec))
    lines += ["", "Aliases: " + ", ".join(f"`{s.name}` = `{s.alias_of}`" for s in KINDS.values() if s.alias_of), ""]
    for spec in specs:
        where = "stream replay" if spec.stream_level else "/".join(sorted(spec.families))
        lines.append(f"- `{spec.name}` ({where}): {spec.summary}. {spec.grounding}")
    return "\n".join(lines)


def anchors_markdown() -> str:
    """Per kind and level 1-5: the recorded figure the level rests on, and where it is from."""
    lines = ["| kind | level | figure and source |", "| --- | --- | --- |"]
    for spec in KINDS.values():
        if spec.alias_of is not None:
            continue
        for level in LEVELS[1:]:
            text = spec.anchors.get(level)
            if text is None:
                below = max((k for k in spec.anchors if k < level), default=None)
                above = min((k for k in spec.anchors if k > level), default=None)
                text = (
                    f"interpolated between levels {below} and {above}"
                    if below and above
                    else "what-if (no record found)"
                )
            name = f"`{spec.name}`" if level == 1 else ""
            lines.append(f"| {name} | {level} | {text} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(levels_markdown())
    print()
    print(anchors_markdown())
