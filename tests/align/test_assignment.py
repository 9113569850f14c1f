"""The scalable assignment equals scipy's dense optimum on random and adversarial inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from saeseeds.align.assignment import max_cosine_assignment, row_max_cosine
from saeseeds.align.dense import dense_cosines
from saeseeds.align.screen_choice import plan_screen
from saeseeds.align.similarity import PairScorer


def dense_reference(a: np.ndarray, b: np.ndarray, absolute: bool = False) -> tuple[float, np.ndarray]:
    """scipy's optimum on the float64 cosine matrix of the float32 rows."""
    an = a.astype(np.float32).astype(np.float64)
    bn = b.astype(np.float32).astype(np.float64)
    an /= np.linalg.norm(an, axis=1, keepdims=True)
    bn /= np.linalg.norm(bn, axis=1, keepdims=True)
    mat = an @ bn.T
    if absolute:
        mat = np.abs(mat)
    r, c = linear_sum_assignment(mat, maximize=True)
    return float(mat[r, c].sum()), mat


def check(a: np.ndarray, b: np.ndarray, **kw) -> object:
    """Run the sparse path and compare with scipy: total, validity, per-pair cosines, row maxima."""
    absolute = kw.get("absolute", False)
    res = max_cosine_assignment(a, b, dense_max_pairs=0, with_row_max=True, **kw)
    total, mat = dense_reference(a, b, absolute)
    assert res.total == pytest.approx(total, abs=1e-9 * max(1, len(a)))
    p = res.partner
    matched = p >= 0
    assert matched.sum() == min(len(a), len(b))
    assert len(np.unique(p[matched])) == matched.sum()
    np.testing.assert_allclose(res.cosine[matched], mat[np.flatnonzero(matched), p[matched]], atol=1e-12)
    np.testing.assert_allclose(res.row_max, mat.max(axis=1), atol=1e-12)
    assert res.stats.method == "sparse" and res.stats.certified
    return res


