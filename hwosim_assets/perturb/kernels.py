"""Compiled inner loops (numba) for the per-pixel passes that dominate a
perturbation's cost: the dense Gaussian fields, the electron scale's per-tile
medians, ERR growth, and the pointing jitter's resampling and restoring
variance.

Why compiled: on a 2048^2 frame under ``nominal`` these passes were most of
the engine's work in numpy - many passes over memory each, and many small
calls that hold Python's GIL, so the engine's two worker threads could not
run side by side (measured 1.4x on two cores). Each kernel here is one pass
per piece of data, and releases the GIL for its whole run (``nogil``).

They give the numbers of the numpy code they replaced (tests compare them):
the same SFC64 stream, table and exact tails for the Gaussian fields
(:mod:`hwosim_assets.perturb.rng`), the same lower median for the electron
scale (:mod:`hwosim_assets.perturb.batch`), the same resampled values; ERR
growth within 2 ulp of float64, as before.

Compiled on first use and cached beside this file (``cache=True``); the
first call in a fresh environment takes a few seconds.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # as in rng.py: SplitMix64's Weyl increment and mixing constants
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_DOUBLE_ULP = 2.0**-53


@numba.njit(inline="always")
def _mix(z: np.uint64) -> np.uint64:
    """SplitMix64's output function (rng._mix, one word)."""
    z = z ^ (z >> np.uint64(30))
    z = z * _M1
    z = z ^ (z >> np.uint64(27))
    z = z * _M2
    return z ^ (z >> np.uint64(31))


@numba.njit(inline="always")
def _unit(word: np.uint64) -> float:
    """rng.unit_interval for one word: (0, 1), 53 bits."""
    return (np.float64(word >> np.uint64(11)) + 0.5) * _DOUBLE_ULP


@numba.njit(nogil=True, cache=True)
def _exact_tail(tail_key: np.uint64, position: np.uint64, a: float) -> float:
    """rng.exact_tail for the value at ``position`` of a field whose tail key
    is ``tail_key``: eight uniforms keyed by (key, position), Marsaglia's tail
    method, the first accepted of tries 0, 2, 4, else the last (6)."""
    base = _mix(tail_key ^ (position * _GOLDEN))
    u = np.empty(8)
    for k in range(8):
        u[k] = _unit(_mix(base + np.uint64(k + 1) * _GOLDEN))
    for k in (0, 2, 4):
        x = math.sqrt(a * a - 2.0 * math.log(u[k]))
        if u[k + 1] * x < a:
            return x
    return math.sqrt(a * a - 2.0 * math.log(u[6]))


@numba.njit(nogil=True, cache=True)
def normal_piece(
    states: np.ndarray,
    tail_keys: np.ndarray,
    first: int,
    table: np.ndarray,
    marker: np.float32,
    tail_a: float,
    out: np.ndarray,
) -> None:
    """Standard normals first..first + m of each row's field into ``out`` (k,
    m) float32: row i's SFC64 (``states[i]``, advanced in place by ceil(m/4)
    words) gives four 16-bit table indices per word (its quarters, low
    first); a value at a tail marker (|level| >= ``marker``) is redrawn
    exactly beyond ``tail_a`` with its sign (rng.normal_table). ``first`` is
    a multiple of 4 (pieces start on a word).

    SFC64 is numpy's (Chris Doty-Humphrey's Small Fast Chaotic PRNG,
    numpy/random/src/sfc64/sfc64.h), its state (a, b, c, counter) kept in
    registers while a row is drawn; rows are drawn two at a time, so the
    two generators' dependency chains overlap (half the time of one at a
    time; the same words)."""
    k, m = out.shape
    whole = m - m % 4  # values from whole words
    for i in range(0, k - 1, 2):
        _draw_two(states[i], states[i + 1], table, out[i], out[i + 1], whole)
    if k % 2:  # the last row alone: drawn with a scratch copy of its own state as the second
        spare = states[k - 1].copy()
        _draw_two(states[k - 1], spare, table, out[k - 1], np.empty(whole, np.float32), whole)
    for i in range(k):
        row = out[i]
        if whole < m:  # a last word, partly used
            state = states[i]
            word, state[0], state[1], state[2], state[3] = _sfc64(state[0], state[1], state[2], state[3])
            _quarters(word, table, row, whole, m - whole)
        # the tail markers (2.4e-4 of the values): counted 64 at a time without a branch (vectorised),
        # a block with one looked at value by value
        for j0 in range(0, m, 64):
            block = row[j0 : j0 + 64]
            markers = 0
            for j in range(len(block)):
                markers += abs(block[j]) >= marker
            if markers == 0:
                continue
            for j in range(len(block)):
                value = block[j]
                if abs(value) >= marker:
                    size = _exact_tail(tail_keys[i], np.uint64(first + j0 + j), tail_a)
                    block[j] = np.float32(size if value > 0 else -size)


