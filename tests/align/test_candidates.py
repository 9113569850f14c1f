"""The screening pool keeps every row's leaders, bounds what it drops, and the proof's re-screen path is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saeseeds.align.assignment import max_cosine_assignment
from saeseeds.align.candidates import screen_pool, select_block
from saeseeds.align.similarity import PairScorer


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


def test_pool_bound_is_rigorous_for_exact_values() -> None:
    """A pair not in the pool has exact cosine <= bound + err_a + err_b + const."""
    rng = np.random.default_rng(11)
    a = rng.standard_normal((300, 48)) * rng.random(48) ** 2
    b = rng.standard_normal((500, 48)) * rng.random(48) ** 2
    sc = PairScorer(a, b, screen="int8", chunk_rows=64)
    pool = screen_pool(sc, 6, 2)
    exact = sc.exact_dense()
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
