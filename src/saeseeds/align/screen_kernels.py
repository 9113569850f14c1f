"""CPU kernels (numba) that turn raw screen products into candidates, without a float copy of the block.

A raw block holds the int32 (int8 screen) or float32 (fp32 / bf16 screens) products of a row block
against every column; the approximate cosine of pair (i, j) is ``(float32(raw[i, j]) * col_f[j]) *
row_f[i]`` (then its absolute value when asked), exactly the float32 value the torch path in
`candidates.select_block` and `assignment._Proof._rescreen` computes. Fusing the conversion, scaling
and selection into one pass per row saves the float copy and three passes over it (at 32,768
latents: ~1.6 s per screen). Each row is independent, so rows run in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

import saeseeds.numba_cache  # noqa: F401  (a writable cache dir before the kernels are defined)

FAST = {"nnan", "ninf", "nsz"}
"""Fast-math flags that let max-reductions vectorise but never reorder or fuse arithmetic, so the
values are bit-identical to the torch path's."""


@njit(cache=True, inline="always")
def _value(raw: np.ndarray, i: int, j: int, col_f: np.ndarray, row_f: float, absolute: bool) -> float:
    """Approximate cosine of pair (i, j) from its raw product, as float32."""
    x = (np.float32(raw[i, j]) * col_f[j]) * row_f
    return abs(x) if absolute else x


@njit(cache=True)
def kth_largest(x: np.ndarray, k: int) -> float:
    """The value of rank `k` (0 = largest) of `x`, by quickselect; reorders `x` in place."""
    lo = 0
    hi = len(x) - 1
    while lo < hi:
        a, b, c = x[lo], x[(lo + hi) >> 1], x[hi]
        pivot = max(min(a, b), min(max(a, b), c))  # median of three
        i, j = lo, hi
        while i <= j:
            while x[i] > pivot:
                i += 1
            while x[j] < pivot:
                j -= 1
            if i <= j:
                x[i], x[j] = x[j], x[i]
                i += 1
                j -= 1
        # now x[lo..j] >= pivot >= x[i..hi], and everything between equals the pivot
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return x[k]
    return x[k]


@njit(parallel=True, fastmath=FAST, cache=True)
def select_candidates(
    raw: np.ndarray,
    rows: int,
    row_f: np.ndarray,
    col_f: np.ndarray,
    size: int,
    take: int,
    leaders: int,
    slack: np.ndarray,
    absolute: bool,
    out_cols: np.ndarray,
    out_vals: np.ndarray,
    out_lead: np.ndarray,
    count: np.ndarray,
    bound: np.ndarray,
    row_max: np.ndarray,
) -> None:
    """Per row of `raw[:rows]`: group maxima, the top-`take` groups and the values they keep.

    Groups are `size` consecutive columns. ``bound[i]`` is the ``(take+1)``-th largest group maximum
    (-inf when there are at most `take` groups); the `take` groups with the largest maxima are kept
    (ties at the bound: leftmost first), and in them every value ``>= bound[i]`` goes to
    ``out_*[i, :count[i]]``. A value is a leader when it reaches the `leaders`-th largest group
    maximum (or `slack[i]` below the row max). A group maximum is taken before the multiplication by
    the row factor: rounding is monotonic, so it equals the maximum of the group's values.
    """
    n = col_f.shape[0]
    n_groups = (n + size - 1) // size
    full = n // size
    take = min(take, n_groups)
    lead_rank = min(leaders, take)
    for i in prange(rows):
        rf = row_f[i]
        gmax = np.empty(n_groups, np.float32)
        if absolute:
            for g in range(full):
                m = np.float32(-np.inf)
                for j in range(g * size, g * size + size):
                    m = max(m, abs(np.float32(raw[i, j]) * col_f[j]))
                gmax[g] = m * rf
        else:
            for g in range(full):
                m = np.float32(-np.inf)
                for j in range(g * size, g * size + size):
                    m = max(m, np.float32(raw[i, j]) * col_f[j])
                gmax[g] = m * rf
        if full < n_groups:
            m = np.float32(-np.inf)
            for j in range(full * size, n):
                x = np.float32(raw[i, j]) * col_f[j]
                m = max(m, abs(x) if absolute else x)
            gmax[full] = m * rf
        row_max[i] = gmax.max()
        scratch = gmax.copy()
        b = kth_largest(scratch, take) if n_groups > take else np.float32(-np.inf)
        bound[i] = b
        kept = np.empty(take, np.int64)
        kept_max = np.empty(take, np.float32)
        nk = 0
        for g in range(n_groups):
            if gmax[g] > b:
                kept[nk] = g
                kept_max[nk] = gmax[g]
                nk += 1
        for g in range(n_groups):  # groups tied at the bound fill the remaining places, leftmost first
            if nk == take:
                break
            if gmax[g] == b:
                kept[nk] = g
                kept_max[nk] = b
                nk += 1
        level = min(kth_largest(kept_max, lead_rank - 1), row_max[i] - slack[i])
        c = 0
        for q in range(nk):
            g = kept[q]
            for j in range(g * size, min(g * size + size, n)):
                x = _value(raw, i, j, col_f, rf, absolute)
                if x >= b:
                    out_cols[i, c] = j
                    out_vals[i, c] = x
                    out_lead[i, c] = x >= level
                    c += 1
        count[i] = c