@numba.njit(inline="always")
def _sfc64(a: np.uint64, b: np.uint64, c: np.uint64, w: np.uint64) -> tuple:
    """One step of SFC64: (word, a, b, c, counter) from the state (a, b, c, counter)."""
    word = a + b + w
    return (
        word,
        b ^ (b >> np.uint64(11)),
        c + (c << np.uint64(3)),
        ((c << np.uint64(24)) | (c >> np.uint64(40))) + word,
        w + np.uint64(1),
    )


@numba.njit(inline="always")
def _quarters(word: np.uint64, table: np.ndarray, out: np.ndarray, j0: int, count: int) -> None:
    """out[j0 + q] = table[16-bit quarter q of word], quarters low first."""
    for q in range(count):
        out[j0 + q] = table[(word >> np.uint64(16 * q)) & np.uint64(0xFFFF)]


@numba.njit(nogil=True, cache=True)
def _draw_two(
    first: np.ndarray, second: np.ndarray, table: np.ndarray, out1: np.ndarray, out2: np.ndarray, whole: int
) -> None:
    """``whole`` / 4 SFC64 words of two generators (states advanced in place),
    four table values each, into out1 and out2."""
    a, b, c, w = first[0], first[1], first[2], first[3]
    a2, b2, c2, w2 = second[0], second[1], second[2], second[3]
    for j0 in range(0, whole, 4):
        word, a, b, c, w = _sfc64(a, b, c, w)
        word2, a2, b2, c2, w2 = _sfc64(a2, b2, c2, w2)
        _quarters(word, table, out1, j0, 4)
        _quarters(word2, table, out2, j0, 4)
    first[0], first[1], first[2], first[3] = a, b, c, w
    second[0], second[1], second[2], second[3] = a2, b2, c2, w2


@numba.njit(nogil=True, cache=True)
def add_normal_piece(
    states: np.ndarray,
    tail_keys: np.ndarray,
    first: int,
    table: np.ndarray,
    marker: np.float32,
    tail_a: float,
    sigma: np.ndarray,
    deferred: np.ndarray,
    values: np.ndarray,
    kept: np.ndarray,
) -> None:
    """values += s x N(0, 1) on a (k, m) piece, the normals those
    :func:`normal_piece` gives (drawn into a buffer of the piece's size,
    which stays in cache), the product rounded to the values' precision
    before the sum, as numpy's ``noise *= s; values += noise``. s is
    ``sigma`` ((k, m), a broadcast view is fine), or sqrt(sigma^2 +
    deferred) where ``deferred`` (k, m) is not empty: a second variance
    drawn in the same field; ``sigma`` (k, 1) for one per row.
    ``kept`` (k, m), or empty: the noise added."""
    k, m = values.shape
    normals = np.empty((k, m), np.float32)  # a piece (~BLOCK values) stays in cache
    normal_piece(states, tail_keys, first, table, marker, tail_a, normals)
    noise = np.empty(m, values.dtype)
    for i in range(k):
        z = normals[i]
        if sigma.shape[1] == 1:  # one sigma for the row: a scalar, so the loops are vectorised
            _scaled(z, sigma[i, 0], deferred[i] if deferred.size else deferred[0, :0], noise)
        else:
            _scaled_each(z, sigma[i], deferred[i] if deferred.size else deferred[0, :0], noise)
        row = values[i]
        for j in range(m):
            row[j] += noise[j]
        if kept.size:
            kept[i] = noise


