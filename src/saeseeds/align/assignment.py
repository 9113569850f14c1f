"""Exact maximum-total-cosine one-to-one matching of two sets of rows, without the dense matrix.

Small problems go to scipy's dense `linear_sum_assignment` (`saeseeds.align.dense`; also moderate ones while
the numba kernels below are not compiled yet, see `solve_densely`). Large ones: (1) a chunked screen keeps
each row's top candidates and a bound on everything it dropped; (2) the sparse problem is solved with
dual potentials; (3) every dropped pair is checked against the duals (by its bound, or by a second,
fp32 screen of the rows and columns the bound cannot clear, then exactly); pairs that violate them
join the candidates and (2)-(3) repeat. When no pair violates the duals the matching is optimal on the full
matrix: its total equals the dense optimum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from saeseeds.align import row_kernels, sap, screen_kernels
from saeseeds.align.candidates import Pool, screen_pool
from saeseeds.align.dense import dense_cosines, dense_matches
from saeseeds.align.lsap import (
    CandidateGraph,
    SparseSolution,
    build_graph,
    merge_graph,
    solve_sparse_max,
    unmatched_rows_and_cols,
)
from saeseeds.align.screen_choice import ScreenPlan, plan_screen
from saeseeds.align.screen_kernels import (
    pool_by_row,
    pool_count_below,
    pool_reaches,
    values_above,
)
from saeseeds.align.similarity import PairScorer, ScreenMode
from saeseeds.numba_cache import kernel_state
from saeseeds.progress import tqdm

DUAL_TOLERANCE = 1e-10
"""A dropped pair counts as violating the duals when C > u + v + this (float64 rounding headroom)."""
DENSE_MAX_PAIRS = 1 << 20
"""Problems up to this many pairs (1024 x 1024) are always solved densely: above it the warm sparse path is
faster (at 2048 x 2048, d_in 768: 0.08 s against 0.38 s; benchmarks/RESULTS.md, "First use")."""
COLD_DENSE_MAX_PAIRS = 1 << 24
"""Problems up to this many pairs (4096 x 4096) are solved densely too while the sparse path's numba kernels are
not loaded in this process: compiling them costs ~15 s of CPU, loading them from numba's cache a few tenths
of a second plus slower first calls, a dense 4096 x 4096 solve 0.5-2.6 s (benchmarks/RESULTS.md, "First
use": a fresh `compare` process at 4,096 latents is as fast or faster dense even with the kernels cached)."""
COLD_DENSE_BUDGET_PAIRS = {"cold": 6 << 24, "cached": 2 << 24}
"""Pairs a process solves densely for want of loaded kernels before it compiles (cold) or loads (cached)
them after all: ski rental, paying the dense price until it reaches about the cost of buying the kernels."""
_cold_dense_pairs = 0
_SPARSE_KERNELS = (
    row_kernels.exact_dots, sap.auction_prices, sap.augment_rows, sap.capped_prices, sap.merge_csr,
    screen_kernels.select_candidates, screen_kernels.compact_rows,
)
"""Kernels every sparse solve compiles (the rest are small or only used on rarer branches)."""
LEADERS = 16
"""Pool entries scored exactly up front per row: its top screen values (plus any that may be its max).
More make a first graph closer to the optimum (at 32K, first-round violations: 4 -> 291K, 16 -> 61K,
24 -> 15K) but cost exact scoring; with cheap re-solves 16 was fastest (one more round than 24)."""
RESCREEN_MARGIN = 1e-2
"""Re-screens keep pairs within this of u + v (doubling each time a row is re-screened again), so
that small moves of the duals in later rounds need no new screen of the row."""
CANDIDATES = 128
"""Column groups a row keeps in its pool: deep enough that few rows fail their dropped-pair bound."""


@dataclass
class AssignmentStats:
    """How an assignment was found: method, candidate counts and the rounds of the optimality proof."""

    method: str = "dense"
    screen: str = ""
    screen_choice: dict[str, object] = field(default_factory=dict)  # why this screen (screen_choice.as_dict)
    candidates_per_row: int = 0
    initial_pairs: int = 0
    final_pairs: int = 0
    rounds: int = 0
    pairs_added: int = 0
    rows_rescreened: int = 0
    pairs_scored_exactly: int = 0
    fallback_pairs: int = 0
    certified: bool = True
    history: list[dict[str, int]] = field(default_factory=list)


class Assignment(NamedTuple):
    """Partner of every row of `a` (-1 when unmatched), its exact cosine (NaN when unmatched), the total."""

    partner: np.ndarray
    cosine: np.ndarray
    total: float
    stats: AssignmentStats
    row_max: np.ndarray | None = None  # exact max cosine of each row of a over all of b, when asked
    col_max: np.ndarray | None = None  # exact max cosine of each row of b over all of a, when asked


def max_cosine_assignment(
    a: torch.Tensor | np.ndarray,
    b: torch.Tensor | np.ndarray,
    *,
    absolute: bool = False,
    device: str | torch.device | None = None,
    candidates: int = CANDIDATES,
    dense_max_pairs: int | None = None,
    screen: ScreenMode | str | None = None,
    with_row_max: bool = False,
    with_col_max: bool = False,
    progress: bool = False,
) -> Assignment:
    """One-to-one matching of rows of `a` to rows of `b` maximising the summed cosine (exact).

    Cosines are of the float32 rows divided by their float64 norms; with `absolute`, |cosine| is used.
    `with_row_max` also returns each row's exact maximum cosine (for MMCS); `with_col_max` each column's.
    Problems of at most `dense_max_pairs` pairs are solved on the whole matrix (`saeseeds.align.dense`,
    no compiled kernels; default `DENSE_MAX_PAIRS`); larger ones by the certified sparse path.
    """
    return max_cosine_assignments(
        [(a, b)], plan_screen(screen, device), absolute=absolute, candidates=candidates,
        dense_max_pairs=dense_max_pairs, with_row_max=with_row_max, with_col_max=with_col_max, progress=progress,
    )[0]


def max_cosine_assignments(
    problems: Sequence[tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]],
    plan: ScreenPlan,
    *,
    absolute: bool = False,
    candidates: int = CANDIDATES,
    dense_max_pairs: int | None = None,
    with_row_max: bool | Sequence[bool] = False,
    with_col_max: bool | Sequence[bool] = False,
    progress: bool = False,
) -> list[Assignment]:
    """`max_cosine_assignment` of several (a, b) problems; those solved densely overlap (`dense_matches`).
    `with_row_max` / `with_col_max` may be given per problem. `plan` is the comparison's device and screen,
    resolved once at its top (`plan_screen`)."""
    n = len(problems)
    row_maxes = [with_row_max] * n if isinstance(with_row_max, bool) else list(with_row_max)
    col_maxes = [with_col_max] * n if isinstance(with_col_max, bool) else list(with_col_max)
    dense = [solve_densely(_rows(a), _rows(b), dense_max_pairs) for a, b in problems]
    matches = iter(dense_matches([p for p, d in zip(problems, dense) if d], absolute=absolute, device=plan.device))
    out = []
    for (a, b), is_dense, want_row, want_col in zip(problems, dense, row_maxes, col_maxes):
        if is_dense:
            m = next(matches)
            out.append(Assignment(m.partner, m.cosine, m.total, AssignmentStats(method="dense"),
                                  m.row_max if want_row else None, m.col_max if want_col else None))
            continue
        scorer = PairScorer(a, b, plan, absolute=absolute)
        result = certified_assignment(scorer, candidates=candidates, with_row_max=want_row,
                                      progress=progress)
        if want_col:
            result = result._replace(col_max=exact_row_max(scorer.swapped(), progress))
        out.append(result)
    return out


