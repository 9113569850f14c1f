"""The sparse solver: optimal totals and feasible duals, cold, from earlier prices, and without the auction."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

import saeseeds.align.lsap as lsap
from saeseeds.align.lsap import CandidateGraph, build_graph, merge_graph, solve_sparse_max


def random_graph(rng: np.random.Generator, n_rows: int, n_cols: int, per_row: int, ties: bool) -> CandidateGraph:
    """Every row gets `per_row` random columns plus a planted one-to-one pairing (so a matching exists)."""
    rows = np.concatenate([np.repeat(np.arange(n_rows), per_row), np.arange(n_rows)])
    cols = np.concatenate([rng.integers(0, n_cols, n_rows * per_row), rng.permutation(n_cols)[:n_rows]])
    vals = rng.integers(-3, 4, len(rows)) / 4.0 if ties else rng.standard_normal(len(rows))
    return build_graph(rows, cols, vals, n_rows, n_cols)


def scipy_total(graph: CandidateGraph) -> float:
    """Optimum by scipy's LAPJVsp (costs shifted to be positive so none is dropped)."""
    top = graph.vals.max()
    mat = sp.csr_matrix((top - graph.vals + 1.0, graph.cols, graph.indptr), shape=(graph.n_rows, graph.n_cols))
    r, c = min_weight_full_bipartite_matching(mat)
    return float(len(r) * (top + 1.0) - mat[r, c].sum())


def check_certificate(graph: CandidateGraph, sol: lsap.SparseSolution) -> None:
    """A full one-to-one matching whose duals are feasible on the graph and tight on the matching."""
    assert len(np.unique(sol.col_of_row)) == graph.n_rows
    rows = graph.row_ids()
    slack = sol.u[rows] + sol.v[graph.cols] - graph.vals
    assert slack.min() >= -1e-9
    matched = graph.cols == sol.col_of_row[rows]
    assert np.abs(slack[matched]).max() <= 1e-9
    if graph.n_rows < graph.n_cols:
        assert sol.v.min() >= -1e-12
        free = np.ones(graph.n_cols, dtype=bool)
        free[sol.col_of_row] = False
        assert np.abs(sol.v[free]).max(initial=0.0) <= 1e-12
    assert sol.u.sum() + sol.v.sum() == pytest.approx(sol.value.sum(), abs=1e-8)


@pytest.mark.parametrize("shape", [(80, 80), (50, 120), (300, 300)])
def test_warm_start_after_adding_pairs_equals_scipy(shape: tuple[int, int]) -> None:
    """Add pairs (many better than the duals allow), resume from the old duals: still the optimum."""
    rng = np.random.default_rng(sum(shape))
    for trial in range(6):
        graph = random_graph(rng, *shape, per_row=2, ties=trial % 2 == 1)
        sol = solve_sparse_max(graph)
        check_certificate(graph, sol)
        for _ in range(3):
            k = int(rng.integers(1, 2 * shape[0]))
            r = rng.integers(0, shape[0], k)
            c = rng.integers(0, shape[1], k)
            graph = merge_graph(graph, r, c, rng.standard_normal(k) + 1.0)
            sol = solve_sparse_max(graph, warm=sol)
            assert sol.method == "warm"
            check_certificate(graph, sol)
            assert sol.value.sum() == pytest.approx(scipy_total(graph), abs=1e-9)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("shape", [(60, 60), (40, 90), (300, 300)])
def test_cold_solve_matches_scipy(shape: tuple[int, int], ties: bool) -> None:
    rng = np.random.default_rng(shape[0] + ties)
    for _ in range(5):
        graph = random_graph(rng, *shape, per_row=int(rng.integers(1, 6)), ties=ties)
        sol = solve_sparse_max(graph)
        check_certificate(graph, sol)
        assert sol.value.sum() == pytest.approx(scipy_total(graph), abs=1e-9)


def test_no_matching_is_reported() -> None:
    graph = build_graph(np.array([0, 1]), np.array([0, 0]), np.array([1.0, 2.0]), 2, 3)
    with pytest.raises(ValueError, match="no matching"):
        solve_sparse_max(graph)


