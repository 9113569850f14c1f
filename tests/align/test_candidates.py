"""The screening pool keeps every row's leaders, bounds what it drops, and the proof's re-screen path is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saeseeds.align.assignment import max_cosine_assignment
from saeseeds.align.candidates import group_size, screen_pool, select_block
from saeseeds.align.dense import dense_cosines
from saeseeds.align.screen_choice import plan_screen
from saeseeds.align.similarity import PairScorer


def torch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Route blocks through the torch ops (the accelerator path) instead of the numba kernels."""
    monkeypatch.setattr(PairScorer, "fused", property(lambda self: False))


@pytest.mark.parametrize("n_cols", [7, 130, 1000, 1037])
def test_select_block_bound_and_leaders(n_cols: int) -> None:
    """Dropped values <= the row bound; the top `groups` values and everything near the max are kept."""
    gen = torch.Generator().manual_seed(n_cols)
    block = torch.randn(40, n_cols, generator=gen)
    block[3] = 0.25  # a row of ties
    groups = 5
    loc, cols, vals, lead, bound, row_max = select_block(block, groups, 2, torch.full((40,), 0.3))
    kept = torch.zeros_like(block, dtype=torch.bool)
    kept[loc, cols] = True
    assert torch.equal(vals, block[loc, cols])
    dropped = torch.where(kept, torch.full_like(block, -torch.inf), block)
    assert (dropped.amax(dim=1) <= bound).all()
    top = torch.topk(block, min(groups, n_cols), dim=1).values
    assert (top[:, -1] >= bound).all() or n_cols <= groups
    assert torch.equal(row_max, block.amax(dim=1))
    for r in range(40):
        mine = kept[r]
        assert int(mine.sum()) >= min(groups, n_cols)
        # leaders: at least the top 2, and every kept value within 0.3 of the max
        near = block[r] >= row_max[r] - 0.3
        leaders = torch.zeros(n_cols, dtype=torch.bool)
        leaders[cols[(loc == r) & lead]] = True
        assert (leaders | ~(near & mine)).all()  # outside the pool the row bound takes over
        assert int(leaders.sum()) >= min(2, n_cols)


@pytest.mark.parametrize("screen", ["int8", "fp32"])
@pytest.mark.parametrize("fused", [True, False])
def test_pool_bound_is_rigorous_for_exact_values(screen: str, fused: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pair not in the pool has exact cosine <= bound + err_a + err_b + const (numba and torch paths)."""
    if not fused:
        torch_path(monkeypatch)
    rng = np.random.default_rng(11)
    a = rng.standard_normal((300, 48)) * rng.random(48) ** 2
    b = rng.standard_normal((500, 48)) * rng.random(48) ** 2
    sc = PairScorer(a, b, plan_screen(screen), chunk_rows=64)
    pool = screen_pool(sc, 6, 2)
    exact = dense_cosines(sc.a, sc.b, absolute=sc.absolute)
    in_pool = np.zeros(exact.shape, dtype=bool)
    in_pool[pool.rows, pool.cols] = True
    reach = pool.bound[:, None] + sc.err_a[:, None] + sc.err_b[None, :] + sc.err_const
    assert (exact[~in_pool] <= np.broadcast_to(reach, exact.shape)[~in_pool]).all()
    np.testing.assert_allclose(sc.exact_pairs(pool.rows, pool.cols), exact[pool.rows, pool.cols], atol=1e-13)


def test_family_structure_needs_rescreen_and_stays_exact() -> None:
    """Feature families (a hard, flat tail of cosines) force the re-screen path; the total stays optimal."""
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(12)
    n, d = 900, 40
    centres = rng.standard_normal((n // 8, d))
    fam_a = rng.integers(0, len(centres), n)
    fam_b = rng.integers(0, len(centres), n)
    a = centres[fam_a] + 1.2 * rng.standard_normal((n, d))
    b = centres[fam_b] + 1.2 * rng.standard_normal((n, d))
    b[: n // 3] = a[: n // 3] + 0.3 * rng.standard_normal((n // 3, d))
    res = max_cosine_assignment(a, b, dense_max_pairs=0, candidates=2, with_row_max=True)
    an = a.astype(np.float32).astype(np.float64)
    bn = b.astype(np.float32).astype(np.float64)
    mat = (an / np.linalg.norm(an, axis=1, keepdims=True)) @ (bn / np.linalg.norm(bn, axis=1, keepdims=True)).T
    r, c = linear_sum_assignment(mat, maximize=True)
    assert res.total == pytest.approx(mat[r, c].sum(), abs=1e-9 * n)
    np.testing.assert_allclose(res.row_max, mat.max(axis=1), atol=1e-12)
    assert res.stats.rows_rescreened > 0
    assert res.stats.certified


@pytest.mark.parametrize("screen", ["int8", "fp32"])
@pytest.mark.parametrize("absolute", [False, True])
def test_fused_screen_equals_torch_path(screen: str, absolute: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The numba screen keeps exactly the pairs, values, leaders and bounds of the torch ops."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((200, 32)) * rng.random(32)
    b = rng.standard_normal((1100, 32)) * rng.random(32)
    b[7] = 0.0  # a zero column: value 0 everywhere
    sc = PairScorer(a, b, plan_screen(screen), absolute=absolute, chunk_rows=64)
    fused = screen_pool(sc, 9, 3)
    torch_path(monkeypatch)
    ref = screen_pool(PairScorer(a, b, plan_screen(screen), absolute=absolute, chunk_rows=64), 9, 3)

    def entries(p):
        order = np.lexsort((p.cols, p.rows))
        return p.rows[order], p.cols[order], p.approx[order], p.initial[order]

    for got, want in zip(entries(fused), entries(ref)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(fused.bound, ref.bound)
    np.testing.assert_array_equal(fused.approx_max, ref.approx_max)


def test_fused_screen_keeps_top_groups_of_a_tied_row() -> None:
    """A row whose values all tie (a zero row) still keeps `groups` groups, bounded by the tie value."""
    rng = np.random.default_rng(6)
    a = rng.standard_normal((50, 16))
    a[4] = 0.0
    b = rng.standard_normal((3000, 16))
    pool = screen_pool(PairScorer(a, b, plan_screen(), chunk_rows=32), 5, 2)
    mine = pool.rows == 4
    assert pool.bound[4] == 0.0 and pool.approx_max[4] == 0.0
    assert mine.sum() == 5 * group_size(3000, 5)  # five whole groups
    assert pool.initial[mine].all()  # everything ties with the max: all leaders


@pytest.mark.parametrize("absolute", [False, True])
def test_fused_rescreen_equals_torch_path(absolute: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole proof (screen, re-screens, rounds) goes the same way through numba and torch."""
    rng = np.random.default_rng(13)
    n, d = 700, 36
    centres = rng.standard_normal((n // 8, d))
    a = centres[rng.integers(0, len(centres), n)] + 1.2 * rng.standard_normal((n, d))
    b = centres[rng.integers(0, len(centres), n)] + 1.2 * rng.standard_normal((n, d))
    fused = max_cosine_assignment(a, b, dense_max_pairs=0, candidates=2, absolute=absolute, with_row_max=True)
    torch_path(monkeypatch)
    ref = max_cosine_assignment(a, b, dense_max_pairs=0, candidates=2, absolute=absolute, with_row_max=True)
    assert fused.stats.rows_rescreened > 0
    assert fused.stats.history == ref.stats.history
    assert fused.total == ref.total
    np.testing.assert_array_equal(fused.row_max, ref.row_max)
