"""CPU kernels (numba) of the pair scorer: int8 quantisation with its exact error, and exact pair cosines.

Both run one row (or pair) per iteration in parallel and never build float64 copies of the
matrices; at 32,768 x 768 they replace ~2 s of torch temporaries per matching.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

import saeseeds.numba_cache  # noqa: F401  (a writable cache dir before the kernels are defined)

EXACT_FAST = {"reassoc", "nsz"}
"""Exact dots may be summed in any order (vectorised): every product of float32 numbers is exact in
float64, so only the float64 summation rounds, whatever its order."""


@njit(parallel=True, cache=True)
def quantise_int8(
    w: np.ndarray,
    q: np.ndarray,
    scale: np.ndarray,
    norms: np.ndarray,
    err: np.ndarray,
    low_norm: np.ndarray,
) -> int:
    """Per-row symmetric int8 quantisation of float32 rows, with exact (float64) measures of its error.

    ``q[i] = round(w[i] / scale[i])`` (half to even, clamped to +-127) with ``scale[i] = max|w[i]| /
    127`` rounded to float32; ``norms[i] = ||w[i]||``; ``err[i] = ||w[i] - scale[i] q[i]|| / norms[i]``
    and ``low_norm[i] = ||scale[i] q[i]|| / norms[i]`` (0 for zero rows). Returns the first row holding
    NaN or inf, or -1.
    """
    n, d = w.shape
    bad = np.full(n, -1, np.int64)
    for i in prange(n):
        peak = 0.0
        sq = 0.0
        for t in range(d):
            x = np.float64(w[i, t])
            if not np.isfinite(x):
                bad[i] = i
            peak = max(peak, abs(x))
            sq += x * x
        norm = np.sqrt(sq)
        sc = np.float32(peak / 127.0)
        safe = np.float64(sc) if sc > 0 else 1.0
        inv = 1.0 / norm if norm > 0 else 0.0
        e2 = 0.0
        l2 = 0.0
        for t in range(d):
            x = np.float64(w[i, t])
            k = min(127.0, max(-127.0, np.round(x / safe)))
            q[i, t] = np.int8(k)
            recon = k * np.float64(sc)
            e2 += ((x - recon) * inv) ** 2
            l2 += (recon * inv) ** 2
        scale[i] = sc
        norms[i] = norm
        err[i] = np.sqrt(e2)
        low_norm[i] = np.sqrt(l2)
    for i in range(n):
        if bad[i] >= 0:
            return i
    return -1


@njit(parallel=True, fastmath=EXACT_FAST, cache=True)
def exact_dots(
    a: np.ndarray,
    b: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    inv_a: np.ndarray,
    inv_b: np.ndarray,
    absolute: bool,
    out: np.ndarray,
) -> None:
    """``out[k] = (a[rows[k]] . b[cols[k]]) * inv_a[rows[k]] * inv_b[cols[k]]`` in float64 (|.| when asked)."""
    d = a.shape[1]
    for k in prange(len(rows)):
        r = rows[k]
        c = cols[k]
        acc = 0.0
        for t in range(d):
            acc += np.float64(a[r, t]) * np.float64(b[c, t])
        x = acc * inv_a[r] * inv_b[c]
        out[k] = abs(x) if absolute else x