@njit(parallel=True, fastmath=FAST, cache=True)
def values_above(
    raw: np.ndarray,
    rows: int,
    row_f: np.ndarray,
    col_f: np.ndarray,
    skip: np.ndarray,
    use_skip: bool,
    lhs: np.ndarray,
    col_lhs: np.ndarray,
    absolute: bool,
    count: np.ndarray,
    offset: np.ndarray,
    out_rows: np.ndarray,
    out_cols: np.ndarray,
    out_vals: np.ndarray,
) -> None:
    """Per row of `raw[:rows]`, over columns not marked in `skip` (when `use_skip`), the values that
    exceed ``lhs[i] + col_lhs[j]``: counted into `count` when `offset` is empty (first pass), else
    written to ``out_*[offset[i]:offset[i + 1]]`` (second pass, `offset` from the counts)."""
    n = col_f.shape[0]
    emit = len(offset) > 0
    for i in prange(rows):
        rf = row_f[i]
        li = lhs[i]
        c = offset[i] if emit else 0
        for j in range(n):
            if use_skip and skip[i, j]:
                continue
            x = _value(raw, i, j, col_f, rf, absolute)
            if x > li + col_lhs[j]:
                if emit:
                    out_rows[c] = i
                    out_cols[c] = j
                    out_vals[c] = x
                c += 1
        if not emit:
            count[i] = c


@njit(parallel=True, cache=True)
def pool_reaches(
    rows: np.ndarray,
    cols: np.ndarray,
    approx: np.ndarray,
    in_graph: np.ndarray,
    err_a: np.ndarray,
    err_b: np.ndarray,
    err_const: float,
    u: np.ndarray,
    v: np.ndarray,
    tolerance: float,
    first: int,
    out: np.ndarray,
) -> None:
    """``out[k - first]``: pool pair k (not yet in the graph) may violate the duals, i.e. its
    approximate value plus its error bound exceeds ``u[row] + v[col] - tolerance``."""
    for k in prange(first, len(rows)):
        if in_graph[k]:
            out[k - first] = False
            continue
        r = rows[k]
        c = cols[k]
        reach = np.float64(approx[k]) + err_a[r] + err_b[c] + err_const
        out[k - first] = reach > u[r] + v[c] - tolerance


@njit(cache=True)
def pool_count_below(rows: np.ndarray, cols: np.ndarray, key: np.ndarray, theta: np.ndarray, out: np.ndarray) -> None:
    """``out[i]`` += the number of row i's pool pairs (i, j) with ``key[j] < theta[i]``."""
    for k in range(len(rows)):
        if key[cols[k]] < theta[rows[k]]:
            out[rows[k]] += 1


@njit(cache=True)
def pool_by_row(
    rows: np.ndarray, cols: np.ndarray, local_of: np.ndarray, n_local: int
) -> tuple[np.ndarray, np.ndarray]:
    """The pool's columns for the rows with ``local_of[row] >= 0``, grouped by that local index:
    (offsets [n_local + 1], columns int32), a counting sort with no pool-sized temporaries."""
    offsets = np.zeros(n_local + 1, np.int64)
    for k in range(len(rows)):
        loc = local_of[rows[k]]
        if loc >= 0:
            offsets[loc + 1] += 1
    for i in range(n_local):
        offsets[i + 1] += offsets[i]
    fill = offsets[:-1].copy()
    out = np.empty(offsets[n_local], np.int32)
    for k in range(len(rows)):
        loc = local_of[rows[k]]
        if loc >= 0:
            out[fill[loc]] = cols[k]
            fill[loc] += 1
    return offsets, out


@njit(cache=True)
def compact_rows(
    out_cols: np.ndarray, out_vals: np.ndarray, out_lead: np.ndarray, count: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The filled part of `select_candidates`' outputs as flat arrays: (local row, column, value, is-leader)."""
    total = 0
    for i in range(len(count)):
        total += count[i]
    loc = np.empty(total, np.int64)
    col = np.empty(total, np.int32)
    val = np.empty(total, np.float32)
    lead = np.empty(total, np.bool_)
    k = 0
    for i in range(len(count)):
        for t in range(count[i]):
            loc[k] = i
            col[k] = out_cols[i, t]
            val[k] = out_vals[i, t]
            lead[k] = out_lead[i, t]
            k += 1
    return loc, col, val, lead
