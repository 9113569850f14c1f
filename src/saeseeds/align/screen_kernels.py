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

FAST = {"nnan", "ninf", "nsz"}
"""Fast-math flags that let max-reductions vectorise but never reorder or fuse arithmetic, so the
values are bit-identical to the torch path's."""


@njit(cache=True, inline="always")
def _value(raw: np.ndarray, i: int, j: int, col_f: np.ndarray, row_f: float, absolute: bool) -> float:
    """Approximate cosine of pair (i, j) from its raw product, as float32."""
    x = (np.float32(raw[i, j]) * col_f[j]) * row_f
    return abs(x) if absolute else x


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
    maximum (or `slack[i]` below the row max).
    """
    n = col_f.shape[0]
    n_groups = (n + size - 1) // size
    take = min(take, n_groups)
    lead_rank = min(leaders, take)
    for i in prange(rows):
        rf = row_f[i]
        gmax = np.empty(n_groups, np.float32)
        top = np.float32(-np.inf)
        for g in range(n_groups):
            m = np.float32(-np.inf)
            for j in range(g * size, min(g * size + size, n)):
                m = max(m, _value(raw, i, j, col_f, rf, absolute))
            gmax[g] = m
            top = max(top, m)
        row_max[i] = top
        if n_groups > take:
            b = -np.partition(-gmax, take)[take]
        else:
            b = np.float32(-np.inf)
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
        ranked = np.sort(kept_max[:nk])
        level = min(ranked[nk - lead_rank], top - slack[i])
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
def count_above(
    raw: np.ndarray,
    rows: int,
    row_f: np.ndarray,
    col_f: np.ndarray,
    skip: np.ndarray,
    lhs: np.ndarray,
    col_lhs: np.ndarray,
    absolute: bool,
    count: np.ndarray,
    rest_max: np.ndarray,
) -> None:
    """Per row of `raw[:rows]`, over columns not marked in `skip`: how many values exceed
    ``lhs[i] + col_lhs[j]`` (into `count`), and the largest value among the others (into `rest_max`).
    """
    n = col_f.shape[0]
    for i in prange(rows):
        rf = row_f[i]
        li = lhs[i]
        c = 0
        m = np.float32(-np.inf)
        for j in range(n):
            if skip[i, j]:
                continue
            x = _value(raw, i, j, col_f, rf, absolute)
            if x > li + col_lhs[j]:
                c += 1
            else:
                m = max(m, x)
        count[i] = c
        rest_max[i] = m


@njit(parallel=True, fastmath=FAST, cache=True)
def emit_above(
    raw: np.ndarray,
    rows: int,
    row_f: np.ndarray,
    col_f: np.ndarray,
    skip: np.ndarray,
    lhs: np.ndarray,
    col_lhs: np.ndarray,
    absolute: bool,
    offset: np.ndarray,
    out_rows: np.ndarray,
    out_cols: np.ndarray,
    out_vals: np.ndarray,
) -> None:
    """The values `count_above` counted: row i's go to ``out_*[offset[i]:offset[i + 1]]``."""
    n = col_f.shape[0]
    for i in prange(rows):
        rf = row_f[i]
        li = lhs[i]
        c = offset[i]
        for j in range(n):
            if skip[i, j]:
                continue
            x = _value(raw, i, j, col_f, rf, absolute)
            if x > li + col_lhs[j]:
                out_rows[c] = i
                out_cols[c] = j
                out_vals[c] = x
                c += 1
