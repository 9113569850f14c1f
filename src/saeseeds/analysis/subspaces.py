"""Subspace reproducibility of sets of decoder directions across seeds, against random and stable sets.

Principal angles between spans, the share of one set's energy captured by the other span, effective
rank of a union of directions (SVD spectrum), and groups of mutually-close directions across seeds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import combinations

import torch
from torch import Tensor

from saeseeds.analysis.subspace_angles import DEFAULT_RTOL, principal_angles
from saeseeds.errors import DataError


@contextmanager
def single_threaded_linalg() -> Iterator[None]:
    """Run torch on one CPU thread inside the block, restoring the previous setting after.

    The SVDs and eigendecompositions here are at most d × d; on a loaded CPU, torch's multi-threaded
    LAPACK calls were measured 60-200× slower than single-threaded ones (2-core box, d = 384).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def unit_rows(rows: Tensor) -> Tensor:
    """Rows scaled to unit length (float64; zero rows stay zero)."""
    rows = rows.detach().double()
    return rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-30)


def principal_basis(rows: Tensor, dim: int | None = None, *, rtol: float = DEFAULT_RTOL) -> Tensor:
    """Orthonormal basis `[d, q]` of the span of `rows [r, d]`, or of its top-`dim` principal subspace.

    Rows are unit-normalised first, so each direction counts once; numerically null directions
    (singular value below `rtol` × the largest) are dropped.
    """
    if rows.ndim != 2:
        raise DataError(f"directions: expected [r, d], got {tuple(rows.shape)}")
    if rows.shape[0] == 0:
        return rows.new_zeros((rows.shape[1], 0), dtype=torch.float64)
    u = unit_rows(rows)
    if u.shape[0] > u.shape[1]:
        sv, vh = _gram_singular(u)
    else:
        _, sv, vh = torch.linalg.svd(u, full_matrices=False)
    # the Gram route squares the condition number, so its rank cut cannot go below ~1e-7 of the largest
    cut = max(rtol, 1e-7) if u.shape[0] > u.shape[1] else rtol
    rank = int((sv > cut * sv[0]).sum()) if sv.numel() and sv[0] > 0 else 0
    q = rank if dim is None else min(rank, dim)
    return vh[:q].T.contiguous()


@dataclass(frozen=True)
class SpanOverlap:
    """How much two spans coincide: principal angles, mean cos², captured energy, random expectation."""

    dim_a: int
    dim_b: int
    d: int
    angles_deg: list[float]
    """Principal angles in degrees, ascending (min(dim_a, dim_b) of them)."""
    mean_cos2: float
    """Mean of cos² over the principal angles: 1 = one span contains the other, 0 = orthogonal."""
    captured_a_in_b: float
    """Share of the energy of A's unit directions that lies in span(B)."""
    captured_b_in_a: float
    expected_random_mean_cos2: float
    """E[mean cos²] for independent uniformly random subspaces of these dimensions: max(dim_a, dim_b)/d."""


def expected_random_mean_cos2(dim_a: int, dim_b: int, d: int) -> float:
    """E[mean cos² of the principal angles] of independent uniform random subspaces of R^d.

    E[tr(P_A P_B)] = dim_a·dim_b/d, spread over min(dim_a, dim_b) angles; r/d when both are r.
    """
    if min(dim_a, dim_b) == 0:
        return math.nan
    return min(1.0, max(dim_a, dim_b) / d)


def _gram_singular(u: Tensor) -> tuple[Tensor, Tensor]:
    """Singular values (descending) and right singular vectors of `u [r, d]` with r > d, from the d × d Gram matrix.

    Cheaper than an SVD of the tall matrix (run it under `single_threaded_linalg` on a busy CPU).
    """
    evals, evecs = torch.linalg.eigh(u.T @ u)
    return evals.flip(0).clamp_min(0).sqrt(), evecs.flip(1).T.contiguous()


