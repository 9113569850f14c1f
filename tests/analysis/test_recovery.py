"""Recovery metrics on hand-built dictionaries: perfect, rotated within a group, missing a group."""

from __future__ import annotations

import math

import pytest
import torch

from saeseeds.analysis.recovery import (
    evaluate_recovery,
    group_subspace_angles,
    group_usage,
    match_features,
    nearest_truth,
    summarize_recovery,
)
from saeseeds.config import SyntheticConfig
from saeseeds.data.synthetic import AMBIGUOUS, IDENTIFIABLE, SINGLE, GroundTruth, SyntheticModel
from saeseeds.errors import DataError


@pytest.fixture(scope="module")
def model() -> SyntheticModel:
    cfg = SyntheticConfig(
        d_in=24, num_features=30, num_ambiguous_groups=1, num_identifiable_groups=1, group_rank=3,
        group_firing_prob=0.2, max_firing_prob=0.3, seed=3,
    )
    return SyntheticModel(cfg)


def perfect_dictionary(truth: GroundTruth, extra: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder = the true directions (shuffled) plus a few random latents; encoder = decoder."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.cat([truth.directions, torch.randn(extra, truth.d_in, generator=g)])
    perm = torch.randperm(rows.shape[0], generator=g)
    dec = rows[perm]
    return dec, dec.clone()


def rotate_group(truth: GroundTruth, dec: torch.Tensor, group: int, angle: float) -> torch.Tensor:
    """Replace the decoder rows of `group`'s features by the group basis rotated by `angle` in every plane."""
    members = truth.group_members(group)
    v = truth.directions[members].double()
    r = v.shape[0]
    # rotation exp(angle * A) with A antisymmetric, mixing every pair of basis vectors
    a = torch.zeros(r, r, dtype=torch.float64)
    for i in range(r):
        for j in range(i + 1, r):
            a[i, j], a[j, i] = 1.0, -1.0
    q = torch.linalg.matrix_exp(angle * a / math.sqrt(r - 1))
    out = dec.clone()
    rows = [int(torch.nonzero((dec - truth.directions[m]).abs().sum(1) < 1e-6)[0]) for m in members]
    out[rows] = (q @ v).float()
    return out


def test_perfect_dictionary_scores_perfectly(model: SyntheticModel) -> None:
    truth = model.truth
    dec, enc = perfect_dictionary(truth)
    match = match_features(truth.directions, dec)
    assert torch.allclose(match.hungarian_cos, torch.ones(30, dtype=torch.float64), atol=1e-5)
    assert torch.equal(match.hungarian_latent, match.max_latent)
    assert torch.allclose(dec[match.hungarian_latent], truth.directions)
    angles = group_subspace_angles(truth, match, dec)
    assert angles.shape == (2, 3) and float(angles.max()) < 1e-3
    # two seeds with the same dictionary in different latent orders: everything is shared
    dec2 = dec[torch.randperm(dec.shape[0], generator=torch.Generator().manual_seed(5))]
    result = evaluate_recovery(truth, [(dec, enc), (dec2, dec2.clone())])
    assert torch.allclose(result.feature_shared, torch.ones(30, dtype=torch.float64))
    assert torch.allclose(result.feature_recovered, torch.ones(30, dtype=torch.float64))
    assert float(result.group_angles.max()) < 1e-3
    true_latents = result.latent_kind >= 0
    assert int(true_latents.sum()) == 2 * 30  # the random extra latents lie in no unit of truth
    assert torch.allclose(result.latent_stability[true_latents], torch.ones(60, dtype=torch.float64))


def test_rotation_within_a_group_is_low_per_feature_and_perfect_per_subspace(model: SyntheticModel) -> None:
    truth = model.truth
    dec, enc = perfect_dictionary(truth)
    rotated = rotate_group(truth, dec, 0, math.radians(50))
    amb = truth.group_members(0)
    match = match_features(truth.directions, rotated)
    assert float(match.max_cos[amb].max()) < 0.9  # no latent is close to any true basis vector of the group
    others = truth.group != 0
    assert torch.allclose(match.hungarian_cos[others], torch.ones(int(others.sum()), dtype=torch.float64), atol=1e-5)
    angles = group_subspace_angles(truth, match, rotated)
    assert float(angles.max()) < 1e-3  # the subspace is recovered exactly
    # seed A learned the true basis, seed B a rotated one: the group's features are not shared, the rest are
    result = evaluate_recovery(truth, [(dec, enc), (rotated, rotated.clone())])
    assert float(result.feature_shared[amb].max()) == 0.0
    assert float(result.feature_shared[others].min()) == 1.0
    assert float(result.feature_recovered[amb].max()) == 0.5  # only seed A has cos > 0.9
    summary = summarize_recovery(truth, result)
    assert summary["by_kind"]["ambiguous"]["shared_fraction"] == 0.0
    assert summary["by_kind"]["identifiable"]["shared_fraction"] == 1.0
    assert summary["by_kind"]["ambiguous"]["matched_span_max_angle_deg_worst"] < 0.1


def orthogonal_truth() -> GroundTruth:
    """Hand-built truth in R^12: groups {0,1,2} (ambiguous) and {3,4,5} (identifiable), 4 singles; axes."""
    cfg = SyntheticConfig(d_in=12, num_features=10, num_ambiguous_groups=1, num_identifiable_groups=1, group_rank=3)
    return GroundTruth(
        directions=torch.eye(12)[:10],
        scales=torch.ones(10),
        firing_prob=torch.full((10,), 0.1),
        mean_magnitude=torch.ones(10),
        group=torch.tensor([0, 0, 0, 1, 1, 1, -1, -1, -1, -1]),
        kind=torch.tensor([AMBIGUOUS] * 3 + [IDENTIFIABLE] * 3 + [SINGLE] * 4),
        group_kind=torch.tensor([AMBIGUOUS, IDENTIFIABLE]),
        config=cfg,
    )


def test_group_usage_measures_the_subspace_the_encoder_uses() -> None:
    truth = orthogonal_truth()
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(500, 3, generator=g) @ truth.directions[truth.group_members(k)] for k in range(2)]
    # a dictionary rotated inside group 0 (its basis is arbitrary) still uses exactly the group's subspace
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g))
    dec = truth.directions.clone()
    dec[:3] = q @ dec[:3]
    signed = torch.cat([dec, -dec])  # ± pairs so a ReLU encoder can code signed coefficients

    def tied(d: torch.Tensor):
        return lambda x: torch.relu(x @ d.T)

    good = group_usage(truth, inputs, tied(signed), signed)
    assert float(good.angles.max()) < 1e-4
    assert torch.allclose(good.captured, torch.ones(2, dtype=torch.float64), atol=1e-5)
    assert good.num_latents.tolist()[1] <= 6
    # a dictionary that lost group 0 (two rows replaced by unrelated directions) uses the wrong subspace
    broken = truth.directions.clone()
    broken[1] = torch.nn.functional.normalize(torch.tensor([0.0, 0.2, 0, 0, 0, 0, 0, 0, 0, 0, 1.0, 0]), dim=0)
    broken[2] = torch.eye(12)[11]
    broken = torch.cat([broken, -broken])
    bad = group_usage(truth, inputs, tied(broken), broken)
    assert float(bad.angles[0].max()) > math.radians(60)
    assert float(bad.captured[0]) < 0.5
    assert float(bad.angles[1].max()) < 1e-4


