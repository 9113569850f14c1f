"""Exact cosine matching of small problems: the whole float64 cosine matrix and scipy's Hungarian.

Up to `assignment.DENSE_MAX_PAIRS` pairs the matrix fits easily in memory and one float64 GEMM plus
`scipy.optimize.linear_sum_assignment` beats the certified sparse path (benchmarks/RESULTS.md, "First
use"). Nothing here calls a numba kernel, so a first `compare` of small SAEs compiles nothing. The row and
column maxima come from the same matrix, so MMCS in both directions costs no second product. Several
problems are scheduled as products first (all cores), then one single-threaded Hungarian solve per core:
a solve running beside a product slows the product's threads far more than it gains.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from saeseeds.align.similarity import as_weight, inverse_norms, row_norms
from saeseeds.errors import DataError

ROW_CHUNK = 2048
"""Rows of `a` per float64 GEMM: bounds the float64 copy of `a` made at any one time."""


class DenseMatch(NamedTuple):
    """Partner of every row of a (-1 when unmatched), its cosine (NaN when unmatched), total, row and
    column maxima of the cosine matrix (NaN for an empty side)."""

    partner: np.ndarray
    cosine: np.ndarray
    total: float
    row_max: np.ndarray
    col_max: np.ndarray


def dense_cosines(
    a: torch.Tensor | np.ndarray,
    b: torch.Tensor | np.ndarray,
    *,
    absolute: bool = False,
    device: torch.device | None = None,
) -> np.ndarray:
    """Cosine of every row of `a` with every row of `b` as float64 [n_a, n_b] (|cosine| with `absolute`).

    Products of float32 numbers are exact in float64, so only the float64 summation rounds: the same
    values the sparse path calls exact. Zero rows have cosine 0 with everything. `device` is the comparison's,
    already resolved (`ScreenPlan.device`); None means the CPU.
    """
    wa, wb = as_weight(a, "a"), as_weight(b, "b")
    if wa.shape[1] != wb.shape[1]:
        raise DataError(f"row sets must share d_in; got shapes {tuple(wa.shape)} and {tuple(wb.shape)}")
    dev = torch.device("cpu") if device is None else device
    inv_a = inverse_norms(row_norms(wa).numpy())
    inv_b = inverse_norms(row_norms(wb).numpy())
    out = np.empty((wa.shape[0], wb.shape[0]), dtype=np.float64)
    bt = wb.to(dev, torch.float64).t()
    for start in range(0, wa.shape[0], ROW_CHUNK):
        rows = wa[start : start + ROW_CHUNK].to(dev, torch.float64)
        if dev.type == "cpu":  # straight into the result: no second 64 MB block to fault in and copy
            torch.matmul(rows, bt, out=torch.from_numpy(out[start : start + ROW_CHUNK]))
        else:
            out[start : start + ROW_CHUNK] = (rows @ bt).cpu().numpy()
    out *= inv_a[:, None]
    out *= inv_b[None, :]
    if absolute:
        np.abs(out, out=out)
    return out


def dense_match(
    a: torch.Tensor | np.ndarray,
    b: torch.Tensor | np.ndarray,
    *,
    absolute: bool = False,
    device: torch.device | None = None,
) -> DenseMatch:
    """The one-to-one matching of rows of `a` to rows of `b` with the largest summed cosine (exact)."""
    return match_matrix(dense_cosines(a, b, absolute=absolute, device=device))


def dense_matches(
    problems: Sequence[tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]],
    *,
    absolute: bool = False,
    device: torch.device | None = None,
) -> list[DenseMatch]:
    """`dense_match` of several (a, b) problems, `solve_threads()` at a time: their products first (each on
    all cores), then their Hungarian solves side by side (each single-threaded; scipy releases the GIL), so a
    pair's decoder and encoder solves run on two cores at once and at most that many matrices are held."""
    width = solve_threads(len(problems))
    out: list[DenseMatch] = []
    with ThreadPoolExecutor(max_workers=width) as solver:
        for start in range(0, len(problems), width):
            mats = [dense_cosines(a, b, absolute=absolute, device=device)
                    for a, b in problems[start : start + width]]
            out.extend(solver.map(match_matrix, mats))
            del mats
    return out


def solve_threads(problems: int) -> int:
    """Hungarian solves to run at once: one per CPU thread torch may use (`--threads`), at most one per problem."""
    return max(1, min(problems, torch.get_num_threads()))


def match_matrix(mat: np.ndarray) -> DenseMatch:
    """The maximum-total matching of a cosine matrix's rows to its columns, with its row and column maxima."""
    n_a, n_b = mat.shape
    partner = np.full(n_a, -1, dtype=np.int64)
    cosine = np.full(n_a, np.nan)
    if mat.size:
        rows, cols = linear_sum_assignment(mat, maximize=True)
        partner[rows] = cols
        cosine[rows] = mat[rows, cols]
    row_max = mat.max(axis=1) if n_b else np.full(n_a, np.nan)
    col_max = mat.max(axis=0) if n_a else np.full(n_b, np.nan)
    return DenseMatch(partner, cosine, float(np.nansum(cosine)), row_max, col_max)

