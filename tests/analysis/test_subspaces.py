"""Tests of span overlaps, random baselines, effective ranks and close-direction groups on constructed sets."""

from __future__ import annotations

import math

import pytest
import torch

from saeseeds.analysis.subspaces import (
    close_groups,
    expected_random_mean_cos2,
    pairwise_overlaps,
    principal_basis,
    random_isotropic_overlaps,
    random_subset_overlaps,
    span_overlap,
    spectrum,
    summarize_overlaps,
)
from saeseeds.errors import DataError


def test_subspace_with_itself_has_zero_angles_even_in_another_basis() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 20, generator=g, dtype=torch.float64)
    mix = torch.randn(4, 4, generator=g, dtype=torch.float64)
    o = span_overlap(a, mix @ a)  # same span, different (non-orthogonal) spanning set
    assert o.dim_a == o.dim_b == 4
    assert max(o.angles_deg) < 1e-5
    assert o.mean_cos2 == pytest.approx(1.0)
    assert o.captured_a_in_b == pytest.approx(1.0) and o.captured_b_in_a == pytest.approx(1.0)


def test_orthogonal_subspaces_have_90_degree_angles() -> None:
    eye = torch.eye(10)
    o = span_overlap(eye[:3] * 2.0, eye[3:6] + 0.0)
    assert o.angles_deg == pytest.approx([90.0] * 3)
    assert o.mean_cos2 == pytest.approx(0.0, abs=1e-12)
    assert o.captured_a_in_b == pytest.approx(0.0, abs=1e-12)


def test_partial_overlap_and_nested_spans() -> None:
    eye = torch.eye(6)
    o = span_overlap(eye[[0, 1]], eye[[1, 2, 3]])
    assert sorted(o.angles_deg) == pytest.approx([0.0, 90.0], abs=1e-6)
    assert o.mean_cos2 == pytest.approx(0.5)
    assert o.captured_a_in_b == pytest.approx(0.5)
    assert o.captured_b_in_a == pytest.approx(1 / 3)
    assert o.expected_random_mean_cos2 == pytest.approx(3 / 6)


def test_random_baseline_matches_analytic_r_over_d() -> None:
    r, d = 5, 40
    assert expected_random_mean_cos2(r, r, d) == pytest.approx(r / d)
    draws = random_isotropic_overlaps(r, r, d, draws=100, generator=torch.Generator().manual_seed(1))
    summary = summarize_overlaps(draws)
    assert summary.n == 100
    assert summary.mean_cos2_mean == pytest.approx(r / d, abs=0.02)
    assert len(summary.cos2_curve) == r
    assert summary.cos2_curve == sorted(summary.cos2_curve, reverse=True)


def test_principal_basis_truncates_to_dominant_directions() -> None:
    eye = torch.eye(8)
    rows = torch.cat([eye[0].repeat(5, 1), eye[1].repeat(3, 1), eye[2:3]])
    basis = principal_basis(rows, dim=2)
    assert basis.shape == (8, 2)
    assert torch.allclose(basis.abs()[:2].sum(0), torch.ones(2, dtype=torch.float64))
    assert principal_basis(rows).shape == (8, 3)
    with pytest.raises(DataError, match="equal d"):
        span_overlap(rows, torch.ones(2, 7))


def test_random_subset_and_pairwise_overlaps() -> None:
    g = torch.Generator().manual_seed(2)
    dec = torch.randn(30, 12, generator=g)
    draws = random_subset_overlaps(dec, dec, 12, 12, draws=3, generator=g)
    assert all(o.mean_cos2 == pytest.approx(1.0) for o in draws)  # 12 generic rows span R^12
    sets = [torch.eye(12)[:3], torch.eye(12)[:3] * -1, torch.eye(12)[6:9]]
    pairs = pairwise_overlaps(sets)
    assert [round(p.mean_cos2, 6) for p in pairs] == [1.0, 0.0, 0.0]


def test_spectrum_effective_ranks() -> None:
    eye = torch.eye(16)
    s = spectrum(eye[:4] * 3.0)
    assert s.participation_ratio == pytest.approx(4.0)
    assert s.entropy_rank == pytest.approx(4.0)
    assert s.rank90 == 4
    dup = spectrum(eye[0].repeat(7, 1))
    assert dup.participation_ratio == pytest.approx(1.0) and dup.rank90 == 1
    assert sum(dup.energy) == pytest.approx(1.0)
    assert spectrum(torch.zeros(0, 5)).n_vectors == 0


def test_close_groups_find_low_rank_cross_seed_groups() -> None:
    g = torch.Generator().manual_seed(3)
    d = 64
    e1, e2 = torch.eye(d)[0], torch.eye(d)[1]
    noise = [torch.randn(5, d, generator=g) for _ in range(3)]
    # one direction per seed inside span(e1, e2), rotating: seed0 e1, seed1 45°, seed2 -e2·0.6+e1·0.8
    group_dirs = [e1, (e1 + e2) / math.sqrt(2), 0.8 * e1 - 0.6 * e2]
    sets = [torch.cat([n[:2], v[None], n[2:]]) for n, v in zip(noise, group_dirs)]
    rep = close_groups(sets, threshold=0.6, chunk=4)
    assert rep.n_directions == 18
    assert len(rep.groups) == 1
    grp = rep.groups[0]
    assert sorted(grp.members) == [(0, 2), (1, 2), (2, 2)]
    assert grp.size == 3 and grp.n_sets == 3 and grp.rank90 == 2
    assert close_groups(sets, threshold=0.99).groups == []
