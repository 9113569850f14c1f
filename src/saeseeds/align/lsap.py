"""Maximum-weight assignment on a sparse candidate graph, with dual potentials that prove its optimality.

The matching and its duals come from `saeseeds.align.sap` (numba): an eps-scaling auction finds
near-optimal prices, then shortest augmenting paths make the matching exactly optimal with feasible
duals, so that the caller can check pairs that are *not* in the graph against them (``u[i] + v[j]
>= C[i, j]`` for every pair proves the matching optimal on the full matrix) and, after adding the
pairs that fail, solve again starting from the same prices. At 32,768 latents a first solve takes
~0.15 s (scipy's LAPJVsp plus a Bellman-Ford for the duals: 6 s) and a later one ~0.05-0.15 s.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import maximum_bipartite_matching

from saeseeds.align.sap import (
    NO_PATH,
    assign_cheapest,
    auction_prices,
    augment_rows,
    capped_prices,
    merge_csr,
    minimal_prices,
    resume_auction,
)

AUCTION_EPS = (0.05, 1e-3, 1e-6, 5.0)
"""Auction eps schedule, relative to the largest |value|: first phase cold, first phase warm, last, divisor."""
RESUME_EPS = 1e-4
"""Later solves: eps (relative) of the single auction phase that resumes from the last assignment."""
RESUME_FREE = 1 / 32
"""... taken only when at most this fraction of rows must bid (else the scaled auction runs again)."""
RECTANGULAR_RESTARTS = 20
"""Rectangular problems: free columns that kept a price are reset to 0 this often, then all prices are."""
AUCTION_BIDS_PER_EDGE = 100
"""The auction gives up (and the exact phase starts from zero prices) after this many bids per edge."""


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
    if len(rows) == 0:
        return graph
    new = build_graph(rows, cols, vals, graph.n_rows, graph.n_cols)  # sorted, first value of duplicates
    indptr, merged_cols, merged_vals = merge_csr(graph.indptr, graph.cols, graph.vals, new.indptr, new.cols,
                                                 new.vals)
    return CandidateGraph(indptr, merged_cols, merged_vals, graph.n_rows, graph.n_cols)


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
    method: str = "cold"  # or "warm": resumed from the previous duals
    rows_augmented: int = 0  # rows matched by a shortest-path search in this solve


def solve_sparse_max(graph: CandidateGraph, warm: SparseSolution | None = None) -> SparseSolution:
    """Maximum-total assignment of every row (n_rows <= n_cols) within the graph, with feasible duals.

    Duals satisfy ``u[i] + v[j] >= C[i, j]`` on every graph pair (equality on matched pairs),
    ``v >= 0`` and ``v = 0`` on unmatched columns, so ``sum(u) + sum(v)`` equals the matching's total.
    With `warm` (a solution of the graph before pairs were added) the auction starts from its prices.
    Raises ValueError if the graph has no matching covering all rows.
    """
    if graph.n_rows > graph.n_cols:
        raise ValueError("solve_sparse_max needs n_rows <= n_cols; transpose the problem")
    if graph.n_rows == 0:
        return SparseSolution(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(graph.n_cols))
    prices = warm.v.copy() if warm is not None else np.zeros(graph.n_cols)
    scale = max(1.0, float(np.abs(graph.vals).max(initial=0.0)))
    cold_eps, warm_eps, last_eps, divisor = AUCTION_EPS
    first_eps = (warm_eps if warm is not None else cold_eps) * scale
    max_bids = AUCTION_BIDS_PER_EDGE * (graph.nnz + graph.n_rows)
    resumed = -1
    if warm is not None:  # few rows affected by the added pairs: one phase from the old assignment
        resumed = resume_auction(graph.indptr, graph.cols, graph.vals, prices, warm.col_of_row,
                                 RESUME_EPS * scale, int(RESUME_FREE * graph.n_rows), max_bids)
    if resumed == -2:
        prices[:] = 0.0
    elif resumed == -1 and not auction_prices(graph.indptr, graph.cols, graph.vals, prices, first_eps,
                                              last_eps * scale, divisor, max_bids):
        prices[:] = 0.0
    # exact phase, in minimisation form (the duals are negated back below)
    w = -graph.vals
    u, v = np.empty(graph.n_rows), -prices
    col_of_row = np.empty(graph.n_rows, dtype=np.int64)
    row_of_col = np.empty(graph.n_cols, dtype=np.int64)
    for attempt in range(RECTANGULAR_RESTARTS + 2):
        assign_cheapest(graph.indptr, graph.cols, w, u, v, col_of_row, row_of_col)
        if graph.n_rows == graph.n_cols:
            break
        # rectangular: columns free now stay free or become matched; the free ones need v = 0
        priced = (row_of_col < 0) & (v < 0.0)
        if not priced.any():
            break
        v[priced if attempt < RECTANGULAR_RESTARTS else slice(None)] = 0.0
    free = int(np.count_nonzero(col_of_row < 0))
    stuck = augment_rows(graph.indptr, graph.cols, w, u, v, col_of_row, row_of_col)
    if stuck != NO_PATH:
        raise ValueError(f"the candidate graph has no matching covering row {stuck}")
    prices = np.empty(graph.n_cols)
    if graph.n_rows == graph.n_cols:
        # square: the greatest column duals below 0 (rows keep the largest profits they can)
        capped_prices(graph.indptr, graph.cols, w, v, col_of_row, prices)
    else:
        # rectangular: the least prices >= 0, which are 0 on every unmatched column
        minimal_prices(graph.indptr, graph.cols, w, v, col_of_row, row_of_col, prices)
    rows = graph.row_ids()
    is_match = graph.cols == col_of_row[rows]
    value = np.empty(graph.n_rows)
    value[rows[is_match]] = graph.vals[is_match]
    return SparseSolution(col_of_row, value, value - prices[col_of_row], prices,
                          "warm" if warm is not None else "cold", free)