def span_overlap(rows_a: Tensor, rows_b: Tensor, *, dim: int | None = None) -> SpanOverlap:
    """Compare span(rows_a) and span(rows_b) (`[r, d]` each), or their top-`dim` principal subspaces."""
    if rows_a.ndim != 2 or rows_b.ndim != 2 or rows_a.shape[1] != rows_b.shape[1]:
        raise DataError(
            f"span_overlap: direction sets {tuple(rows_a.shape)} and {tuple(rows_b.shape)} must be [r, d] with equal d"
        )
    d = rows_a.shape[1]
    qa, qb = principal_basis(rows_a, dim), principal_basis(rows_b, dim)
    radians = principal_angles(qa.T, qb.T)
    cos = torch.cos(radians)
    angles = torch.rad2deg(radians).tolist()
    return SpanOverlap(
        dim_a=qa.shape[1],
        dim_b=qb.shape[1],
        d=d,
        angles_deg=angles,
        mean_cos2=float((cos**2).mean()) if cos.numel() else math.nan,
        captured_a_in_b=_captured(rows_a, qb),
        captured_b_in_a=_captured(rows_b, qa),
        expected_random_mean_cos2=expected_random_mean_cos2(qa.shape[1], qb.shape[1], d),
    )


def _captured(rows: Tensor, basis: Tensor) -> float:
    """Share of the squared norm of `rows`' unit directions lying in the span of the orthonormal `basis`."""
    if rows.shape[0] == 0:
        return math.nan
    u = unit_rows(rows)
    return float(((u @ basis) ** 2).sum() / u.shape[0])


# --------------------------------------------------------------------------------------------
# baselines


@dataclass(frozen=True)
class OverlapSummary:
    """Mean and spread of span overlaps over several pairs (or random draws), with the mean cos² curve."""

    n: int
    mean_cos2_mean: float
    mean_cos2_std: float
    captured_mean: float
    cos2_curve: list[float]
    """cos² of the k-th smallest principal angle, averaged over pairs (truncated to the shortest)."""


def summarize_overlaps(overlaps: Sequence[SpanOverlap]) -> OverlapSummary:
    """Average a list of overlaps."""
    valid = [o for o in overlaps if o.angles_deg]
    if not valid:
        return OverlapSummary(0, math.nan, math.nan, math.nan, [])
    m = torch.tensor([o.mean_cos2 for o in valid], dtype=torch.float64)
    cap = torch.tensor(
        [c for o in valid for c in (o.captured_a_in_b, o.captured_b_in_a)], dtype=torch.float64
    )
    length = min(len(o.angles_deg) for o in valid)
    curves = torch.tensor([o.angles_deg[:length] for o in valid], dtype=torch.float64)
    curve = (torch.cos(torch.deg2rad(curves)) ** 2).mean(0)
    return OverlapSummary(
        n=len(valid),
        mean_cos2_mean=float(m.mean()),
        mean_cos2_std=float(m.std()) if len(valid) > 1 else 0.0,
        captured_mean=float(cap.nanmean()),
        cos2_curve=curve.tolist(),
    )


def random_isotropic_overlaps(
    count_a: int, count_b: int, d: int, *, dim: int | None = None, draws: int = 10,
    generator: torch.Generator | None = None,
) -> list[SpanOverlap]:
    """Overlaps between spans of independent Gaussian direction sets of the given sizes (sampled baseline)."""
    out = []
    for _ in range(draws):
        a = torch.randn(count_a, d, generator=generator, dtype=torch.float64)
        b = torch.randn(count_b, d, generator=generator, dtype=torch.float64)
        out.append(span_overlap(a, b, dim=dim))
    return out


def random_subset_overlaps(
    dec_a: Tensor, dec_b: Tensor, count_a: int, count_b: int, *, dim: int | None = None,
    draws: int = 10, generator: torch.Generator | None = None,
) -> list[SpanOverlap]:
    """Overlaps between random latent subsets of two SAEs' decoders, of the given sizes.

    A sharper control than isotropic random subspaces: decoder directions all live where the data
    varies, so any two sets of them overlap more than random subspaces of R^d do.
    """
    out = []
    for _ in range(draws):
        ia = torch.randperm(dec_a.shape[0], generator=generator)[:count_a]
        ib = torch.randperm(dec_b.shape[0], generator=generator)[:count_b]
        out.append(span_overlap(dec_a[ia], dec_b[ib], dim=dim))
    return out


def pairwise_overlaps(sets: Sequence[Tensor], *, dim: int | None = None) -> list[SpanOverlap]:
    """Span overlaps of every pair (i < j) of direction sets, e.g. one set per seed."""
    return [span_overlap(sets[i], sets[j], dim=dim) for i, j in combinations(range(len(sets)), 2)]


# --------------------------------------------------------------------------------------------
# effective rank