def solve_densely(n_a: int, n_b: int, dense_max_pairs: int | None = None) -> bool:
    """Whether an n_a x n_b problem goes to the dense solver: always up to `dense_max_pairs` (default
    `DENSE_MAX_PAIRS`); by default also up to `COLD_DENSE_MAX_PAIRS` while the sparse kernels are not loaded
    in this process, until it has solved `COLD_DENSE_BUDGET_PAIRS` pairs that way. Both solvers are exact, so
    the choice changes the time, not the matching (but for exact ties)."""
    global _cold_dense_pairs
    pairs = n_a * n_b
    if pairs == 0 or pairs <= (DENSE_MAX_PAIRS if dense_max_pairs is None else dense_max_pairs):
        return True
    if dense_max_pairs is not None or pairs > COLD_DENSE_MAX_PAIRS:
        return False
    state = kernel_state(_SPARSE_KERNELS)
    if state == "loaded" or _cold_dense_pairs + pairs > COLD_DENSE_BUDGET_PAIRS[state]:
        return False
    _cold_dense_pairs += pairs
    return True


def _rows(w: torch.Tensor | np.ndarray) -> int:
    """Number of rows of a weight matrix (its shape is checked where it is used)."""
    return int(w.shape[0]) if w.ndim else 0


def certified_assignment(
    scorer: PairScorer,
    *,
    candidates: int = CANDIDATES,
    with_row_max: bool = False,
    progress: bool = False,
    max_rounds: int = 1000,
) -> Assignment:
    """The sparse path: one screening pass, solve, prove against every dropped pair, repeat until proven.

    Rounds after the first cost no full pass: pool entries are scored exactly only when their bound
    reaches the duals, and only rows whose dropped-pair bound fails are screened again.
    """
    transposed = scorer.n_a > scorer.n_b
    work = scorer.swapped() if transposed else scorer
    stats = AssignmentStats(method="sparse", screen=work.screen, screen_choice=work.choice.as_dict(),
                            candidates_per_row=candidates)
    pool = screen_pool(work, candidates, LEADERS, progress=progress)
    proof = _Proof(work, pool, progress)
    stats.initial_pairs = proof.graph.nnz
    row_max = proof.row_max() if with_row_max and not transposed else None
    proof.cover_columns(candidates)
    solution: SparseSolution | None = None
    while True:
        if solution is None:  # later graphs hold the previous matching: a full one exists
            stats.fallback_pairs += proof.ensure_full_matching()
        solution = solve_sparse_max(proof.graph, warm=solution)  # resumes from the last prices
        stats.rounds += 1
        violations, rescreened = proof.check(solution)
        stats.rows_rescreened += rescreened
        stats.history.append(
            {"pairs": proof.graph.nnz, "violations": violations, "rows_rescreened": rescreened,
             "warm": solution.method == "warm", "rows_augmented": solution.rows_augmented}
        )
        if violations == 0:
            break
        if stats.rounds >= max_rounds:  # pragma: no cover - termination is guaranteed, this is a guard
            stats.certified = False
            break
        stats.pairs_added += violations
    stats.final_pairs = proof.graph.nnz
    stats.pairs_scored_exactly = proof.scored
    partner_work = solution.col_of_row
    cos_work = solution.value
    total = float(cos_work.sum())
    if transposed:
        partner = np.full(scorer.n_a, -1, dtype=np.int64)
        cosine = np.full(scorer.n_a, np.nan)
        partner[partner_work] = np.arange(work.n_a)
        cosine[partner_work] = cos_work
    else:
        partner, cosine = partner_work, cos_work
    if with_row_max and transposed:
        row_max = exact_row_max(scorer, progress)
    return Assignment(partner, cosine, total, stats, row_max)


