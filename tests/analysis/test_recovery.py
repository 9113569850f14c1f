"""Recovery metrics on hand-built dictionaries: perfect, rotated within a group, missing a group; the in-group axis
statistics; the composed-features classification."""

from __future__ import annotations

import math

import pytest
import torch

from saeseeds.align.cross_seed import align_seeds
from saeseeds.analysis.composed import (
    COMPOSED,
    DEAD,
    FEATURE,
    OTHER,
    PLANE,
    classify_latents,
    composed_directions,
    summarize_composed,
)
from saeseeds.analysis.recovery import (
    evaluate_recovery,
    group_subspace_angles,
    group_usage,
    in_group_axes,
    match_features,
    nearest_truth,
    summarize_recovery,
)
from saeseeds.config import SyntheticConfig
from saeseeds.data.synthetic import (
    AMBIGUOUS,
    CONTROL,
    IDENTIFIABLE,
    SINGLE,
    GroundTruth,
    SyntheticModel,
)
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


def test_in_group_axes_tells_axes_from_cube_vertices_and_rotations() -> None:
    cfg = SyntheticConfig(d_in=24, num_features=30, num_ambiguous_groups=1, num_control_groups=1,
                          num_identifiable_groups=1, group_rank=4, seed=3)
    truth = SyntheticModel(cfg).truth
    assert truth.group_kind.tolist() == [AMBIGUOUS, CONTROL, IDENTIFIABLE]
    v = truth.directions[truth.group_members(1)].double()
    vertex = torch.tensor([1.0, -1.0, 1.0, 1.0], dtype=torch.float64) / 2  # a cube vertex, r = 4
    mix = torch.tensor([0.8, 0.6, 0.0, 0.0], dtype=torch.float64)
    dec = torch.stack([v[2], vertex @ v, mix @ v, truth.directions[-1].double()])
    unit, _ = nearest_truth(truth, dec)
    assert unit[:3].tolist() == [1, 1, 1]
    axis_cos, mixed, vertex_cos = in_group_axes(truth, dec, torch.where(unit < truth.num_groups, unit, -1))
    assert torch.allclose(axis_cos[:3], torch.tensor([1.0, 0.5, 0.8], dtype=torch.float64), atol=1e-5)
    assert torch.allclose(mixed[:3], torch.tensor([1.0, 4.0, 1 / (0.8**4 + 0.6**4)], dtype=torch.float64), atol=1e-5)
    assert torch.allclose(vertex_cos[:3], torch.tensor([0.5, 1.0, 0.7], dtype=torch.float64), atol=1e-5)
    assert torch.isnan(axis_cos[3]) and torch.isnan(mixed[3])  # a single feature's latent
    # the summary reports the statistics by group kind, control groups included
    full = torch.cat([truth.directions, torch.randn(4, 24, generator=torch.Generator().manual_seed(1))])
    summary = summarize_recovery(truth, evaluate_recovery(truth, [(full, full), (full, full.clone())]))
    assert list(summary["by_kind"])[:3] == ["identifiable", "control", "ambiguous"]
    for kind in ("identifiable", "control", "ambiguous"):
        assert summary["by_kind"][kind]["latent_axis_cos_median"] == pytest.approx(1.0)
        assert summary["by_kind"][kind]["shared_fraction"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def composed_truth() -> GroundTruth:
    cfg = SyntheticConfig(kind="composed", d_in=12, num_features=7, composed_num_x=3, composed_num_y=4,
                          num_ambiguous_groups=0, num_identifiable_groups=0, seed=2)
    return SyntheticModel(cfg).truth


def _composed_decoder(truth: GroundTruth) -> torch.Tensor:
    """Hand-made latents: x_0, 2·y_2 (true), x_1 + y_3 (composed), a 35° direction in the (x_2, y_1) plane
    (composed: cos 10° with the diagonal), a 22° direction in that plane with 10% of its energy outside (plane:
    cos 0.88 with x_2, 0.87 with the diagonal), x_0 − y_0 (plane), a direction orthogonal to every x and y
    (other), and a dead copy of x_1."""
    x, y = truth.directions[:3].double(), truth.directions[3:].double()
    outside = torch.randn(12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    outside = outside - truth.directions.double().T @ (truth.directions.double() @ outside)
    outside = outside / outside.norm()

    def in_plane(deg: float) -> torch.Tensor:
        return math.cos(math.radians(deg)) * x[2] + math.sin(math.radians(deg)) * y[1]

    leaky = math.sqrt(0.9) * in_plane(22) + math.sqrt(0.1) * outside
    rows = [x[0], 2 * y[2], x[1] + y[3], in_plane(35), leaky, x[0] - y[0], outside, x[1]]
    return torch.stack(rows)


def test_classify_latents_on_a_hand_made_decoder(composed_truth: GroundTruth) -> None:
    truth = composed_truth
    comp = composed_directions(truth)
    assert comp.shape == (12, 12)
    assert torch.allclose(comp[1 * 4 + 3], (truth.directions[1] + truth.directions[6]).double() / math.sqrt(2))
    alive = torch.tensor([True] * 7 + [False])
    got = classify_latents(truth, _composed_decoder(truth), threshold=0.9, alive=alive)
    assert got.latent_class.tolist() == [FEATURE, FEATURE, COMPOSED, COMPOSED, PLANE, PLANE, OTHER, DEAD]
    assert got.target.tolist() == [0, 3 + 2, 1 * 4 + 3, 2 * 4 + 1, 2 * 4 + 1, 0 * 4 + 0, -1, -1]
    assert got.features_found.tolist() == [True, False, False, False, False, True, False]  # x_1 only in a dead latent
    assert got.composed_found.nonzero().flatten().tolist() == [7, 9]
    for row, angle in ((2, 45.0), (3, 35.0), (4, 22.0), (5, -45.0)):
        assert float(got.plane_angle_deg[row]) == pytest.approx(angle, abs=1e-3)
    assert torch.isnan(got.plane_angle_deg[6]) and torch.isnan(got.plane_angle_deg[7])
    # a looser threshold makes the leaky 22° latent a feature (cos 0.88 with x_2); x_1's copy stays one (no mask)
    loose = classify_latents(truth, _composed_decoder(truth), threshold=0.85)
    assert loose.latent_class[4] == FEATURE and loose.latent_class[7] == FEATURE
    with pytest.raises(DataError, match="threshold"):
        classify_latents(truth, _composed_decoder(truth), threshold=0.7)


def test_summarize_composed_counts_and_cross_seed_consistency(composed_truth: GroundTruth) -> None:
    truth = composed_truth
    dec = _composed_decoder(truth).float()
    x, y = truth.directions[:3], truth.directions[3:]
    other_seed = torch.cat([x, y])  # the second seed learned exactly the 7 true features
    classes = [classify_latents(truth, dec), classify_latents(truth, other_seed)]
    cross = align_seeds([(dec, dec.clone()), (other_seed, other_seed.clone())], ["seed0", "seed1"])
    summary = summarize_composed(truth, classes, cross)
    assert summary["latents_per_seed"]["feature"] == [3, 7]  # the un-killed copy of x_1 counts as a feature
    assert summary["latents_per_seed"]["composed"] == [2, 0]
    assert summary["latents_per_seed"]["plane"] == [2, 0]
    assert summary["features_found_per_seed"] == [3, 7]
    assert summary["features_found_jaccard"] == pytest.approx(3 / 7)
    assert summary["composed_found_jaccard"] == pytest.approx(0.0)
    # seed0's x_0, 2·y_2 and x_1 latents are shared with seed1's copies. Of its two composed latents one is "shared"
    # with a true feature's latent: cos(x_i, composed_ij) = 1/√2 > τ = 0.7, so τ = 0.7 cannot tell them apart
    assert summary["latent_stability_by_class"]["composed"] == 0.5
    assert summary["latent_stability_by_class"]["feature"] >= 0.7  # seed1's 7 latents: 3 copies and near misses
    assert summary["latent_stability_by_class"]["other"] == 0.0
    assert sum(summary["plane_angle_deg_histogram"]["counts"]) >= 1