def greedy_conflicts(graph: CandidateGraph) -> int:
    """Rows whose best column an earlier row already took (the first of equal values wins)."""
    taken: set[int] = set()
    conflicts = 0
    for i in range(graph.n_rows):
        lo, hi = graph.indptr[i], graph.indptr[i + 1]
        best = int(graph.cols[lo + int(np.argmax(graph.vals[lo:hi]))])
        conflicts += best in taken
        taken.add(best)
    return conflicts


@pytest.mark.parametrize("shape", [(120, 120), (70, 150)])
def test_exact_phase_alone_when_the_auction_gives_up(shape: tuple[int, int], monkeypatch) -> None:
    """With no bids allowed the auction fails and the Dijkstra phase starts from zero prices: still optimal."""
    monkeypatch.setattr(lsap, "AUCTION_BIDS_PER_EDGE", 0)
    rng = np.random.default_rng(7)
    for ties in (False, True):
        graph = random_graph(rng, *shape, per_row=3, ties=ties)
        sol = solve_sparse_max(graph)
        assert sol.rows_augmented == greedy_conflicts(graph)  # the exact phase started from zero prices
        check_certificate(graph, sol)
        assert sol.value.sum() == pytest.approx(scipy_total(graph), abs=1e-9)


def test_auction_leaves_few_rows_to_the_exact_phase() -> None:
    """Near-optimal auction prices: most rows take their cheapest column, so few need a search."""
    rng = np.random.default_rng(11)
    graph = random_graph(rng, 2000, 2000, per_row=12, ties=False)
    sol = solve_sparse_max(graph)
    check_certificate(graph, sol)
    assert sol.rows_augmented < 0.5 * graph.n_rows
    assert sol.value.sum() == pytest.approx(scipy_total(graph), abs=1e-8)


@pytest.mark.parametrize("shape", [(300, 300), (200, 260)])
def test_resumed_auction_after_a_few_added_pairs(shape: tuple[int, int], monkeypatch) -> None:
    """A few added pairs: one auction phase from the old assignment (no scaled auction), still optimal."""
    rng = np.random.default_rng(21)
    graph = random_graph(rng, *shape, per_row=4, ties=False)
    sol = solve_sparse_max(graph)

    def no_scaled_auction(*args, **kwargs):
        raise AssertionError("the scaled auction ran")

    monkeypatch.setattr(lsap, "auction_prices", no_scaled_auction)
    for _ in range(5):
        r = rng.integers(0, shape[0], 3)
        c = rng.integers(0, shape[1], 3)
        graph = merge_graph(graph, r, c, rng.standard_normal(3) + 1.5)  # likely to break the duals
        sol = solve_sparse_max(graph, warm=sol)
        check_certificate(graph, sol)
        assert sol.value.sum() == pytest.approx(scipy_total(graph), abs=1e-9)


def test_merge_graph_equals_building_from_all_pairs() -> None:
    """Merging keeps stored values for pairs already present and the first value of new duplicates."""
    rng = np.random.default_rng(5)
    for _ in range(20):
        n_rows, n_cols = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        k0, k1 = int(rng.integers(0, 200)), int(rng.integers(0, 200))
        r0, c0 = rng.integers(0, n_rows, k0), rng.integers(0, n_cols, k0)
        r1, c1 = rng.integers(0, n_rows, k1), rng.integers(0, n_cols, k1)
        v0, v1 = rng.standard_normal(k0), rng.standard_normal(k1)
        merged = merge_graph(build_graph(r0, c0, v0, n_rows, n_cols), r1, c1, v1)
        want = build_graph(np.concatenate([r0, r1]), np.concatenate([c0, c1]), np.concatenate([v0, v1]),
                           n_rows, n_cols)
        np.testing.assert_array_equal(merged.indptr, want.indptr)
        np.testing.assert_array_equal(merged.cols, want.cols)
        np.testing.assert_array_equal(merged.vals, want.vals)
