"""The README's generated tables are the code's own, and its quickstart is what CI runs."""

from pathlib import Path

import pytest

from hwosim_assets.perturb import bit_table_markdown, levels_markdown
from hwosim_assets.perturb.dq import mapping_markdown
from hwosim_assets.perturb.levels import anchors_markdown
from hwosim_assets.settings import env_table_markdown

README = Path(__file__).resolve().parents[1] / "README.md"

TABLES = {
    "env-table": env_table_markdown,
    "bit-table": bit_table_markdown,
    "levels-table": levels_markdown,
    "anchors-table": anchors_markdown,
    "dq-table": mapping_markdown,
}


def generated(name: str) -> str:
    text = README.read_text()
    start, end = f"<!-- {name} -->\n", f"\n<!-- /{name} -->"
    assert start in text and end in text, f"README has no {name} markers"
    return text.split(start, 1)[1].split(end, 1)[0]


@pytest.mark.parametrize("name", sorted(TABLES))
def test_generated_tables_are_current(name):
    assert generated(name) == TABLES[name]().strip(), "regenerate with: python -m hwosim_assets_tests.test_readme"


def test_ci_runs_the_readme_test_command():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "pip install -e '.[test]' && pytest" in README.read_text()
    assert "grep -m1" in ci and "README.md" in ci


if __name__ == "__main__":  # rewrite the generated tables in place
    text = README.read_text()
    for name, make in TABLES.items():
        start, end = f"<!-- {name} -->\n", f"\n<!-- /{name} -->"
        head, rest = text.split(start, 1)
        text = head + start + make().strip() + end + rest.split(end, 1)[1]
    README.write_text(text)