@numba.njit(nogil=True, cache=True)
def _scaled(z: np.ndarray, sigma: float, deferred: np.ndarray, out: np.ndarray) -> None:
    """out = z x sigma, or z x sqrt(sigma^2 + deferred) where ``deferred`` is not empty."""
    if deferred.size:
        square = sigma * sigma
        for j in range(len(z)):
            out[j] = z[j] * np.sqrt(square + deferred[j])
    else:
        for j in range(len(z)):
            out[j] = z[j] * sigma


@numba.njit(nogil=True, cache=True)
def _scaled_each(z: np.ndarray, sigma: np.ndarray, deferred: np.ndarray, out: np.ndarray) -> None:
    """:func:`_scaled` with a sigma per element."""
    if deferred.size:
        for j in range(len(z)):
            out[j] = z[j] * np.sqrt(sigma[j] * sigma[j] + deferred[j])
    else:
        for j in range(len(z)):
            out[j] = z[j] * sigma[j]


@numba.njit(nogil=True, cache=True)
def _blend_line(source: np.ndarray, base: int, frac: np.float32, keep: np.float32, out: np.ndarray) -> None:
    """out[i] = keep x source[clip(i + base)] + frac x source[clip(i + base + 1)]
    (each product rounded, then the sum), edges repeated; a zero ``frac``
    copies source[clip(i + base)] (no NaN neighbour pulled in)."""
    size = len(source)
    low = min(max(-base, 0), size)  # i below: clipped at the first pixel
    high = max(min(size - base - 1, size), low)  # i from here: clipped at the last
    for i in range(low):
        _blend_at(source, i, base, frac, keep, out)
    # the interior, branch-free, through views indexed from 0 (an index that might be negative is
    # checked for wrap-around at every access, which keeps the loop from being vectorised)
    target, near, far = out[low:high], source[low + base : high + base], source[low + base + 1 : high + base + 1]
    if frac == 0:
        target[:] = near
    else:
        for i in range(len(target)):
            target[i] = near[i] * keep + far[i] * frac
    for i in range(high, size):
        _blend_at(source, i, base, frac, keep, out)


@numba.njit(inline="always")
def _blend_at(source: np.ndarray, i: int, base: int, frac: np.float32, keep: np.float32, out: np.ndarray) -> None:
    """:func:`_blend_line` at one index, both taps clipped to the line."""
    size = len(source)
    near = source[min(max(i + base, 0), size - 1)]
    far = source[min(max(i + base + 1, 0), size - 1)]
    out[i] = near if frac == 0 else near * keep + far * frac


@numba.njit(nogil=True, cache=True)
def shift_bilinear(planes: np.ndarray, base_y: int, frac_y: np.float32, base_x: int, frac_x: np.float32) -> None:
    """Bilinear resampling of (k, ny, nx) tiles in place, edges clamped: a
    blend along y (:func:`_blend_line` of each column, weights 1 - frac_y and
    frac_y at offsets base_y and base_y + 1), then along x - the arithmetic
    of the numpy blends it replaces, value for value."""
    k, ny, nx = planes.shape
    keep_y, keep_x = np.float32(1) - frac_y, np.float32(1) - frac_x
    along_y = np.empty((ny, nx), planes.dtype)
    for t in range(k):
        tile = planes[t]
        for y in range(ny):  # along y: whole rows, so the loop over x is vectorised
            near = tile[min(max(y + base_y, 0), ny - 1)]
            if frac_y == 0:
                along_y[y] = near
            else:
                far = tile[min(max(y + base_y + 1, 0), ny - 1)]
                row = along_y[y]
                for x in range(nx):
                    row[x] = near[x] * keep_y + far[x] * frac_y
        for y in range(ny):
            _blend_line(along_y[y], base_x, frac_x, keep_x, tile[y])


