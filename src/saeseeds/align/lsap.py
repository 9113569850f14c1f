"""Maximum-weight assignment on a sparse candidate graph, with dual potentials that prove its optimality.

The matching comes from scipy's LAPJVsp (`min_weight_full_bipartite_matching`); the duals are
recovered from it by a vectorised Bellman-Ford over the residual graph, so that the caller can check
pairs that are *not* in the graph against them (``u[i] + v[j] >= C[i, j]`` for every pair proves the
matching optimal on the full matrix).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import maximum_bipartite_matching, min_weight_full_bipartite_matching

from saeseeds.align.sap import (
    NO_PATH,
    augment_rows,
    capped_prices,
    loosen_rows,
    minimal_prices,
)

WEIGHT_GRID = float(2**44)
"""LAPJVsp sees costs rounded to multiples of 1 / WEIGHT_GRID."""
WARM_MAX_FREED = 0.02
"""Resume from the old duals when new pairs free at most this fraction of rows (else solve afresh)."""
LOOSEN_PRICE_TOLERANCE = 1e-12
"""Rectangular warm solves: a free column may keep at most this price (else solve afresh)."""
RELAX_TOLERANCE = 1e-11
"""Bellman-Ford ignores improvements below this (relative): float ties must not cycle for ever."""


class CandidateGraph(NamedTuple):
    """A sparse set of candidate pairs in CSR form (rows sorted, no duplicates) with exact values."""

    indptr: np.ndarray  # [n_rows + 1]
    cols: np.ndarray  # [nnz] int64
    vals: np.ndarray  # [nnz] float64
    n_rows: int
    n_cols: int

    @property
    def nnz(self) -> int:
        """Number of candidate pairs."""
        return len(self.cols)

    def row_ids(self) -> np.ndarray:
        """Row of every stored pair."""
        return np.repeat(np.arange(self.n_rows), np.diff(self.indptr))

    def keys(self) -> np.ndarray:
        """Sorted int64 keys row * n_cols + col, for membership tests."""
        return self.row_ids() * self.n_cols + self.cols


def build_graph(
    rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int, n_cols: int
) -> CandidateGraph:
    """CSR candidate graph from pair lists; duplicated pairs keep their first value."""
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    vals = np.asarray(vals, dtype=np.float64)
    keys = rows * n_cols + cols
    keys, first = np.unique(keys, return_index=True)
    r, c = np.divmod(keys, n_cols)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=n_rows), out=indptr[1:])
    return CandidateGraph(indptr, c, vals[first], n_rows, n_cols)


def merge_graph(
    graph: CandidateGraph, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray
) -> CandidateGraph:
    """The graph with the given pairs added (pairs already present keep their stored value)."""
    return build_graph(
        np.concatenate([graph.row_ids(), rows]),
        np.concatenate([graph.cols, cols]),
        np.concatenate([graph.vals, vals]),
        graph.n_rows,
        graph.n_cols,
    )


def contains(graph: CandidateGraph, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Boolean mask: which of the pairs (rows[k], cols[k]) are in the graph."""
    keys = graph.keys()
    query = np.asarray(rows, dtype=np.int64) * graph.n_cols + np.asarray(cols, dtype=np.int64)
    pos = np.searchsorted(keys, query)
    pos = np.minimum(pos, max(len(keys) - 1, 0))
    return (keys[pos] == query) if len(keys) else np.zeros(len(query), dtype=bool)


def _biadjacency(graph: CandidateGraph, weights: np.ndarray) -> sp.csr_matrix:
    """scipy CSR matrix of the graph holding `weights` (all strictly positive, so none is dropped)."""
    return sp.csr_matrix(
        (weights, graph.cols, graph.indptr), shape=(graph.n_rows, graph.n_cols)
    )


