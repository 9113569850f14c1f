"""The dense solver equals scipy on the exact matrix, and the solver choice follows the cost rule."""

from __future__ import annotations

import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import saeseeds.align.assignment as assignment
import saeseeds.align.dense as dense
from saeseeds.align.assignment import max_cosine_assignment, solve_densely
from saeseeds.align.dense import dense_cosines, dense_match, dense_matches


def unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32).astype(np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


@pytest.mark.parametrize("absolute", [False, True])
def test_dense_match_is_scipys_optimum_with_both_maxima(absolute: bool) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((70, 9))
    b = rng.standard_normal((50, 9))
    a[3] = 0.0  # a dead latent: cosine 0 with everything
    mat = unit(a) @ unit(b).T
    mat = np.abs(mat) if absolute else mat
    r, c = linear_sum_assignment(mat, maximize=True)
    m = dense_match(a, b, absolute=absolute)
    assert m.total == pytest.approx(mat[r, c].sum(), abs=1e-12)
    np.testing.assert_allclose(dense_cosines(a, b, absolute=absolute), mat, atol=1e-13)
    np.testing.assert_allclose(m.row_max, mat.max(axis=1), atol=1e-13)
    np.testing.assert_allclose(m.col_max, mat.max(axis=0), atol=1e-13)
    assert (m.partner == -1).sum() == 20 and np.isnan(m.cosine[m.partner == -1]).all()
    assert len(np.unique(m.partner[m.partner >= 0])) == 50


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_dense_matches_equal_one_at_a_time_holding_at_most_one_matrix_per_solver(
    threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five problems of different shapes (one empty), solved `threads` at a time: each result is that
    problem's own dense_match, in order, and no more than `threads` matrices are alive at once."""
    rng = np.random.default_rng(3)
    shapes = [(40, 30), (25, 25), (0, 12), (33, 50), (18, 7)]
    problems = [(rng.standard_normal((n, 6)), rng.standard_normal((m, 6))) for n, m in shapes]
    alive, peak = 0, 0
    real = dense.dense_cosines

    def released() -> None:
        nonlocal alive
        alive -= 1

    def tracked(a, b, **kw):  # type: ignore[no-untyped-def]
        nonlocal alive, peak
        alive += 1
        peak = max(peak, alive)
        mat = real(a, b, **kw)
        weakref.finalize(mat, released)
        return mat

    monkeypatch.setattr(dense, "dense_cosines", tracked)
    monkeypatch.setattr(dense, "solve_threads", lambda n: min(n, threads))
    got = dense_matches(problems, absolute=True)
    assert peak <= threads
    for (a, b), m in zip(problems, got, strict=True):
        ref = dense_match(a, b, absolute=True)
        np.testing.assert_array_equal(m.partner, ref.partner)
        assert m.total == ref.total and m.row_max.shape == (len(a),) and m.col_max.shape == (len(b),)


def test_dense_and_sparse_paths_give_the_same_optimum_and_maxima() -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((300, 16))
    b = a[rng.permutation(300)] + 0.8 * rng.standard_normal((300, 16))
    dense = max_cosine_assignment(a, b, dense_max_pairs=1 << 40, with_row_max=True, with_col_max=True)
    sparse = max_cosine_assignment(a, b, dense_max_pairs=0, with_row_max=True, with_col_max=True)
    assert (dense.stats.method, sparse.stats.method) == ("dense", "sparse")
    assert sparse.total == pytest.approx(dense.total, abs=1e-9)
    np.testing.assert_array_equal(sparse.partner, dense.partner)
    np.testing.assert_allclose(sparse.row_max, dense.row_max, atol=1e-12)
    np.testing.assert_allclose(sparse.col_max, dense.col_max, atol=1e-12)


def test_choice_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    small, moderate = 1000, 3000  # 1000^2 <= DENSE_MAX_PAIRS < 3000^2 <= COLD_DENSE_MAX_PAIRS
    monkeypatch.setattr(assignment, "_cold_dense_pairs", 0)
    monkeypatch.setattr(assignment, "kernel_state", lambda kernels: "loaded")
    assert solve_densely(small, small) and not solve_densely(moderate, moderate)
    assert not solve_densely(5000, 5000)
    for state in ("cached", "cold"):  # kernels to load, or to compile first
        monkeypatch.setattr(assignment, "_cold_dense_pairs", 0)
        monkeypatch.setattr(assignment, "kernel_state", lambda kernels, state=state: state)
        budget = assignment.COLD_DENSE_BUDGET_PAIRS[state] // (moderate * moderate)
        assert budget >= 2
        assert all(solve_densely(moderate, moderate) for _ in range(budget))
        assert not solve_densely(moderate, moderate)  # the budget is spent: load or compile after all
    assert not solve_densely(5000, 5000)  # too large to be worth it even once
    assert solve_densely(small, small) and solve_densely(0, 7)
    assert not solve_densely(small, small, dense_max_pairs=0)  # an explicit limit is obeyed as given
    assert solve_densely(moderate, moderate, dense_max_pairs=moderate * moderate)


SCRIPT = """
import sys
import numpy as np
from saeseeds.align.assignment import max_cosine_assignment
rng = np.random.default_rng(2)
a = rng.standard_normal((1100, 24)).astype(np.float32)
b = rng.standard_normal((1100, 24)).astype(np.float32)
res = max_cosine_assignment(a, b, with_row_max=True, with_col_max=True)
print(res.stats.method, repr(res.total))
if len(sys.argv) > 1:  # load the kernels (a small sparse solve), then the same problem again
    max_cosine_assignment(a[:40], b[:40], dense_max_pairs=0, with_row_max=True, with_col_max=True)
    res = max_cosine_assignment(a, b, with_row_max=True, with_col_max=True)
    print(res.stats.method, repr(res.total))
"""


def test_first_use_of_a_moderate_problem_compiles_no_kernel(tmp_path: Path) -> None:
    """With an empty numba cache a 1100 x 1100 problem is solved densely and nothing is compiled or
    written to the cache; once the kernels are loaded in the process the same problem takes the sparse path,
    with the same total."""
    cache = tmp_path / "numba"
    env = os.environ | {"NUMBA_CACHE_DIR": str(cache)}
    cold = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert cold.returncode == 0, cold.stderr[-2000:]
    method, total = cold.stdout.split()
    assert method == "dense"
    assert not list(cache.rglob("*.nbi"))  # no kernel was compiled
    # compile them into this cache (a sparse solve): the cache then has every kernel the rule looks for
    warm = subprocess.run([sys.executable, "-c", SCRIPT, "load"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert warm.returncode == 0, warm.stderr[-2000:]
    first, again = (line.split() for line in warm.stdout.splitlines())
    assert first[0] == "dense" and again[0] == "sparse"
    assert float(again[1]) == pytest.approx(float(total), abs=1e-9)
    assert list(cache.rglob("*.nbi"))
    check = "from saeseeds.align.assignment import _SPARSE_KERNELS as k; from saeseeds.numba_cache import " \
            "kernel_state; print(kernel_state(k))"
    state = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=300)
    assert state.stdout.strip() == "cached", state.stderr[-2000:]