KINDS = ["gaussian", "planted", "integer_ties", "duplicated_rows", "nonneg_ties", "unequal"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("screen", ["int8", "bf16", "fp32"])
def test_matches_scipy(kind: str, screen: str) -> None:
    rng = np.random.default_rng(abs(hash((kind, screen))) % 2**32)
    for trial in range(4):
        na, nb, d = (int(x) for x in rng.integers([20, 20, 3], [160, 160, 24]))
        if kind != "unequal":
            nb = na if trial % 2 == 0 else nb
        a = rng.standard_normal((na, d))
        b = rng.standard_normal((nb, d))
        if kind == "planted":
            k = min(na, nb)
            perm = rng.permutation(nb)
            b[perm[:k]] = a[:k] + 0.2 * rng.standard_normal((k, d))
        elif kind == "integer_ties":
            a, b = np.round(a), np.round(b)
            a[np.all(a == 0, axis=1), 0] = 1
            b[np.all(b == 0, axis=1), 0] = 1
        elif kind == "duplicated_rows":
            a[na // 2 :] = a[: na - na // 2]
            b[: nb // 3] = b[0]
        elif kind == "nonneg_ties":
            a = (rng.random((na, d)) < 0.3).astype(float)
            b = (rng.random((nb, d)) < 0.3).astype(float)
            a[:, 0] = b[:, 0] = 1
        for absolute in (False, True):
            check(a, b, screen=screen, absolute=absolute, candidates=int(rng.integers(1, 5)))


def test_proof_loop_adds_pruned_pairs() -> None:
    """Every row prefers the same few columns: the first candidates cannot be optimal, the loop must fix it."""
    rng = np.random.default_rng(3)
    hub = rng.standard_normal(16)
    a = hub + 0.3 * rng.standard_normal((120, 16))
    b = np.vstack([hub + 0.05 * rng.standard_normal((3, 16)), rng.standard_normal((117, 16))])
    res = check(a, b, candidates=2)
    assert res.stats.rounds > 1
    assert res.stats.pairs_added > 0
    assert res.stats.history[0]["violations"] > 0
    assert res.stats.history[-1]["violations"] == 0


def test_no_full_matching_falls_back() -> None:
    """With one candidate per row all pointing at one column, the graph has no full matching at first."""
    rng = np.random.default_rng(4)
    a = np.ones((50, 8)) + 0.01 * rng.standard_normal((50, 8))
    b = np.vstack([np.ones((1, 8)), rng.standard_normal((59, 8))])
    res = check(a, b, candidates=1)
    assert res.stats.fallback_pairs > 0 or res.stats.pairs_added > 0


def test_planted_permutation_recovered() -> None:
    rng = np.random.default_rng(5)
    a = rng.standard_normal((300, 32))
    perm = rng.permutation(300)
    b = np.empty_like(a)
    b[perm] = a + 0.01 * rng.standard_normal(a.shape)
    res = max_cosine_assignment(a, b, dense_max_pairs=0)
    np.testing.assert_array_equal(res.partner, perm)


def test_dense_and_sparse_agree_and_transposed() -> None:
    rng = np.random.default_rng(6)
    a = rng.standard_normal((90, 12))
    b = rng.standard_normal((40, 12))
    dense = max_cosine_assignment(a, b)
    sparse = max_cosine_assignment(a, b, dense_max_pairs=0, candidates=2)
    assert dense.stats.method == "dense"
    assert sparse.total == pytest.approx(dense.total, abs=1e-9)
    assert (sparse.partner == -1).sum() == 50
    assert np.isnan(sparse.cosine[sparse.partner == -1]).all()


def test_error_bounds_hold() -> None:
    """|approx - exact| <= err_a + err_b + const on every pair, for every screen mode."""
    rng = np.random.default_rng(7)
    for d, screen in itertools.product((3, 200), ("int8", "bf16", "fp32")):
        # d = 3 with near-parallel rows: a bf16 GEMM rounding partial sums would break the bound
        a = rng.standard_normal((64, d)) * rng.random((1, d)) ** 3
        b = np.vstack([np.zeros((1, d)), a[1:40] + 0.01 * rng.standard_normal((39, d)),
                       rng.standard_normal((40, d))])  # row 0: a dead latent
        sc = PairScorer(a, b, plan_screen(screen))
        approx = sc.approx_rows(slice(0, 64)).double().numpy()
        exact = dense_cosines(sc.a, sc.b, absolute=sc.absolute)
        bound = sc.err_a[:, None] + sc.err_b[None, :] + sc.err_const
        assert (np.abs(approx - exact) <= bound).all()
        assert np.all(exact[:, 0] == 0)


def test_row_max_cosine() -> None:
    rng = np.random.default_rng(8)
    a = rng.standard_normal((3000, 16))
    b = rng.standard_normal((1500, 16))
    _, mat = dense_reference(a, b)
    np.testing.assert_allclose(row_max_cosine(a, b), mat.max(axis=1), atol=1e-12)



def test_dead_latents_zero_rows_on_both_sides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Zero rows (dead, zeroed latents) have cosine 0 with everything: exact total, row max 0, and the
    row-max pass does not screen them again (each would match every column of b)."""
    import saeseeds.align.assignment as assignment

    rng = np.random.default_rng(31)
    a = rng.standard_normal((2600, 20))
    b = rng.standard_normal((2600, 20))
    a[::50] = 0.0
    b[7::60] = 0.0
    screened: list[np.ndarray] = []
    original = assignment.pairs_above

    def recording(sc, ids, cols, skip, lhs, col_lhs):
        if cols is None:  # the row-max pass
            screened.append(np.asarray(ids))
        return original(sc, ids, cols, skip, lhs, col_lhs)

    monkeypatch.setattr(assignment, "pairs_above", recording)
    res = max_cosine_assignment(a, b, dense_max_pairs=0, with_row_max=True)
    assert not np.isin(np.arange(0, 2600, 50), np.concatenate(screened or [np.zeros(0, int)])).any()

    def unit(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32).astype(np.float64)
        n = np.linalg.norm(x, axis=1, keepdims=True)
        return np.divide(x, n, out=np.zeros_like(x), where=n > 0)

    mat = unit(a) @ unit(b).T
    r, c = linear_sum_assignment(mat, maximize=True)
    assert res.total == pytest.approx(mat[r, c].sum(), abs=1e-9)
    np.testing.assert_allclose(res.row_max, mat.max(axis=1), atol=1e-12)
    assert (res.row_max[::50] == 0).all()