def test_group_inputs_are_what_each_group_writes(model: SyntheticModel) -> None:
    inputs = model.group_inputs(20_000, torch.Generator().manual_seed(0))
    assert len(inputs) == 2 and all(x.shape[0] > 1000 for x in inputs)
    for g, x in enumerate(inputs):  # each lies in its group's span
        basis = model.truth.directions[model.truth.group_members(g)]
        residual = x - (x @ basis.T) @ basis
        assert float(residual.norm() / x.norm()) < 1e-5


def test_nearest_truth_assigns_latents_to_units(model: SyntheticModel) -> None:
    truth = model.truth
    members = truth.group_members(1)
    mix = truth.directions[members].sum(0)  # inside identifiable group 1's subspace
    single = int(torch.nonzero(truth.kind == SINGLE)[0])
    unit, share = nearest_truth(truth, torch.stack([mix, truth.directions[single]]))
    assert unit.tolist() == [1, truth.num_groups + 0]
    assert torch.allclose(share, torch.ones(2, dtype=torch.float64), atol=1e-5)
    assert truth.group_kind.tolist() == [AMBIGUOUS, IDENTIFIABLE]


def test_sharing_counts_only_the_matched_partner(model: SyntheticModel) -> None:
    truth = model.truth
    dec, enc = perfect_dictionary(truth, extra=0)
    # seed B: same dictionary, but the decoder of a single feature's latent is swapped with another's
    single_a, single_b = [int(i) for i in torch.nonzero(truth.kind == SINGLE)[:2].flatten()]
    match = match_features(truth.directions, dec)
    la, lb = int(match.hungarian_latent[single_a]), int(match.hungarian_latent[single_b])
    dec_b = dec.clone()
    dec_b[[la, lb]] = dec_b[[lb, la]]  # decoders swapped, encoders not: the two latents are not shared
    result = evaluate_recovery(truth, [(dec, enc), (dec_b, enc.clone())])
    assert result.feature_shared[single_a] == 0.0 and result.feature_shared[single_b] == 0.0
    assert int((result.feature_shared == 1.0).sum()) == truth.num_features - 2


def test_bad_shapes_raise(model: SyntheticModel) -> None:
    with pytest.raises(DataError, match="decoder"):
        match_features(model.truth.directions, torch.zeros(5, 7))
    with pytest.raises(DataError, match="no SAEs"):
        evaluate_recovery(model.truth, [])
    dec, enc = perfect_dictionary(model.truth)
    with pytest.raises(DataError, match="encoders"):
        evaluate_recovery(model.truth, [(dec, enc)], encoders=[lambda x: x])
