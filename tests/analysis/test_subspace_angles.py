"""Principal angles: known angles, rank deficiency, invariance to the basis chosen, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles as scipy_angles

from saeseeds.analysis.subspace_angles import (
    orthonormal_basis,
    principal_angles,
    random_subspace_angles,
    subspace_cosines,
)
from saeseeds.errors import DataError


def test_known_angle_in_plane() -> None:
    a = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    theta = 0.3
    b = torch.tensor([[math.cos(theta), math.sin(theta), 0.0]], dtype=torch.float64)
    angles = principal_angles(a, b)
    assert angles.shape == (1,)
    assert angles.dtype == torch.float64
    assert angles[0].item() == pytest.approx(theta, abs=1e-12)


def test_same_span_different_basis_gives_zero_angles() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, 20, generator=g, dtype=torch.float64)
    mix = torch.randn(4, 4, generator=g, dtype=torch.float64)
    b = mix @ a  # the same span, another (non-orthogonal) basis
    angles = principal_angles(a, b)
    assert angles.shape == (4,)
    assert angles.max().item() < 1e-7


def test_tiny_angles_are_accurate() -> None:
    # arccos of a cosine near 1 loses precision; the principal-vector formula must not
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    eps = 1e-9
    b = torch.tensor([[math.cos(eps), math.sin(eps)]], dtype=torch.float64)
    angles = principal_angles(a, b)
    assert angles.shape == (1,)
    assert angles[0].item() == pytest.approx(eps, rel=1e-6)


def test_matches_scipy_and_is_ascending() -> None:
    g = torch.Generator().manual_seed(2)
    a = torch.randn(5, 12, generator=g, dtype=torch.float64)
    b = torch.randn(3, 12, generator=g, dtype=torch.float64)
    ours = principal_angles(a, b).numpy()
    ref = np.sort(scipy_angles(a.T.numpy(), b.T.numpy()))
    np.testing.assert_allclose(ours, ref, atol=1e-10)
    assert np.all(np.diff(ours) >= 0)
    np.testing.assert_allclose(principal_angles(b, a).numpy(), ours, atol=1e-10)


def test_rank_deficient_inputs_use_their_rank() -> None:
    a = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # rank 2
    b = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])  # rank 2
    angles = principal_angles(a, b)
    assert angles.shape == (2,)
    assert angles[0].item() == pytest.approx(0.0, abs=1e-12)
    assert angles[1].item() == pytest.approx(math.pi / 2, abs=1e-12)
    assert orthonormal_basis(a).shape == (2, 3)
    assert principal_angles(torch.zeros(2, 3), a).numel() == 0


def test_orthogonal_subspaces_and_cosines() -> None:
    eye = torch.eye(6)
    angles = principal_angles(eye[:2], eye[2:5])
    assert torch.allclose(angles, torch.full((2,), math.pi / 2, dtype=torch.float64))
    assert torch.allclose(subspace_cosines(eye[:3], eye[:3]), torch.ones(3, dtype=torch.float64))


def test_bad_input_raises_with_shapes() -> None:
    with pytest.raises(DataError, match="widths"):
        principal_angles(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(DataError, match="NaN"):
        principal_angles(torch.tensor([[float("nan"), 1.0]]), torch.eye(2))
    with pytest.raises(DataError, match="rows, d"):
        principal_angles(torch.zeros(2, 3, 4), torch.zeros(2, 3))


def test_random_baseline_is_far_from_zero_in_high_dimension() -> None:
    angles = random_subspace_angles(64, 3, 3, num_samples=64, generator=torch.Generator().manual_seed(0))
    assert angles.shape == (64, 3)
    # random 3-dim subspaces of R^64 are nearly orthogonal: even the smallest angle is large on average
    assert angles[:, 0].mean().item() > math.radians(50)