@numba.njit(nogil=True, cache=True)
def restoring_variance(error: np.ndarray, kept_share: np.ndarray, out: np.ndarray) -> None:
    """out = ERR^2 x (1 - kept) per element of (n, m) float32 (``kept_share``
    (n,) holds 1 - kept, the share of the noise variance resampling lost), in
    float32 as numpy computes it; NaN gives 0 (no noise where ERR is NaN) and
    an ERR whose square overflows gives the largest float32 (a huge noise,
    never inf)."""
    n, m = error.shape
    largest = np.float32(np.finfo(np.float32).max)
    for i in range(n):
        share = kept_share[i]
        row, target = error[i], out[i]
        for j in range(m):
            e = row[j]
            variance = (e * e) * share
            variance = variance if variance >= 0 else np.float32(0)
            target[j] = variance if variance < largest else largest


@numba.njit(nogil=True, cache=True)
def _grow_line(error: np.ndarray, added: np.ndarray, column: np.ndarray) -> None:
    """:func:`grow_error` on one line (1-D views; ``added`` as long, or of
    length 1 for one figure for the whole line)."""
    m = len(error)
    if len(added) == 1:  # one figure for the line: a scalar, so the loops are vectorised
        extra = added[0]
        unsafe = 0 if 1e-30 <= extra <= 1e36 else 1
        for j in range(m):
            unsafe += abs(error[j]) >= np.float32(1e18)  # counted without a branch
        if unsafe == 0:
            extra32 = np.float32(extra)
            for j in range(m):
                e = error[j]
                error[j] = np.sqrt(e * e + extra32)
        else:
            for j in range(m):
                wide = np.float64(error[j])
                error[j] = np.float32(np.sqrt(wide * wide + extra))
        if column.size > 0:
            extra32 = np.float32(extra)
            for j in range(m):
                column[j] += extra32
        return
    unsafe = 0
    for j in range(m):
        extra = added[j]
        unsafe += (abs(error[j]) >= np.float32(1e18)) | (extra < 1e-30) | (extra > 1e36)
    if unsafe == 0:
        for j in range(m):
            e = error[j]
            error[j] = np.sqrt(e * e + np.float32(added[j]))
    else:
        for j in range(m):
            wide = np.float64(error[j])
            error[j] = np.float32(np.sqrt(wide * wide + added[j]))
    if column.size > 0:
        for j in range(m):
            column[j] += np.float32(added[j])


@numba.njit(nogil=True, cache=True)
def grow_error(error: np.ndarray, added: np.ndarray, column: np.ndarray) -> None:
    """ERR = sqrt(ERR^2 + added) in place on (n, a, b) float32 stacks, and
    ``column`` (a float32 VAR_* plane shaped like ERR, or empty) += added,
    line by line (error[i, y]). ``added``: float64 data units^2, (n or 1, a
    or 1, b or 1) - numpy's broadcasting, without its zero strides (which
    keep a loop from being vectorised). A line where ERR^2 + added can
    neither overflow nor lose precision in float32 (every |ERR| < 1e18,
    every added within [1e-30, 1e36]) is computed in float32 - within 2 ulp
    of the float64 figure, at a third of its cost; any other line in
    float64, rounded once. NaN stays NaN."""
    n, a, _ = error.shape
    has_column = column.size > 0
    for i in range(n):
        ai = i if added.shape[0] > 1 else 0
        for y in range(a):
            line = added[ai, y if added.shape[1] > 1 else 0]
            _grow_line(error[i, y], line, column[i, y] if has_column else column[0, 0, :0])


