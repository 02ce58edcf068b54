"""Reproducible randomness: every random number is a pure function of its address.

A perturbation must give bit-identical output whatever the chunking, the order
of the packets or the number of workers, and the same again when a stream
replays one packet at a time. So no random generator is ever *advanced* across
packets. Instead each number has an address

    (global seed, profile hash, observation, kind, scope)  -> 64-bit key   (numpy SeedSequence)
    (key, index, lane, counter)                             -> 64-bit word  (SplitMix64)

where ``index`` is the packet ``seq`` (scope ``packet``), the frame or
integration (scope ``epoch``), a time bin or a block of the observation, and
``lane`` separates the different draws a kind makes for one index (counts,
positions, amplitudes...). The word is SplitMix64 (Steele, Lea & Flood 2014)
run from a per-(key, index, lane) start: a counter-based generator, so any
word can be computed directly and whole stacks of packets are drawn in one
vectorised numpy pass, with no per-packet generator objects.

Dense noise fields (millions of values per packet) are the one exception to
"one word per number": four such words seed an SFC64 generator per packet,
whose raw stream (numpy's SFC64, drawn by a compiled loop that reproduces it
word for word: :mod:`hwosim_assets.perturb.kernels`) is drawn in order - still a pure function
of the packet's address, several times cheaper per value.

The distributions are built here from raw words, not taken from
``numpy.random.Generator``, whose algorithms may change between numpy
releases; raw SplitMix64 and SFC64 streams cannot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from functools import lru_cache
from statistics import NormalDist

import numpy as np

from hwosim_assets.perturb.kernels import normal_piece

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Weyl increment of SplitMix64
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_MASK64 = (1 << 64) - 1

SCOPES = {"packet": 1, "epoch": 2, "observation": 3, "time_bin": 4}


def text_id(text: str) -> int:
    """A stable 64-bit integer for a name (observation id, kind name)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


@lru_cache(maxsize=4096)
def stream_key(seed: int, profile_hash: str, observation: str, kind: str, scope: str) -> int:
    """The 64-bit key of one kind's randomness in one scope, mixed by numpy's
    SeedSequence from the global seed, the profile's config hash and the
    observation id (kept: a replay perturbs packet after packet with the same keys)."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    entropy = [int(seed), int(profile_hash, 16), text_id(observation)]
    sequence = np.random.SeedSequence(entropy, spawn_key=(text_id(kind) & 0xFFFFFFFF, SCOPES[scope]))
    return int(sequence.generate_state(1, np.uint64)[0])


def _mix(z: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
    """SplitMix64's output function, in place on a uint64 array."""
    tmp = np.empty_like(z) if scratch is None else scratch
    np.right_shift(z, _S30, out=tmp)
    z ^= tmp
    z *= _M1
    np.right_shift(z, _S27, out=tmp)
    z ^= tmp
    z *= _M2
    np.right_shift(z, _S31, out=tmp)
    z ^= tmp
    return z


