"""The safe YAML reader of the user's config files: plain data only, bounded, no duplicate keys."""

import time

import pytest

from hwosim_assets.perturb import ProfileError, load_profiles
from hwosim_assets.stream.config import StreamConfigError, load_streams
from hwosim_assets.userconfig import MAX_BYTES, MAX_DEPTH, ConfigFileError, DuplicateKeyError, read_text, read_yaml

# 9 levels of 9 aliases: 9**9 (387 million) strings once expanded.
ALIAS_BOMB = "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
    f"{b}: &{b} [{','.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=False)
)


def test_plain_data_reads_as_pyyaml_reads_it():
    text = "a: 1\nb: [x, 2.5, true, null, 0x10]\nc: {d: 'e'}\n"
    assert read_yaml(text) == {"a": 1, "b": ["x", 2.5, True, None, 16], "c": {"d": "e"}}
    assert read_yaml("") is None


def test_timestamps_and_merge_keys_stay_text():
    assert read_yaml("start: 2026-01-01T00:00:00Z\n<<: x\n") == {"start": "2026-01-01T00:00:00Z", "<<": "x"}


@pytest.mark.parametrize("loader, error", [(load_profiles, ProfileError), (load_streams, StreamConfigError)])
def test_alias_bomb_is_refused_at_once(tmp_path, loader, error):
    assert len(ALIAS_BOMB) < 420
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    began = time.perf_counter()
    with pytest.raises(error, match="anchors .* are not allowed") as raised:
        loader(path)
    assert time.perf_counter() - began < 1.0
    assert str(raised.value).startswith(f"{path}: line 1:")


def test_alias_bomb_is_refused_before_anything_is_expanded():
    began = time.perf_counter()
    with pytest.raises(ConfigFileError, match=r"^line 1: YAML anchors \(&a\) are not allowed"):
        read_yaml(ALIAS_BOMB)
    assert time.perf_counter() - began < 1.0


@pytest.mark.parametrize(
    "text, problem",
    [
        ("a: &x 1\n", "line 1: YAML anchors (&x) are not allowed"),
        ("a: [1, *x]\n", "line 1: YAML aliases (*x) are not allowed"),  # an alias to nothing is still an alias
        ("a: !!binary aGk=\n", "YAML tags (tag:yaml.org,2002:binary) are not allowed"),
        ("a: !!python/name:os.system x\n", "YAML tags"),
        ("a: !local x\n", "YAML tags (!local)"),
        ("? [1, 2]\n: x\n", "line 1: a key must be a single value"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", f"nested deeper than {MAX_DEPTH} levels"),
        ("a:\n" + "".join("  " * n + f"k{n}:\n" for n in range(1, 30)), f"nested deeper than {MAX_DEPTH} levels"),
        ("a: " + "9" * 5000 + "\n", "line 1: integer of 5000 digits"),
        ("a: 1\n---\nb: 2\n", "not valid YAML: expected a single document"),
        ("a: [1\n", "not valid YAML"),
        ("a: \x07\n", "not valid YAML"),
    ],
)
def test_what_a_config_file_does_not_need_is_refused(text, problem):
    with pytest.raises(ConfigFileError) as raised:
        read_yaml(text)
    assert problem in str(raised.value)


@pytest.mark.parametrize(
    "text, path, line",
    [
        ("a: 1\nb: 2\na: 3\n", ("a",), 3),
        ("streams: []\nother: 1\nstreams: [x]\n", ("streams",), 3),
        ("s:\n  - {name: a, name: b}\n", ("s", 0, "name"), 2),
        ("s:\n  - x\n  - p:\n      q: 1\n      q: 2\n", ("s", 1, "p", "q"), 5),
        ("a: {1: x, 0x1: y}\n", ("a", 1), 1),  # the same key as PyYAML's dict would see it
        ("a: {true: x, yes: y}\n", ("a", True), 1),
        ("a: {1: x, true: y}\n", ("a", True), 1),  # True == 1 in a Python dict
    ],
)
def test_duplicate_keys_are_errors_at_any_depth(text, path, line):
    with pytest.raises(DuplicateKeyError) as raised:
        read_yaml(text)
    assert raised.value.path == path and raised.value.line == line
    assert f"duplicate key {path[-1]!r} at line {line}" in str(raised.value)


def test_equal_looking_keys_that_differ_are_not_duplicates():
    assert read_yaml("a: {'1': x, 1: y, 'true': z, false: w}\n") == {"a": {"1": "x", 1: "y", "true": "z", False: "w"}}


def test_size_bound_and_encoding(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * MAX_BYTES + "\n")
    with pytest.raises(ConfigFileError, match="larger than 1,000,000 bytes"):
        read_text(big)
    with pytest.raises(ConfigFileError, match="larger than 1,000,000 characters"):
        read_yaml("a: " + "x" * MAX_BYTES)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("a: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigFileError, match="not UTF-8 text"):
        read_text(latin)
    with pytest.raises(ProfileError, match=f"^{latin}: not UTF-8 text"):
        load_profiles(latin)