@numba.njit(nogil=True, cache=True)
def _select(values: np.ndarray, k: int) -> float:
    """The k-th smallest of ``values`` (reordered in place): Hoare's
    quickselect with a median-of-three pivot - the element np.partition
    would put at k."""
    low, high = 0, len(values) - 1
    while high > low:
        mid = (low + high) // 2
        if values[mid] < values[low]:
            values[mid], values[low] = values[low], values[mid]
        if values[high] < values[low]:
            values[high], values[low] = values[low], values[high]
        if values[high] < values[mid]:
            values[high], values[mid] = values[mid], values[high]
        pivot = values[mid]
        i, j = low, high
        while i <= j:
            while values[i] < pivot:
                i += 1
            while pivot < values[j]:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if k <= j:
            high = j
        elif k >= i:
            low = i
        else:
            return values[k]
    return values[k]


@numba.njit(nogil=True, cache=True)
def _select_bracketed(values: np.ndarray, k: int, scratch: np.ndarray) -> float:
    """The k-th smallest of ``values`` (not reordered), as :func:`_select`
    gives it, at less than half its cost on a few thousand values (Floyd &
    Rivest's idea, 1975): two order statistics of a regular sample of ~256
    bracket the answer; one pass with no data-dependent branch counts the
    values below the bracket and gathers those inside it (about a tenth)
    into ``scratch`` (as long as ``values``), where the answer is selected.
    Should the bracket miss (a few % of calls), the whole is selected."""
    n = len(values)
    if n < 512:
        return _select(values.copy(), k)
    sample = values[:: n // 256].copy()
    s = len(sample)
    near = k * s // n
    spread = int(math.sqrt(s)) + 2  # ~2 sigma of the sample rank of the k-th value
    first = max(near - spread, 0)
    low = _select(sample, first)
    high = _select(sample[first:], min(near + spread, s - 1) - first)  # the selection left the rest >= low
    below = 0
    inside = 0
    for i in range(n):
        x = values[i]
        below += x < low
        scratch[inside] = x
        inside += (x >= low) & (x <= high)
    if below <= k < below + inside:
        return _select(scratch[:inside], k - below)
    return _select(values.copy(), k)


@numba.njit(nogil=True, cache=True)
def bright_medians(
    value: np.ndarray, error: np.ndarray, numerator: np.ndarray, use_err: bool, step: int, min_snr: np.float32
) -> np.ndarray:
    """Per tile (n, ny, nx), the lower median of numerator / value over the
    sub-grid [::step, ::step] of bright samples - batch._ratio and
    batch._lower_median in one pass: a sample counts where value > min_snr
    |ERR| (in ERR's precision, as numpy computes it), value < inf and 0 <
    numerator < inf; ``use_err``: the numerator is ERR^2 (float64) and
    ``numerator`` is not read, else it is ``numerator`` (VAR_POISSON). NaN
    for a tile with no bright sample."""
    n, ny, nx = value.shape
    out = np.empty(n)
    ratios = np.empty(((ny + step - 1) // step) * ((nx + step - 1) // step))
    scratch = np.empty_like(ratios)
    for t in range(n):
        good = 0
        for y in range(0, ny, step):
            for x in range(0, nx, step):
                v = value[t, y, x]
                e = error[t, y, x]
                size = abs(e)
                if not (v > size * min_snr and v < np.inf):
                    continue
                if use_err:
                    if not size > 0:
                        continue
                    top = np.float64(e) * np.float64(e)
                else:
                    top = np.float64(numerator[t, y, x])
                    if not (top > 0 and top < np.inf):
                        continue
                ratios[good] = top / np.float64(v)
                good += 1
        out[t] = _select_bracketed(ratios[:good], (good - 1) // 2, scratch) if good else np.nan
    return out