def unmatched_rows_and_cols(graph: CandidateGraph) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns left free by a maximum-cardinality matching of the graph (rows <= cols)."""
    ones = np.ones(graph.nnz, dtype=np.float64)
    match = maximum_bipartite_matching(_biadjacency(graph, ones), perm_type="column")
    free_rows = np.flatnonzero(match < 0)
    used = np.zeros(graph.n_cols, dtype=bool)
    used[match[match >= 0]] = True
    return free_rows, np.flatnonzero(~used)


class SparseSolution(NamedTuple):
    """Optimal matching of the candidate graph (every row matched) and dual potentials."""

    col_of_row: np.ndarray  # [n_rows] int64
    value: np.ndarray  # [n_rows] float64, exact value of each matched pair
    u: np.ndarray  # [n_rows] row potentials
    v: np.ndarray  # [n_cols] column potentials, >= 0, 0 on unmatched columns
    bellman_ford_rounds: int
    method: str = "lapjvsp"  # or "warm": resumed from the previous duals


def solve_sparse_max(
    graph: CandidateGraph,
    warm: SparseSolution | None = None,
    changed_rows: np.ndarray | None = None,
) -> SparseSolution:
    """Maximum-total assignment of every row (n_rows <= n_cols) within the graph, with feasible duals.

    Duals satisfy ``u[i] + v[j] >= C[i, j]`` on every graph pair (equality on matched pairs),
    ``v >= 0`` and ``v = 0`` on unmatched columns, so ``sum(u) + sum(v)`` equals the matching's total.
    With `warm` (the solution before pairs were added to `changed_rows`), when the new pairs break the
    old duals in few rows, the solve resumes from them (`saeseeds.align.sap`): only those rows are
    matched again. Otherwise scipy's LAPJVsp solves from scratch.
    Raises ValueError if the graph has no matching covering all rows.
    """
    if graph.n_rows > graph.n_cols:
        raise ValueError("solve_sparse_max needs n_rows <= n_cols; transpose the problem")
    if graph.n_rows == 0:
        return SparseSolution(
            np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(graph.n_cols), 0
        )
    if warm is not None and changed_rows is not None:
        resumed = _resume(graph, warm, np.unique(np.asarray(changed_rows, dtype=np.int64)))
        if resumed is not None:
            return resumed
    top = float(graph.vals.max())
    # Strictly positive costs on an integer grid of 2**-44: LAPJVsp can loop for ever on float ties
    # that differ in the last bits. The grid costs at most n * 2**-44 of the total; the duals below
    # are recomputed from the exact values, and the proof tolerates that much.
    weights = np.round((top - graph.vals) * WEIGHT_GRID) + WEIGHT_GRID
    rows, cols = min_weight_full_bipartite_matching(_biadjacency(graph, weights))
    col_of_row = np.empty(graph.n_rows, dtype=np.int64)
    col_of_row[rows] = cols
    u, v, value, rounds = _duals(graph, col_of_row)
    return SparseSolution(col_of_row, value, u, v, rounds)


def _resume(graph: CandidateGraph, warm: SparseSolution, changed: np.ndarray) -> SparseSolution | None:
    """Warm solve: loosen the changed rows' duals, re-match freed rows, pick the most robust duals.

    Returns None when a cold solve is better (too many rows freed) or needed (a rectangular problem
    left a freed column with a price, which the certificate does not allow).
    """
    w = -graph.vals  # minimisation form
    u, v = -warm.u, -warm.v
    col_of_row = warm.col_of_row.copy()
    row_of_col = np.full(graph.n_cols, -1, dtype=np.int64)
    row_of_col[col_of_row] = np.arange(graph.n_rows)
    freed = loosen_rows(graph.indptr, graph.cols, w, u, v, col_of_row, row_of_col, changed)
    if freed > WARM_MAX_FREED * graph.n_rows:
        return None  # many long searches: LAPJVsp from scratch is faster
    if augment_rows(graph.indptr, graph.cols, w, u, v, col_of_row, row_of_col) != NO_PATH:
        return None
    prices = np.empty(graph.n_cols)
    if graph.n_rows == graph.n_cols:
        capped_prices(graph.indptr, graph.cols, w, v, col_of_row, prices)
    else:
        if (v[row_of_col < 0] < -LOOSEN_PRICE_TOLERANCE).any():
            return None
        minimal_prices(graph.indptr, graph.cols, w, v, col_of_row, row_of_col, prices)
    rows = graph.row_ids()
    is_match = graph.cols == col_of_row[rows]
    value = np.empty(graph.n_rows)
    value[rows[is_match]] = graph.vals[is_match]
    return SparseSolution(col_of_row, value, value - prices[col_of_row], prices, 0, "warm")


def _duals(
    graph: CandidateGraph, col_of_row: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Dual potentials of an optimal matching: shortest distances in the residual graph.

    For pair (i, j), feasibility ``u_i + v_j >= C_ij`` with ``u_i = C_i,m(i) - v_m(i)`` reads
    ``v_m(i) <= v_j + (C_i,m(i) - C_ij)``: an edge j -> m(i). Unmatched columns are sources at 0.
    """
    n_rows, n_cols = graph.n_rows, graph.n_cols
    rows = graph.row_ids()
    is_match = graph.cols == col_of_row[rows]
    matched_val = np.full(n_rows, np.nan)
    matched_val[rows[is_match]] = graph.vals[is_match]
    length = matched_val[rows] - graph.vals  # edge length j -> m(i)
    starts = graph.indptr[:-1]
    matched = np.zeros(n_cols, dtype=bool)
    matched[col_of_row] = True
    v = np.where(matched, np.inf, 0.0)
    if not (~matched).any():
        v[:] = 0.0  # square problem: a virtual source reaching every column at 0
    rounds = _relax(v, graph.cols, length, starts, col_of_row, limit=n_cols + 1)
    unreached = ~np.isfinite(v)
    if unreached.any():
        # Columns no free column reaches: solve them alone, then lift them above every constraint.
        sub = np.where(unreached, 0.0, np.inf)
        edge_ok = unreached[graph.cols]
        sub_len = np.where(edge_ok, length, np.inf)
        rounds += _relax(sub, graph.cols, sub_len, starts, col_of_row, limit=n_cols + 1)
        sub = np.where(unreached, sub, 0.0)
        # Edges from unreached j into reached m(i) need v_j >= v_m(i) - length.
        target = v[col_of_row[rows]]
        need = np.where(edge_ok & np.isfinite(target), target - length - sub[graph.cols], -np.inf)
        lift = max(0.0, float(-sub[unreached].min()), float(need.max(initial=-np.inf)))
        v = np.where(unreached, sub + lift, v)
    v = np.maximum(v, 0.0) if (~matched).any() else v
    value = matched_val
    u = value - v[col_of_row]
    return u, v, value, rounds


def _relax(
    dist: np.ndarray,
    src: np.ndarray,
    length: np.ndarray,
    starts: np.ndarray,
    dst_of_row: np.ndarray,
    *,
    limit: int,
) -> int:
    """Bellman-Ford in place: dist[m(i)] = min(dist[m(i)], min over row i's edges of dist[j] + len)."""
    for rounds in range(1, limit + 1):
        with np.errstate(invalid="ignore"):
            cand = dist[src] + length
        cand = np.where(np.isnan(cand), np.inf, cand)
        best = np.minimum.reduceat(cand, starts)
        current = dist[dst_of_row]
        with np.errstate(invalid="ignore"):
            slack = np.where(np.isfinite(current), RELAX_TOLERANCE * (1.0 + np.abs(current)), 0.0)
        better = best < current - slack
        if not better.any():
            return rounds
        dist[dst_of_row[better]] = best[better]
    raise RuntimeError("Bellman-Ford did not converge: the sparse matching is not optimal")
