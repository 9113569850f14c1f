"""Tests of the stability split that defines the ablated groups, and of cross-seed shared matrices."""

from __future__ import annotations

import pytest
import torch

from saeseeds.analysis.stability_groups import (
    shared_matrix_all_seeds,
    split_by_stability,
    stability_from_shared,
)
from saeseeds.errors import DataError


def test_split_by_stability_uses_the_documented_cut() -> None:
    g = split_by_stability(torch.tensor([0.0, 0.5, 1.0, 0.25]), 4)
    assert g.stable.tolist() == [False, True, True, False]
    assert g.unstable.tolist() == [True, False, False, False]
    assert split_by_stability(torch.tensor([0.25]), 4, stable_cut=0.25).stable.tolist() == [True]
    with pytest.raises(DataError, match="stable_cut"):
        split_by_stability(torch.tensor([0.0]), 1, stable_cut=0.0)


def test_stability_from_shared_is_the_fraction_of_other_seeds() -> None:
    shared = torch.tensor([[True, False, True], [True, False, False]])
    assert stability_from_shared(shared).tolist() == [1.0, 0.0, 0.5]
    with pytest.raises(DataError, match="other seeds"):
        stability_from_shared(torch.zeros(0, 3, dtype=torch.bool))


def test_shared_matrices_find_a_permuted_copy_and_reject_an_unrelated_sae() -> None:
    g = torch.Generator().manual_seed(0)
    dec, enc = torch.randn(20, 32, generator=g), torch.randn(20, 32, generator=g)
    perm = torch.randperm(20, generator=g)
    other_dec, other_enc = torch.randn(20, 32, generator=g), torch.randn(20, 32, generator=g)
    shared = shared_matrix_all_seeds([dec, dec[perm], other_dec], [enc, enc[perm], other_enc])
    assert [tuple(s.shape) for s in shared] == [(2, 20)] * 3
    assert stability_from_shared(shared[0]).tolist() == [0.5] * 20  # shared with seed 1, not seed 2
    assert stability_from_shared(shared[1]).tolist() == [0.5] * 20  # read back through the bijection
    assert not shared[2].any()
    # a partial copy: only the first 10 latents of seed 1 match seed 0
    half_dec = torch.cat([dec[:10], other_dec[10:]])
    half_enc = torch.cat([enc[:10], other_enc[10:]])
    s0, s1 = shared_matrix_all_seeds([dec, half_dec], [enc, half_enc])
    assert s0[0].tolist() == [True] * 10 + [False] * 10
    assert s1[0].tolist() == [True] * 10 + [False] * 10
    # different dictionary sizes use the reverse alignment
    s0, s1 = shared_matrix_all_seeds([dec, dec[:12]], [enc, enc[:12]])
    assert s0[0].sum() == 12 and s1[0].all()
