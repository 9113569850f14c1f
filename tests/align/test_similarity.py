"""The scorer's CPU kernels: int8 quantisation equal to the torch reference, refused NaN input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saeseeds.align.dense import dense_cosines
from saeseeds.align.screen_choice import plan_screen
from saeseeds.align.similarity import PairScorer, _quantise_int8, _quantise_side
from saeseeds.errors import DataError


def test_numba_quantisation_equals_the_torch_reference() -> None:
    """The fused int8 quantisation gives the reference's codes and scales, and its exact error norms."""
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((300, 77)) * rng.random(77) ** 3).astype(np.float32)
    w[5] = 0.0
    w[9, :] = 0.5 * 127  # exact halves: rounding ties go to even
    w[9, ::2] = 0.5
    side = _quantise_side(torch.from_numpy(w))
    x = torch.from_numpy(w).double()
    q, sc = _quantise_int8(x)
    assert torch.equal(side.low, q) and torch.equal(side.scale, sc)
    norms = x.norm(dim=1).numpy()
    np.testing.assert_allclose(side.norms, norms, rtol=1e-15)
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    recon = q.double() * sc.double()[:, None]
    np.testing.assert_allclose(side.err, ((x - recon).norm(dim=1).numpy() * inv), rtol=1e-13, atol=1e-300)
    assert side.err[5] == 0.0 and side.norms[5] == 0.0


def test_nan_rows_are_refused_by_name() -> None:
    a = np.ones((40, 8), dtype=np.float32)
    a[17, 3] = np.nan
    with pytest.raises(DataError, match="a: contains NaN or inf"):
        PairScorer(a, np.ones((50, 8)), plan_screen())


def test_fine_scorer_matches_a_fresh_fp32_scorer() -> None:
    """The re-screen scorer reuses the int8 scorer's rows and norms: same error model as a fresh fp32 one."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal((120, 40)).astype(np.float32)
    b = rng.standard_normal((90, 40)).astype(np.float32) * 3
    fine = PairScorer(a, b, plan_screen("int8")).fine()
    fresh = PairScorer(a, b, plan_screen("fp32"))
    np.testing.assert_allclose(fine.inv_a, fresh.inv_a, rtol=1e-15)
    np.testing.assert_allclose(fine.inv_b, fresh.inv_b, rtol=1e-15)
    assert (fine.err_a >= fresh.err_a).all() and (fine.err_b >= fresh.err_b).all()
    assert fine.err_const >= fresh.err_const
    rows = np.arange(120)
    block = fine.approx_rows(torch.as_tensor(rows)).double().numpy()
    exact = dense_cosines(fresh.a, fresh.b, absolute=fresh.absolute)
    bound = fine.err_a[:, None] + fine.err_b[None, :] + fine.err_const
    assert (np.abs(block - exact) <= bound).all()
    assert fine.max_error() < 1e-4
