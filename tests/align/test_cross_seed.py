"""The cross-seed result: stability under both definitions against a brute-force dense computation, unequal
dictionary sizes, re-judging without re-aligning, the found-only-in-base curve, and the stored format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from helpers.no_alignment import forbid_alignment
from saeseeds.align import CrossSeedResult, SharingRule, align_seeds
from saeseeds.align.cross_seed import only_in_base_curve
from saeseeds.errors import DataError


def seeds_with_common_latents(sizes: list[int], d: int, n_common: int, seed: int) -> list[tuple[torch.Tensor, ...]]:
    """SAEs whose first `n_common` latents are noisy copies of common ones (permuted), the rest random."""
    g = torch.Generator().manual_seed(seed)
    common_dec, common_enc = torch.randn(n_common, d, generator=g), torch.randn(n_common, d, generator=g)
    out = []
    for n in sizes:
        dec, enc = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
        k = min(n, n_common)
        noise = 0.3 * torch.rand(k, 1, generator=g)  # some copies fall below τ
        dec[:k] = common_dec[:k] + noise * torch.randn(k, d, generator=g)
        enc[:k] = common_enc[:k] + noise * torch.randn(k, d, generator=g)
        perm = torch.randperm(n, generator=g)
        out.append((dec[perm], enc[perm]))
    return out


def dense_found(dec_a, enc_a, dec_b, enc_b, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: (shared, reappears) of a's latents with b, from full cosine matrices and scipy."""
    def unit(w):
        w = w.double().numpy()
        return w / np.linalg.norm(w, axis=1, keepdims=True)

    cd, ce = unit(dec_a) @ unit(dec_b).T, unit(enc_a) @ unit(enc_b).T
    n = cd.shape[0]
    pd, pe = np.full(n, -1), np.full(n, -1)
    r, c = linear_sum_assignment(cd, maximize=True)
    pd[r] = c
    r, c = linear_sum_assignment(ce, maximize=True)
    pe[r] = c
    rows = np.arange(n)
    ok = (pd == pe) & (pd >= 0)
    shared = np.zeros(n, dtype=bool)
    shared[ok] = (cd[rows[ok], pd[ok]] > tau) & (ce[rows[ok], pe[ok]] > tau)
    return shared, cd.max(axis=1) >= tau


@pytest.mark.parametrize("sizes", [[60, 60, 60, 60], [50, 64, 40]])
def test_stability_equals_brute_force_under_both_definitions(sizes: list[int]) -> None:
    weights = seeds_with_common_latents(sizes, 24, 30, seed=len(sizes))
    result = align_seeds(weights, [f"s{i}" for i in range(len(sizes))])
    for i in range(len(sizes)):
        found = [dense_found(*weights[i], *weights[j], 0.7) for j in range(len(sizes)) if j != i]
        np.testing.assert_array_equal(result.stability(i, "shared"), np.mean([f[0] for f in found], axis=0))
        np.testing.assert_array_equal(result.stability(i, "reappears"), np.mean([f[1] for f in found], axis=0))
    shared = result.stability(0, "shared")
    assert 0 < shared.max() and shared.min() == 0  # the case is not degenerate
    assert (result.stability(0, "reappears") >= shared).all()  # sharing implies reappearing


def test_groups_follow_the_rule_and_rejudging_needs_no_alignment(monkeypatch: pytest.MonkeyPatch) -> None:
    weights = seeds_with_common_latents([40, 40, 40], 16, 25, seed=7)
    result = align_seeds(weights, ["a", "b", "c"])
    fresh = align_seeds(weights, ["a", "b", "c"], rule=SharingRule(threshold=0.5, stability="reappears"))

    forbid_alignment(monkeypatch)
    judged = result.with_rule(SharingRule(threshold=0.5, stability="reappears"))
    for i in range(3):
        np.testing.assert_array_equal(judged.stability(i), fresh.stability(i))
        g = judged.groups()[i]
        np.testing.assert_array_equal(g.stable, g.stability >= 0.5)
        np.testing.assert_array_equal(g.unstable, g.stability == 0)
    np.testing.assert_array_equal(judged.shared_fractions(), fresh.shared_fractions())
    with pytest.raises(DataError, match="absolute"):
        result.with_rule(SharingRule(absolute=True))


def test_save_load_round_trip(tmp_path) -> None:
    weights = seeds_with_common_latents([30, 36, 30], 12, 20, seed=3)
    rule = SharingRule(threshold=0.6, cut="endpoints")
    result = align_seeds(weights, ["x", "y", "z"], rule=rule, label="h/cfg", hookpoint="h", sae_name="cfg",
                        paths=["p0", "p1", "p2"])
    result.frequencies = [np.linspace(0, 1, 30), None, np.zeros(30)]
    result.save(tmp_path / "r")
    back = CrossSeedResult.load(tmp_path / "r")
    assert (back.rule, back.names, back.num_latents, back.label) == (rule, ["x", "y", "z"], [30, 36, 30], "h/cfg")
    assert back.digests == result.digests and len(back.digests[0]) == 64
    for key, al in result.alignments.items():
        np.testing.assert_array_equal(back.alignments[key].shared, al.shared)
        np.testing.assert_array_equal(back.alignments[key].dec_partner, al.dec_partner)
        np.testing.assert_allclose(back.alignments[key].dec_max_cos, al.dec_max_cos)
    for i in range(3):
        np.testing.assert_array_equal(back.stability(i), result.stability(i))
    np.testing.assert_array_equal(back.frequencies[0], result.frequencies[0])
    assert back.frequencies[1] is None
    assert json.loads((tmp_path / "r" / "cross_seed.json").read_text())["schema"] == "saeseeds.cross_seed/1"
    with np.load(tmp_path / "r" / "latents" / "1.npz") as t:
        np.testing.assert_array_equal(t["stability_shared"], result.stability(1, "shared"))
        np.testing.assert_array_equal(t["stable"], rule.stable(result.stability(1)))


def test_load_names_the_problem(tmp_path) -> None:
    with pytest.raises(DataError, match="cross_seed.json is missing"):
        CrossSeedResult.load(tmp_path)
    (tmp_path / "cross_seed.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(DataError, match="format"):
        CrossSeedResult.load(tmp_path)


def test_needs_two_seeds_of_one_width() -> None:
    w = seeds_with_common_latents([10, 10], 8, 5, seed=0)
    with pytest.raises(DataError, match="two seeds"):
        align_seeds(w[:1], ["a"])
    with pytest.raises(DataError, match="d_in"):
        align_seeds([w[0], (torch.randn(10, 9), torch.randn(10, 9))], ["a", "b"])


def test_only_in_base_curve() -> None:
    s1 = np.array([1, 0, 0, 0, 1], dtype=bool)
    s2 = np.array([0, 1, 0, 0, 1], dtype=bool)
    mean, std = only_in_base_curve([s1, s2])
    np.testing.assert_allclose(mean, [5, 3, 2])  # orderings (s1, s2) and (s2, s1): 5, 3, 2
    np.testing.assert_allclose(std, [0, 0, 0])
    s3 = np.array([1, 1, 1, 0, 0], dtype=bool)
    mean, _ = only_in_base_curve([s1, s3])
    np.testing.assert_allclose(mean, [5, (3 + 2) / 2, 1])
