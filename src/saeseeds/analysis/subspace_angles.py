"""Principal angles between the spans of two sets of row vectors, robust to rank deficiency and tiny angles.

docs/definitions.md ("Subspaces") defines them from the SVD of `Q_aᵀ Q_b`; here the angles are computed from the
principal vectors with `2·atan2(‖u − v‖, ‖u + v‖)`, which stays accurate for angles near 0 and near π/2 alike.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from saeseeds.errors import DataError

DEFAULT_RTOL = 1e-6
"""Singular values below `rtol · largest` (float64) count as zero when finding a span's rank."""


def _as_rows(vectors: Tensor, name: str) -> Tensor:
    """Check one set of row vectors and return it as a float64 `[r, d]` tensor."""
    if not isinstance(vectors, Tensor):
        vectors = torch.as_tensor(vectors)
    if vectors.ndim == 1:
        vectors = vectors.unsqueeze(0)
    if vectors.ndim != 2:
        raise DataError(f"principal_angles: {name} must be [rows, d], got shape {tuple(vectors.shape)}")
    if not torch.is_floating_point(vectors):
        vectors = vectors.to(torch.float64)
    vectors = vectors.detach().to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(vectors).all():
        raise DataError(f"principal_angles: {name} of shape {tuple(vectors.shape)} contains NaN or inf")
    return vectors


def orthonormal_basis(vectors: Tensor, rtol: float = DEFAULT_RTOL) -> Tensor:
    """Orthonormal rows `[rank, d]` (float64) spanning the rows of `vectors`; rank decided by the SVD with `rtol`."""
    rows = _as_rows(vectors, "vectors")
    if rows.shape[0] == 0 or rows.shape[1] == 0:
        return rows.new_zeros((0, rows.shape[1]))
    _, singular, vh = torch.linalg.svd(rows, full_matrices=False)
    largest = float(singular[0]) if singular.numel() else 0.0
    if largest == 0.0:
        return rows.new_zeros((0, rows.shape[1]))
    rank = int((singular > rtol * largest).sum())
    return vh[:rank]


def principal_angles(a: Tensor, b: Tensor, *, rtol: float = DEFAULT_RTOL) -> Tensor:
    """Principal angles (radians, float64, ascending) between span(rows of a) and span(rows of b).

    `a` is `[r_a, d]`, `b` is `[r_b, d]`; the result has min(rank a, rank b) entries (empty when either is 0).
    """
    rows_a = _as_rows(a, "A")
    rows_b = _as_rows(b, "B")
    if rows_a.shape[1] != rows_b.shape[1]:
        raise DataError(
            f"principal_angles: A is {tuple(rows_a.shape)} and B is {tuple(rows_b.shape)}; their widths d differ"
        )
    q_a = orthonormal_basis(rows_a, rtol)
    q_b = orthonormal_basis(rows_b, rtol)
    k = min(q_a.shape[0], q_b.shape[0])
    if k == 0:
        return torch.zeros(0, dtype=torch.float64)
    u, _, vh = torch.linalg.svd(q_a @ q_b.T, full_matrices=False)
    vectors_a = u[:, :k].T @ q_a  # principal vectors of A, paired with those of B
    vectors_b = vh[:k] @ q_b
    diff = torch.linalg.vector_norm(vectors_a - vectors_b, dim=1)
    summ = torch.linalg.vector_norm(vectors_a + vectors_b, dim=1)
    angles = 2.0 * torch.atan2(diff, summ)
    return torch.sort(angles.clamp(0.0, math.pi / 2)).values


def subspace_cosines(a: Tensor, b: Tensor, *, rtol: float = DEFAULT_RTOL) -> Tensor:
    """Cosines of the principal angles (descending): 1 means a shared direction, 0 an orthogonal one."""
    return torch.cos(principal_angles(a, b, rtol=rtol))


def random_subspace_angles(
    d: int, r_a: int, r_b: int, *, num_samples: int = 256, generator: torch.Generator | None = None
) -> Tensor:
    """Principal angles `[num_samples, min(r_a, r_b)]` between pairs of random (Gaussian) subspaces of R^d.

    The chance baseline that a measured angle is compared with.
    """
    if min(d, r_a, r_b, num_samples) <= 0 or max(r_a, r_b) > d:
        raise DataError(f"random_subspace_angles: need 0 < r_a, r_b <= d, got d={d}, r_a={r_a}, r_b={r_b}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    out = torch.empty(num_samples, min(r_a, r_b), dtype=torch.float64)
    for i in range(num_samples):
        a = torch.randn(r_a, d, generator=generator, dtype=torch.float64)
        b = torch.randn(r_b, d, generator=generator, dtype=torch.float64)
        out[i] = principal_angles(a, b)
    return out