def unit_interval(words: np.ndarray) -> np.ndarray:
    """Uniform float64 in the open interval (0, 1) from 64-bit words (53 bits used)."""
    return ((words >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


TAIL_BINS = 8  # outermost table bins per side drawn exactly: |x| > 3.67 sigma, probability 2.4e-4


@lru_cache(maxsize=1)
def normal_table() -> np.ndarray:
    """65,536 equiprobable standard-normal levels (inverse CDF at bin centres), as float32.

    Drawing a Gaussian is then one 16-bit index and one table look-up, four
    per 64-bit word: several times faster than a float32 ziggurat, and the
    dense read-noise field is the single most expensive draw. A table alone
    would cut the tails at 4.3 sigma (its last bin centre), so a 2048^2 frame
    would lack the ~70 pixels beyond that which real Gaussian noise has -
    exactly what outlier detectors are tested on. The outermost
    :data:`TAIL_BINS` bins on each side are therefore only markers: values
    that land there are redrawn exactly from the normal tail beyond
    :func:`tail_start` (:func:`exact_tail`), so the field is a true Gaussian
    to any depth (6 sigma and beyond) at the cost of one pass that finds
    them (2.4e-4 of the values).
    """
    dist = NormalDist()
    levels = np.array([dist.inv_cdf((i + 0.5) / 65536) for i in range(65536)], dtype=np.float64)
    table = levels.astype(np.float32)
    table.setflags(write=False)
    return table


@lru_cache(maxsize=1)
def tail_threshold() -> np.float32:
    """The smallest |level| of the tail markers: a table value is a marker
    exactly when its size is at least this (the levels rise strictly, so
    the innermost markers, bins TAIL_BINS - 1 and 65536 - TAIL_BINS, are
    further out than every other level - whatever rounding did to the
    table's symmetry)."""
    table = normal_table()
    return np.float32(min(-table[TAIL_BINS - 1], table[65536 - TAIL_BINS]))


@lru_cache(maxsize=1)
def tail_start() -> float:
    """|x| beyond which the outermost TAIL_BINS bins of the table lie."""
    return -NormalDist().inv_cdf(TAIL_BINS / 65536)


def exact_tail(u: np.ndarray) -> np.ndarray:
    """Standard-normal values conditioned on x > a (a = :func:`tail_start`),
    one per row of ``u`` (n, 8) uniforms: Marsaglia's (1964) tail method,
    x = sqrt(a^2 - 2 ln u1), accepted when u2 x < a; four tries per value
    (each accepted with probability ~0.93; the fourth is kept regardless,
    a 2e-5 chance that changes no statistic measurable here)."""
    a = tail_start()
    out = np.sqrt(a * a - 2.0 * np.log(u[:, 6]))  # the last try, kept if none before is accepted
    for k in (4, 2, 0):  # earlier tries take precedence
        x = np.sqrt(a * a - 2.0 * np.log(u[:, k]))
        out = np.where(u[:, k + 1] * x < a, x, out)
    return out


def normal_constants() -> tuple[np.ndarray, np.float32, float]:
    """What the compiled field kernels need besides the states: the table,
    the tail-marker level and the tail start."""
    return normal_table(), tail_threshold(), tail_start()


class Stream:
    """Random words addressed by (key, index, lane, counter) for a vector of indices.

    ``Stream(key, seq)`` gives each packet its own sequence; every method
    returns one row per index, and a row never depends on the other indices
    in the call.
    """

    def __init__(self, key: int, index: np.ndarray):
        idx = np.ascontiguousarray(index, dtype=np.int64).view(np.uint64)
        self.index = idx
        self._base = _mix(idx * _GOLDEN ^ np.uint64(key))

    def __len__(self) -> int:
        return len(self.index)

    def _lane_base(self, lane: int) -> np.ndarray:
        return _mix(self._base ^ np.uint64(((lane + 1) * int(_M2)) & _MASK64))

    def words(self, count: int, lane: int = 0) -> np.ndarray:
        """(n, count) uint64 words: counter 0..count-1 of each index."""
        counter = (np.arange(1, count + 1, dtype=np.uint64) * _GOLDEN)[None, :]
        return _mix(self._lane_base(lane)[:, None] + counter)

    def uniform(self, count: int, lane: int = 0) -> np.ndarray:
        """(n, count) float64 uniform in (0, 1)."""
        return unit_interval(self.words(count, lane))

    def normal(self, count: int, lane: int = 0) -> np.ndarray:
        """(n, count) float64 exact standard normals (Box-Muller), for the few
        draws that set amplitudes, shifts and walks."""
        u = unit_interval(self.words(2 * count, lane))
        radius = np.sqrt(-2.0 * np.log(u[:, :count]))
        return radius * np.cos(2.0 * np.pi * u[:, count:])

    def normal_fields(
        self, count: int, lane: int = 0, block: int = 1 << 17, reuse: bool = False
    ) -> Iterator[tuple[slice, int, int, np.ndarray]]:
        """Dense float32 Gaussian fields of ``count`` values per index, yielded
        in cache-sized pieces as (rows, first, last, values[len(rows), last-first]).

        Each index's field comes from its own SFC64 generator (numpy's raw bit
        stream, stable across numpy releases, drawn by the compiled
        :func:`~hwosim_assets.perturb.kernels.normal_piece`) whose 256-bit state is
        four SplitMix64 words of (key, index, lane); every raw word gives four
        normals through the 16-bit table, tails drawn exactly (:func:`normal_table`).
        Values never depend on ``block``.

        ``reuse``: every piece is a view of one buffer, overwritten by the
        next piece (the caller uses each piece before asking for the next).
        A fresh half-megabyte array per piece costs about as much as the
        look-up itself (measured: the allocator hands such blocks back to the
        system, and new pages are faulted in), so the engine's own loops reuse."""
        table, marker, tail_a = normal_constants()
        per_block = max(1, block // count)
        cells = min(per_block, len(self)) * count if per_block > 1 else block
        values_buf = np.empty(cells, dtype=np.float32) if reuse else None
        for rows, first, last, states, tail_keys in self.field_pieces(count, lane, block):
            shape = (len(states), last - first)
            values = (
                np.empty(shape, np.float32) if values_buf is None else values_buf[: shape[0] * shape[1]].reshape(shape)
            )
            normal_piece(states, tail_keys, first, table, marker, tail_a, values)
            yield rows, first, last, values

    def field_pieces(
        self, count: int, lane: int = 0, block: int = 1 << 17
    ) -> Iterator[tuple[slice, int, int, np.ndarray, np.ndarray]]:
        """How :meth:`normal_fields` cuts the fields into pieces of ~``block``
        values, for the compiled kernels that draw them
        (:func:`~hwosim_assets.perturb.kernels.normal_piece`): (rows, first,
        last, states, tail_keys) - the SFC64 states of the rows (k, 4), to be
        advanced in place by the kernel (one field in several pieces carries
        its state from piece to piece), and their tail keys (k,). Several
        whole fields per piece when they are short, else one field in pieces
        that start on a word."""
        states = self.words(4, lane)
        tail_keys = states[:, 0] ^ np.uint64(0xD1B54A32D192ED03)
        per_block = max(1, block // count)
        if per_block > 1:
            for r0 in range(0, len(states), per_block):
                r1 = min(r0 + per_block, len(states))
                yield slice(r0, r1), 0, count, states[r0:r1].copy(), tail_keys[r0:r1]
            return
        span = block - block % 4
        for row in range(len(states)):
            state = states[row : row + 1].copy()
            for first in range(0, count, span):
                yield slice(row, row + 1), first, min(first + span, count), state, tail_keys[row : row + 1]

    def normal_f32(self, count: int, lane: int = 0) -> np.ndarray:
        """(n, count) float32 standard normals: the whole fields of
        :meth:`normal_fields` at once."""
        out = np.empty((len(self.index), count), dtype=np.float32)
        for rows, first, last, values in self.normal_fields(count, lane):
            out[rows, first:last] = values
        return out

    def poisson(self, lam: np.ndarray, lane: int = 0) -> np.ndarray:
        """One Poisson count per index with mean ``lam`` (inverse CDF; Gaussian
        limit with continuity correction above a mean of 200)."""
        lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), self.index.shape)
        u = self.uniform(1, lane)[:, 0]
        counts = np.zeros(lam.shape, dtype=np.int64)
        big = lam > 200
        if big.any():
            z = self.normal(1, lane + 1000)[:, 0]
            counts[big] = np.maximum(0, np.floor(lam[big] + np.sqrt(lam[big]) * z[big] + 0.5)).astype(np.int64)
        small = ~big & (lam > 0)
        if small.any():
            ls, us = lam[small], u[small]
            term = np.exp(-ls)
            cdf = term.copy()
            k = np.zeros(ls.shape, dtype=np.int64)
            active = us > cdf
            n = 0
            while active.any():
                n += 1
                term = term * ls / n
                cdf = cdf + term
                k += active
                active &= us > cdf
                if n > 1000:  # cdf rounding can stall just below u
                    break
            counts[small] = k
        return counts

    def events(self, counts: np.ndarray, width: int, lane: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Ragged draws: ``counts[i]`` events for index i, ``width`` uniforms each.

        Returns (owner, u): owner[e] is the row (0..n-1) event e belongs to and
        u[e] its (width,) uniforms. Event j of a row always gets the same
        numbers, whatever the other rows are.
        """
        counts = np.asarray(counts, dtype=np.int64)
        owner = np.repeat(np.arange(len(counts)), counts)
        first = np.cumsum(counts) - counts
        within = np.arange(len(owner), dtype=np.int64) - first[owner]
        counter = (within[:, None] * width + np.arange(width)[None, :] + 1).astype(np.uint64) * _GOLDEN
        words = _mix(self._lane_base(lane)[owner][:, None] + counter)
        return owner, unit_interval(words)
