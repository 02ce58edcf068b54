"""Bit-identical output whatever the chunking, order or replay granularity;
different output for a different seed, observation or profile."""

from __future__ import annotations

from functools import cache

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwosim_assets.perturb import load_profiles, parse_profiles, perturb_images, perturb_spectra, reference_time
from hwosim_assets.perturb.kinds.drift import _walk
from hwosim_assets.perturb.kinds.loss import bad_intervals
from hwosim_assets.perturb.rng import Stream
from hwosim_assets.perturb.synthetic import image_table, spectra_table

SEED = 20261124
OBS = "jw02734-o002"


@cache
def every_kind():
    """Level 4 of every kind (dense enough that every kind acts on small tables)."""
    return load_profiles()["level-4"]


@cache
def tables():
    return spectra_table(30, 64), image_table(3, (100, 100), 32)  # edge tiles of 4 px


@cache
def whole(family: str):
    spectra, images = tables()
    if family == "spectra":
        return perturb_spectra(spectra, every_kind(), observation=OBS, seed=SEED)
    return perturb_images(images, every_kind(), observation=OBS, seed=SEED)


def in_pieces(family: str, cuts: list[int], order: list[int]):
    """Perturb packets in chunks (cut at packet boundaries), in a shuffled
    order, then put the rows back; return (data, truth, summary)."""
    spectra, images = tables()
    table = spectra if family == "spectra" else images
    fn = perturb_spectra if family == "spectra" else perturb_images
    t_ref = reference_time(table["event_time"])
    packets = table["seq"].unique(maintain_order=True).to_list()
    bounds = [0, *sorted(set(cuts)), len(packets)]
    chunks = [packets[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    results = {}
    for i in [i for i in order if i < len(chunks)]:
        piece = table.filter(pl.col("seq").is_in(chunks[i]))
        results[i] = fn(piece, every_kind(), observation=OBS, seed=SEED, t_ref=t_ref)
    parts = [results[i] for i in range(len(chunks))]
    data = pl.concat([r.data for r in parts])
    truth = pl.concat([r.truth for r in parts])
    summary = pl.concat([r.summary for r in parts]).sort(["seq", "bit", "kind"], maintain_order=True)
    return data, truth, summary


def chunkings(packets: int):
    return st.tuples(
        st.lists(st.integers(1, packets - 1), max_size=6),
        st.permutations(list(range(7))),
    )


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunking=chunkings(30))
def test_spectra_identical_whatever_the_chunking_and_order(chunking):
    cuts, order = chunking
    data, truth, summary = in_pieces("spectra", cuts, list(order))
    full = whole("spectra")
    assert data.equals(full.data)
    assert truth.equals(full.truth)
    assert summary.equals(full.summary)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunking=chunkings(48))
def test_images_identical_whatever_the_chunking_and_order(chunking):
    cuts, order = chunking
    data, truth, summary = in_pieces("images", cuts, list(order))
    full = whole("images")
    assert data.equals(full.data)
    assert truth.equals(full.truth)
    assert summary.equals(full.summary)


def test_replay_one_packet_at_a_time_matches():
    for family in ("spectra", "images"):
        packets = len(tables()[0 if family == "spectra" else 1]["seq"].unique())
        data, truth, _ = in_pieces(family, list(range(1, packets)), list(range(packets))[::-1])
        assert data.equals(whole(family).data)
        assert truth.equals(whole(family).truth)


def test_many_concurrent_work_units_give_the_same_bytes(monkeypatch):
    from hwosim_assets.perturb import engine

    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 1000)  # one tile per unit of work, two threads
    _, images = tables()
    result = perturb_images(images, every_kind(), observation=OBS, seed=SEED)
    assert result.data.equals(whole("images").data)
    assert result.truth.equals(whole("images").truth)
    assert result.summary.equals(whole("images").summary)


def test_rows_shuffled_within_the_table_give_the_same_packets():
    spectra, _ = tables()
    shuffled = spectra.sample(fraction=1.0, shuffle=True, seed=3)
    result = perturb_spectra(shuffled, every_kind(), observation=OBS, seed=SEED)
    assert result.data.sort(["seq", "channel"]).equals(whole("spectra").data.sort(["seq", "channel"]))


def test_seed_observation_and_profile_each_change_the_output():
    spectra, _ = tables()
    base = whole("spectra").data
    other_seed = perturb_spectra(spectra, every_kind(), observation=OBS, seed=SEED + 1).data
    other_obs = perturb_spectra(spectra, every_kind(), observation=OBS + "x", seed=SEED).data
    edited = parse_profiles("profiles:\n  level-4:\n    all: 4\n    kinds: {read_noise: 5}\n")["level-4"]
    other_profile = perturb_spectra(spectra, edited, observation=OBS, seed=SEED).data
    for other in (other_seed, other_obs, other_profile):
        assert not other["flux"].equals(base["flux"])
    again = perturb_spectra(spectra, every_kind(), observation=OBS, seed=SEED).data
    assert again.equals(base)


@given(st.lists(st.integers(0, 2**40), min_size=1, max_size=20, unique=True), st.integers(0, 5))
def test_stream_rows_depend_on_their_own_index_only(indices, lane):
    full = Stream(12345, np.array(indices)).words(9, lane)
    for i, index in enumerate(indices):
        assert np.array_equal(Stream(12345, np.array([index])).words(9, lane)[0], full[i])


def test_normal_field_of_a_packet_does_not_depend_on_its_neighbours():
    alone = Stream(99, np.array([7])).normal_f32(50_000)
    stacked = Stream(99, np.array([3, 7, 11])).normal_f32(50_000)
    assert np.array_equal(alone[0], stacked[1])


def test_random_walk_and_burst_chain_extend_without_changing_their_start():
    short, long = _walk(5, 1), _walk(5, 4)
    assert np.array_equal(long[: len(short)], short)
    (s1, e1), (s4, e4) = bad_intervals(5, 0.01, 3.0, 1), bad_intervals(5, 0.01, 3.0, 4)
    assert np.array_equal(s4[: len(s1)], s1) and np.array_equal(e4[: len(e1)], e1)


def test_dense_field_does_not_depend_on_the_piece_size():
    stream = Stream(42, np.array([1, 2, 3]))
    whole = np.concatenate([v for _, _, _, v in stream.normal_fields(5000, block=1 << 20)])
    pieces = np.zeros_like(whole)
    for rows, first, last, values in stream.normal_fields(5000, block=1000):
        pieces[rows, first:last] = values
    assert np.array_equal(whole, pieces)


def test_array_api_matches_the_table_path():
    from hwosim_assets.perturb import perturb_tile_stack
    from hwosim_assets.perturb.truth import truth_values

    images = image_table(2, (64, 64), 32)  # one tile shape
    table = perturb_images(images, every_kind(), observation=OBS, seed=SEED)
    shape = (len(images), 32, 32)
    sci = np.frombuffer(b"".join(images["sci"].to_list()), dtype="<f4").reshape(shape).copy()
    err = np.frombuffer(b"".join(images["err"].to_list()), dtype="<f4").reshape(shape).copy()
    truth, result = perturb_tile_stack(
        sci,
        err,
        **{c: images[c].to_numpy() for c in ("seq", "frame", "y0", "x0", "event_time")},
        profile=every_kind(),
        observation=OBS,
        seed=SEED,
    )
    assert sci.tobytes() == b"".join(table.data["sci"].to_list())
    assert err.tobytes() == b"".join(table.data["err"].to_list())
    assert np.array_equal(truth.ravel(), truth_values(table.truth, "images"))
    assert result.summary.equals(table.summary)