class _Proof:
    """Candidate pool, exact graph and dropped-pair bounds of one sparse assignment, and their checks."""

    def __init__(self, scorer: PairScorer, pool: Pool, progress: bool) -> None:
        self.sc = scorer
        self.progress = progress
        # pool storage with spare capacity: re-screens append without copying the whole pool
        self._rows_buf, self._cols_buf, self._approx_buf = pool.rows, pool.cols, pool.approx
        self._in_graph_buf = np.zeros(len(pool.rows), dtype=bool)
        self.n_pool = len(pool.rows)
        self.bound = pool.bound.copy()
        self.approx_max = pool.approx_max
        self.scored = 0
        # rows screened again: their dropped pairs obey approx + err <= u_s + v_s - margin (snapshot s)
        self.snap_id = np.full(scorer.n_a, -1, dtype=np.int64)
        self.snap_u = np.zeros(scorer.n_a)
        self.snap_margin = np.zeros(scorer.n_a)
        self.times_rescreened = np.zeros(scorer.n_a, dtype=np.int64)
        self.snap_v: list[np.ndarray] = []
        self.eb_max = float(scorer.err_b.max(initial=0.0))
        self._fine: PairScorer | None = None
        lead = np.flatnonzero(pool.initial)
        self.graph = build_graph(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), scorer.n_a,
                                 scorer.n_b)
        self._score_into_graph(lead)

    # -- graph growth ----------------------------------------------------------------------------
    def _score_into_graph(self, pool_idx: np.ndarray) -> np.ndarray:
        """Score pool entries exactly and add them to the graph; returns their exact values."""
        pool_idx = pool_idx[~self.in_graph[pool_idx]]
        r, c = self.p_rows[pool_idx], self.p_cols[pool_idx]
        vals = self.sc.exact_pairs(r, c)
        self.scored += len(pool_idx)
        self.in_graph[pool_idx] = True
        self._add_exact(r, c, vals)
        return vals

    def _add_exact(self, r: np.ndarray, c: np.ndarray, vals: np.ndarray) -> None:
        """Merge exactly scored pairs into the graph."""
        if len(r):
            self.graph = merge_graph(self.graph, r, c, vals)

    @property
    def fine(self) -> PairScorer:
        """The fp32 scorer that re-screens use (made on first use)."""
        if self._fine is None:
            self._fine = self.sc.fine()
        return self._fine

    @property
    def p_rows(self) -> np.ndarray:
        """Row of every pool pair (int32)."""
        return self._rows_buf[: self.n_pool]

    @property
    def p_cols(self) -> np.ndarray:
        """Column of every pool pair (int32)."""
        return self._cols_buf[: self.n_pool]

    @property
    def p_approx(self) -> np.ndarray:
        """Screen value of every pool pair (float32; re-screen pairs on the same scale, `_as_screen_value`)."""
        return self._approx_buf[: self.n_pool]

    @property
    def in_graph(self) -> np.ndarray:
        """Whether each pool pair has been scored exactly into the graph."""
        return self._in_graph_buf[: self.n_pool]

    def _as_screen_value(self, fine_value: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Pool values are kept on the coarse screen's scale (value + its error bound = an upper bound):
        a fine value plus the difference of the two error bounds, rounded up to float32."""
        sc, fine = self.sc, self.fine
        shift = (fine.err_a[r] + fine.err_b[c] + fine.err_const) - (sc.err_a[r] + sc.err_b[c] + sc.err_const)
        return _round_up_f32(fine_value.astype(np.float64) + shift)

    def _add_pool(self, r: list[np.ndarray], c: list[np.ndarray], approx: list[np.ndarray]) -> None:
        """Append screened pairs (lists of chunks) to the pool, unscored; the storage grows only when full."""
        n, k = self.n_pool, sum(len(x) for x in r)
        if n + k > len(self._rows_buf):
            cap = n + k + max(1024, (n + k) // 16)  # headroom for a later, smaller re-screen
            for name in ("_rows_buf", "_cols_buf", "_approx_buf", "_in_graph_buf"):
                old = getattr(self, name)
                grown = np.empty(cap, dtype=old.dtype)
                grown[:n] = old[:n]
                setattr(self, name, grown)
                del old
        for name, parts in (("_rows_buf", r), ("_cols_buf", c), ("_approx_buf", approx)):
            np.concatenate(parts, out=getattr(self, name)[n : n + k])
        self._in_graph_buf[n : n + k] = False
        self.n_pool = n + k

    def cover_columns(self, k: int) -> None:
        """Give every column without a graph pair its pool pairs, or (none in the pool) its top-k rows."""
        seen = np.zeros(self.sc.n_b, dtype=bool)
        seen[self.graph.cols] = True
        if seen.all():
            return
        self._score_into_graph(np.flatnonzero(~seen[self.p_cols] & ~self.in_graph))
        seen[self.graph.cols] = True
        missing = np.flatnonzero(~seen)
        if len(missing) == 0:
            return
        back = self.sc.swapped()
        rows_l, cols_l = [], []
        for ids, block in tqdm(back.iter_row_blocks(missing), total=-(-len(missing) // back.chunk_rows),
                               desc="cover", disable=not self.progress, leave=False):
            _, idx, _ = _topk_rows(block, k)
            cols_l.append(np.repeat(ids, idx.shape[1]))
            rows_l.append(idx.cpu().numpy().reshape(-1).astype(np.int64))
        rows = np.concatenate(rows_l)
        cols = np.concatenate(cols_l)
        self._add_exact(rows, cols, self.sc.exact_pairs(rows, cols))

    def ensure_full_matching(self) -> int:
        """Make a full matching exist: free rows first get their whole pool, then pairs with free columns."""
        free_rows, _ = unmatched_rows_and_cols(self.graph)
        if len(free_rows) == 0:
            return 0
        is_free = np.zeros(self.sc.n_a, dtype=bool)
        is_free[free_rows] = True
        self._score_into_graph(np.flatnonzero(is_free[self.p_rows] & ~self.in_graph))
        self.graph, added = _ensure_full_matching(self.sc, self.graph)
        return added

    # -- exact row maxima ------------------------------------------------------------------------
    def row_max(self) -> np.ndarray:
        """Exact max of every row over all columns: the pool leaders hold it unless the bound says otherwise."""
        sc = self.sc
        g = self.graph
        best = np.full(sc.n_a, -np.inf)
        if g.nnz:
            nonempty = np.diff(g.indptr) > 0
            best[nonempty] = np.maximum.reduceat(g.vals, g.indptr[:-1][nonempty])
        reach = self.bound + sc.err_a + self.eb_max + sc.err_const
        dead = sc.inv_a == 0  # zero rows: cosine 0 with everything (else each would score all of b)
        best[dead] = 0.0
        redo = np.flatnonzero((reach >= best - DUAL_TOLERANCE) & ~dead)
        col_lhs = _lower(-sc.err_b)
        for lo in range(0, len(redo), sc.chunk_rows):
            ids = redo[lo : lo + sc.chunk_rows]
            # pairs whose approx + err may reach the best exact value so far are scored exactly
            need = _lower(best[ids] - sc.err_a[ids] - sc.err_const)
            loc, col, _ = pairs_above(sc, ids, None, None, need, col_lhs)
            if len(loc):
                np.maximum.at(best, ids[loc], sc.exact_pairs(ids[loc], col))
        return best

    # -- the optimality check --------------------------------------------------------------------
    def check(self, sol: SparseSolution) -> tuple[int, int]:
        """Check every pair outside the graph against the duals; add what is needed. (violations, rescreened).

        Pool pairs come first (cheap); rows are screened again only once the pool holds no violator,
        so that the duals they are screened against are already close to the final ones.
        """
        violations = self._check_pool(sol.u, sol.v)
        if violations:
            return violations, 0
        fail = self._rows_failing_bound(sol.u, sol.v)
        if len(fail) == 0:
            return 0, 0
        first_new = len(self.p_rows)
        self._rescreen(fail, sol.u, sol.v)
        return self._check_pool(sol.u, sol.v, first_new), len(fail)

    def _check_pool(self, u: np.ndarray, v: np.ndarray, first: int = 0) -> int:
        """Score exactly the pool pairs (from index `first`) whose bound reaches u + v; count violators."""
        sc = self.sc
        reach = np.empty(len(self.p_rows) - first, dtype=np.bool_)
        pool_reaches(self.p_rows, self.p_cols, self.p_approx, self.in_graph, sc.err_a, sc.err_b,
                     float(sc.err_const), u, v, DUAL_TOLERANCE, first, reach)
        suspects = first + np.flatnonzero(reach)
        vals = self._score_into_graph(suspects)
        rs, cs = self.p_rows[suspects], self.p_cols[suspects]
        return int(np.count_nonzero(vals > u[rs] + v[cs] + DUAL_TOLERANCE))

    def _rows_failing_bound(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Rows with a dropped (non-pool) pair whose bound reaches u + v, under both kinds of bound."""
        sc = self.sc
        key = v - sc.err_b  # pair (i, j) may violate iff key[j] < theta[i]
        sorted_key = np.sort(key)
        theta = self.bound + sc.err_a + sc.err_const - u + DUAL_TOLERANCE
        count = np.searchsorted(sorted_key, theta, side="left")
        in_pool = np.zeros(sc.n_a, dtype=np.int64)  # pool pairs are checked one by one instead
        pool_count_below(self.p_rows, self.p_cols, key, theta, in_pool)
        count = count - in_pool
        fail = count > 0
        snapped = fail & (self.snap_id >= 0)
        if snapped.any():
            drift = np.array([float(np.max(sv - v, initial=-np.inf)) for sv in self.snap_v])
            rows = np.flatnonzero(snapped)
            ok = (self.snap_u[rows] - u[rows]) + drift[self.snap_id[rows]] <= (
                self.snap_margin[rows] - DUAL_TOLERANCE
            )
            fail[rows[ok]] = False
        return np.flatnonzero(fail)

    def _rescreen(self, rows: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
        """Screen rows again where their dropped-pair bound is not enough: pairs within a margin of
        u + v join the pool.

        Only the columns that the bound cannot clear are screened: row i's dropped pairs (i, j)
        reach u + v only where ``key[j] = v[j] - err_b[j]`` is below ``theta[i]``, so each row block
        screens the columns with the smallest keys, up to its largest ``theta + margin`` (at 32,768
        latents: ~3K of 32K columns). Every other column keeps clear of the bound by the margin,
        which is what the snapshot check of later rounds assumes for the whole row.
        """
        sc, fine = self.sc, self.fine
        margin = RESCREEN_MARGIN * 2.0 ** np.minimum(self.times_rescreened[rows], 20)
        key = v - sc.err_b
        reach = self.bound[rows] + sc.err_a[rows] + sc.err_const - u[rows] + DUAL_TOLERANCE + margin
        order = np.argsort(reach, kind="stable")  # rows with similar reach share a block
        rows, margin, reach = rows[order], margin[order], reach[order]
        self.times_rescreened[rows] += 1
        snap = len(self.snap_v)
        self.snap_v.append(v.copy())
        by_key = np.argsort(key, kind="stable")
        sorted_key = key[by_key]
        local_of = np.full(sc.n_a, -1, dtype=np.int64)
        local_of[rows] = np.arange(len(rows))
        # pool pairs of these rows: they are checked one by one, so the screen skips them
        pool_ptr, pool_col = pool_by_row(self.p_rows, self.p_cols, local_of, len(rows))
        # a pair joins the pool when its fp32 value > lhs[i] + col_lhs[j] (both rounded down: a superset)
        lhs_all = _lower(u[rows] - fine.err_a[rows] - fine.err_const - margin - DUAL_TOLERANCE)
        col_lhs = _lower(v - fine.err_b)
        position = np.full(sc.n_b, -1, dtype=np.int64)
        new_r, new_c, new_a = [], [], []
        for lo in tqdm(range(0, len(rows), sc.chunk_rows), desc="verify", disable=not self.progress,
                       leave=False):
            hi = min(len(rows), lo + sc.chunk_rows)
            ids = rows[lo:hi]
            cols = np.sort(by_key[: np.searchsorted(sorted_key, reach[hi - 1])])
            if len(cols) == 0:
                continue
            position[cols] = np.arange(len(cols))
            skip_pos = position[pool_col[pool_ptr[lo] : pool_ptr[hi]]]
            skip_loc = np.repeat(np.arange(hi - lo), np.diff(pool_ptr[lo : hi + 1]))
            inside = skip_pos >= 0
            skip = (skip_loc[inside], skip_pos[inside])
            loc, pos, approx = pairs_above(fine, ids, cols, skip, lhs_all[lo:hi], col_lhs[cols])
            position[cols] = -1
            r, c = ids[loc], cols[pos]
            new_r.append(r.astype(np.int32))
            new_c.append(c.astype(np.int32))
            new_a.append(self._as_screen_value(approx, r, c))
        self.snap_id[rows] = snap
        self.snap_u[rows] = u[rows]
        self.snap_margin[rows] = margin
        if new_r:
            self._add_pool(new_r, new_c, new_a)


def _round_up_f32(x: np.ndarray) -> np.ndarray:
    """float32 values no smaller than the float64 ones."""
    y = x.astype(np.float32)
    return np.where(y < x, np.nextafter(y, np.float32(np.inf)), y)


def pairs_above(
    sc: PairScorer, ids: np.ndarray, cols: np.ndarray | None, skip: tuple[np.ndarray, np.ndarray] | None,
    lhs: np.ndarray, col_lhs: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of rows `ids` and columns `cols` (None: all) whose approximate value exceeds
    ``lhs[i] + col_lhs[k]`` (float32), outside the `skip` (row position, column position) pairs:
    (row position, column position, float32 approx). Numba kernels on the CPU, torch ops elsewhere."""
    return (_pairs_above_fused if sc.fused else _pairs_above_torch)(sc, ids, cols, skip, lhs, col_lhs)


def _pairs_above_torch(
    sc: PairScorer, ids: np.ndarray, cols: np.ndarray | None, skip: tuple[np.ndarray, np.ndarray] | None,
    lhs: np.ndarray, col_lhs: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`pairs_above` with torch ops (accelerators; the reference for `_pairs_above_fused`)."""
    dev = sc.device
    block = sc.approx_rows(torch.as_tensor(ids, device=dev), cols)
    if skip is not None:
        block[torch.as_tensor(skip[0], device=dev), torch.as_tensor(skip[1], device=dev)] = -torch.inf
    lhs_t = torch.as_tensor(lhs, device=dev)
    hit = block > (lhs_t[:, None] + torch.as_tensor(col_lhs, device=dev)[None, :])
    loc, pos = hit.nonzero(as_tuple=True)
    approx = block[loc, pos].cpu().numpy()
    return loc.cpu().numpy(), pos.cpu().numpy().astype(np.int64), approx


def _pairs_above_fused(
    sc: PairScorer, ids: np.ndarray, cols: np.ndarray | None, skip: tuple[np.ndarray, np.ndarray] | None,
    lhs: np.ndarray, col_lhs: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`pairs_above` on a raw block by the numba kernels (CPU): the same pairs."""
    r = len(ids)
    raw = sc.raw_rows(torch.as_tensor(ids), cols)
    row_f, col_f = sc.raw_factors()
    row_f = row_f[ids]
    col_f = col_f if cols is None else np.ascontiguousarray(col_f[cols])
    mask = np.zeros(raw.shape if skip is not None else (1, 1), dtype=np.bool_)
    if skip is not None:
        mask[skip] = True
    count = np.empty(r, np.int64)
    args = (raw, r, row_f, col_f, mask, skip is not None, lhs, col_lhs, sc.absolute, count)
    values_above(*args, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                 np.zeros(0, np.float32))
    offset = np.zeros(r + 1, np.int64)
    np.cumsum(count, out=offset[1:])
    loc = np.empty(offset[-1], np.int64)
    pos = np.empty(offset[-1], np.int64)
    approx = np.empty(offset[-1], np.float32)
    values_above(*args, offset, loc, pos, approx)
    return loc, pos, approx


def _topk_rows(block: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k values/indices per row of a block and the bound on the rest (-inf when nothing is left)."""
    n = block.shape[1]
    k = min(k, n)
    vals, idx = torch.topk(block, k, dim=1, sorted=False)
    if k < n:
        rest = vals.min(dim=1).values
    else:
        rest = torch.full((block.shape[0],), -np.inf, device=block.device)
    return vals, idx, rest


def _lower(values: np.ndarray) -> np.ndarray:
    """float32 values no larger than the float64 ones (rounded down with headroom for one f32 add)."""
    x = np.asarray(values, dtype=np.float64)
    return (x - 1e-6 * (1.0 + np.abs(x))).astype(np.float32)


def _ensure_full_matching(scorer: PairScorer, graph: CandidateGraph) -> tuple[CandidateGraph, int]:
    """Add exact pairs between rows and columns a maximum matching leaves free, so every row can match."""
    free_rows, free_cols = unmatched_rows_and_cols(graph)
    if len(free_rows) == 0:
        return graph, 0
    rows = np.repeat(free_rows, len(free_cols))
    cols = np.tile(free_cols, len(free_rows))
    if len(rows) > 50 * max(len(free_rows), 1):  # keep it sparse: each free row meets 50 free columns
        offsets = np.arange(50)
        rows = np.repeat(free_rows, 50)
        cols = free_cols[(np.repeat(np.arange(len(free_rows)), 50) + np.tile(offsets, len(free_rows)))
                         % len(free_cols)]
    return merge_graph(graph, rows, cols, scorer.exact_pairs(rows, cols)), len(rows)


def row_max_cosine(
    a: torch.Tensor | np.ndarray,
    b: torch.Tensor | np.ndarray,
    *,
    absolute: bool = False,
    device: str | torch.device | None = None,
    screen: ScreenMode | str | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Exact maximum cosine of every row of `a` over all rows of `b` (one chunked pass)."""
    if _rows(b) == 0:
        return np.full(_rows(a), np.nan)
    plan = plan_screen(screen, device)
    if solve_densely(_rows(a), _rows(b)):
        return dense_cosines(a, b, absolute=absolute, device=plan.device).max(axis=1)  # the maxima need no matching
    return exact_row_max(PairScorer(a, b, plan, absolute=absolute), progress)


def exact_row_max(scorer: PairScorer, progress: bool = False) -> np.ndarray:
    """Exact row maxima of a scorer's matrix from one screening pass (rows whose bound is loose: again)."""
    pool = screen_pool(scorer, 4, 1, progress=progress, label="row max")
    return _Proof(scorer, pool, progress).row_max()