@dataclass(frozen=True)
class Spectrum:
    """SVD spectrum of a set of unit directions and three effective ranks of it."""

    n_vectors: int
    d: int
    energy: list[float]
    """Normalised squared singular values λ_i/Σλ, descending (sums to 1)."""
    participation_ratio: float
    """(Σλ)²/Σλ²: equals r for r equal-energy directions."""
    entropy_rank: float
    """exp(entropy of λ/Σλ) (Roy & Vetterli's effective rank, on energies)."""
    rank90: int
    """Fewest singular directions holding 90% of the energy."""


def spectrum(rows: Tensor, *, energy_cut: float = 0.9) -> Spectrum:
    """Effective ranks of the span of `rows [r, d]`, each row unit-normalised first."""
    if rows.ndim != 2:
        raise DataError(f"directions: expected [r, d], got {tuple(rows.shape)}")
    if rows.shape[0] == 0:
        return Spectrum(0, rows.shape[1], [], 0.0, 0.0, 0)
    u = unit_rows(rows)
    lam = _gram_singular(u)[0] ** 2 if u.shape[0] > u.shape[1] else torch.linalg.svdvals(u) ** 2
    p = lam / lam.sum()
    nz = p[p > 0]
    return Spectrum(
        n_vectors=rows.shape[0],
        d=rows.shape[1],
        energy=p.tolist(),
        participation_ratio=float(1.0 / (p**2).sum()),
        entropy_rank=float(torch.exp(-(nz * nz.log()).sum())),
        rank90=int((torch.cumsum(p, 0) < energy_cut - 1e-12).sum()) + 1,
    )


# --------------------------------------------------------------------------------------------
# groups of mutually close directions across seeds


@dataclass(frozen=True)
class DirectionGroup:
    """A connected group of directions (edges: |cos| above a threshold), and the rank of its span."""

    members: list[tuple[int, int]]
    """(set index, e.g. seed; row index within that set, e.g. latent)."""
    n_sets: int
    """How many different sets (seeds) the group draws from."""
    rank90: int
    participation_ratio: float

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class GroupReport:
    """All groups of size ≥ 2 found among the directions, largest first."""

    threshold: float
    n_directions: int
    groups: list[DirectionGroup] = field(default_factory=list)


def close_groups(
    sets: Sequence[Tensor], *, threshold: float = 0.5, chunk: int = 2048, absolute: bool = True
) -> GroupReport:
    """Connected components of the graph joining directions (from any sets) whose cosine exceeds `threshold`.

    Cosines are computed in row chunks, so memory is `chunk × N` plus the edges, never `N × N`.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not sets:
        return GroupReport(threshold, 0, [])
    dims = {s.shape[1] for s in sets}
    if len(dims) != 1:
        raise DataError(f"close_groups: direction sets have different widths {sorted(dims)}")
    owner = torch.cat([torch.full((s.shape[0],), i, dtype=torch.long) for i, s in enumerate(sets)])
    local = torch.cat([torch.arange(s.shape[0]) for s in sets])
    u = unit_rows(torch.cat([s.detach().cpu() for s in sets]))
    n = u.shape[0]
    src, dst = [], []
    for start in range(0, n, chunk):
        cos = u[start : start + chunk] @ u.T
        if absolute:
            cos = cos.abs()
        i, j = (cos > threshold).nonzero(as_tuple=True)
        i = i + start
        keep = i < j
        src.append(i[keep])
        dst.append(j[keep])
    src_t, dst_t = torch.cat(src), torch.cat(dst)
    graph = coo_matrix((torch.ones(src_t.numel()).numpy(), (src_t.numpy(), dst_t.numpy())), shape=(n, n))
    _, labels_np = connected_components(graph, directed=False)
    labels = torch.from_numpy(labels_np).long()
    sizes = torch.bincount(labels)
    groups = []
    for label in torch.nonzero(sizes >= 2).flatten().tolist():
        idx = torch.nonzero(labels == label).flatten()
        spec = spectrum(u[idx])
        groups.append(
            DirectionGroup(
                members=list(zip(owner[idx].tolist(), local[idx].tolist())),
                n_sets=int(owner[idx].unique().numel()),
                rank90=spec.rank90,
                participation_ratio=spec.participation_ratio,
            )
        )
    groups.sort(key=lambda g: (-g.size, g.rank90))
    return GroupReport(threshold, n, groups)
