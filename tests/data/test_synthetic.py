"""Synthetic generator: firing statistics, rotation invariance of ambiguous groups, control groups, the composed
model, determinism, files."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import ks_2samp

from saeseeds.config import RunConfig, SyntheticConfig
from saeseeds.data.synthetic import (
    AMBIGUOUS,
    COMPOSED_X,
    COMPOSED_Y,
    CONTROL,
    IDENTIFIABLE,
    SINGLE,
    SyntheticModel,
    build_synthetic_source,
    load_ground_truth,
    save_ground_truth,
)
from saeseeds.errors import ConfigError, DataError


def small_config(**kw) -> SyntheticConfig:
    base = dict(
        d_in=16,
        num_features=40,
        num_ambiguous_groups=2,
        num_identifiable_groups=2,
        group_rank=3,
        group_firing_prob=0.2,
        max_firing_prob=0.3,
        zipf_exponent=1.0,
        seed=7,
    )
    base.update(kw)
    return SyntheticConfig(**base)


def run_config(syn: SyntheticConfig, batch_size: int = 64, num_tokens: int = 256, eval_tokens: int = 100) -> RunConfig:
    cfg = RunConfig()
    cfg.data.source = "synthetic"
    cfg.synthetic = syn
    cfg.train.batch_size = batch_size
    cfg.train.num_tokens = num_tokens
    cfg.train.eval_tokens = eval_tokens
    return cfg


def test_layout_kinds_and_unit_directions() -> None:
    model = SyntheticModel(small_config())
    truth = model.truth
    assert truth.directions.shape == (40, 16)
    assert torch.allclose(truth.directions.norm(dim=1), torch.ones(40), atol=1e-5)
    assert truth.kind[:6].tolist() == [AMBIGUOUS] * 6
    assert truth.kind[6:12].tolist() == [IDENTIFIABLE] * 6
    assert (truth.kind[12:] == SINGLE).all() and (truth.group[12:] == -1).all()
    assert truth.group_kind.tolist() == [AMBIGUOUS, AMBIGUOUS, IDENTIFIABLE, IDENTIFIABLE]
    for g in range(4):  # directions inside a group are orthonormal
        v = truth.directions[truth.group_members(g)]
        assert torch.allclose(v @ v.T, torch.eye(3), atol=1e-5)
    # single features follow the power law from max_firing_prob
    expected = 0.3 / torch.arange(1, 29, dtype=torch.float64)
    assert torch.allclose(truth.firing_prob[12:].double(), expected, rtol=1e-6)


@pytest.mark.parametrize("correlation", [0.0, 0.6])
def test_empirical_firing_frequencies_match_config(correlation: float) -> None:
    model = SyntheticModel(small_config(firing_correlation=correlation, correlation_block_size=3))
    n = 60_000
    coeffs = model.sample_coefficients(n, torch.Generator().manual_seed(1))
    freq = (coeffs != 0).double().mean(0)
    p = model.truth.firing_prob.double()
    tolerance = 5 * torch.sqrt(p * (1 - p) / n) + 1e-4
    assert ((freq - p).abs() <= tolerance).all(), (freq - p).abs().max()


def test_firing_correlation_makes_units_in_a_block_co_fire() -> None:
    n = 60_000
    base = small_config(num_ambiguous_groups=0, num_identifiable_groups=0, max_firing_prob=0.2, zipf_exponent=0.0)
    indep = SyntheticModel(base).sample_firing(n, torch.Generator().manual_seed(2)).double()
    corr = SyntheticModel(
        small_config(num_ambiguous_groups=0, num_identifiable_groups=0, max_firing_prob=0.2, zipf_exponent=0.0,
                     firing_correlation=0.7, correlation_block_size=4)
    ).sample_firing(n, torch.Generator().manual_seed(2)).double()
    def pair_corr(f: torch.Tensor, i: int, j: int) -> float:
        return float(torch.corrcoef(torch.stack([f[:, i], f[:, j]]))[0, 1])
    assert abs(pair_corr(indep, 0, 1)) < 0.03
    assert pair_corr(corr, 0, 1) > 0.3  # same block
    assert abs(pair_corr(corr, 0, 5)) < 0.03  # different blocks


def _group_coefficients(model: SyntheticModel, group: int, n: int, seed: int) -> torch.Tensor:
    """Coefficient vectors [m, r] of one group on the rows where it fires."""
    coeffs = model.sample_coefficients(n, torch.Generator().manual_seed(seed))[:, model.truth.group_members(group)]
    return coeffs[(coeffs != 0).any(dim=1)].double()


def _random_rotation(r: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(r, r, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


@pytest.mark.parametrize("distribution", ["sphere", "gaussian"])
def test_ambiguous_group_is_rotation_invariant(distribution: str) -> None:
    model = SyntheticModel(small_config(ambiguous_distribution=distribution))
    a = _group_coefficients(model, 0, 40_000, 3)
    b = _group_coefficients(model, 0, 40_000, 4) @ _random_rotation(3, 5)  # the group in a rotated basis
    assert a.shape[0] > 5000 and b.shape[0] > 5000
    # second moments: isotropic, and equal in both bases
    cov_a, cov_b = a.T @ a / a.shape[0], b.T @ b / b.shape[0]
    assert torch.allclose(cov_a, torch.eye(3, dtype=torch.float64) * cov_a.trace() / 3, atol=0.02)
    assert torch.allclose(cov_a, cov_b, atol=0.02)
    # every coordinate's distribution is unchanged by the rotation (two-sample KS)
    for i in range(3):
        assert ks_2samp(a[:, i].numpy(), b[:, i].numpy()).pvalue > 1e-3


def test_identifiable_group_is_not_rotation_invariant() -> None:
    model = SyntheticModel(small_config())
    a = _group_coefficients(model, 2, 40_000, 3)
    b = _group_coefficients(model, 2, 40_000, 4) @ _random_rotation(3, 5)
    # sparse independent coefficients: the true axes are special, so the same test must reject
    assert min(ks_2samp(a[:, i].numpy(), b[:, i].numpy()).pvalue for i in range(3)) < 1e-6
    assert (a >= 0).all()


def test_ambiguous_group_data_is_rotation_invariant_in_activation_space() -> None:
    # only one ambiguous group and no noise: projecting activations on the group basis gives its coefficients
    cfg = small_config(num_features=3, num_ambiguous_groups=1, num_identifiable_groups=0, group_firing_prob=0.5)
    model = SyntheticModel(cfg)
    v = model.truth.directions.double()
    x = model.sample(30_000, torch.Generator().manual_seed(9)).double()
    rotated_basis = _random_rotation(3, 1) @ v
    pa, pb = x @ v.T, x @ rotated_basis.T
    for i in range(3):
        assert ks_2samp(pa[:15_000, i].numpy(), pb[15_000:, i].numpy()).pvalue > 1e-3


def test_magnitudes_and_noise() -> None:
    cfg = small_config(magnitude_mean=2.0, magnitude_std=0.3, num_ambiguous_groups=0, num_identifiable_groups=0)
    model = SyntheticModel(cfg)
    coeffs = model.sample_coefficients(50_000, torch.Generator().manual_seed(0))
    firing = coeffs[coeffs != 0]
    assert (firing > 0).all()
    assert float(firing.mean()) == pytest.approx(2.0, rel=0.03)
    assert float(firing.std() / firing.mean()) == pytest.approx(math.sqrt(math.exp(0.09) - 1), rel=0.1)
    noisy = SyntheticModel(small_config(noise_std=0.5, max_firing_prob=1e-6, min_firing_prob=0.0,
                                        group_firing_prob=1e-6))
    x = noisy.sample(20_000, torch.Generator().manual_seed(0))
    assert float(x.std()) == pytest.approx(0.5, rel=0.03)


def test_symmetric_identifiable_signs() -> None:
    model = SyntheticModel(small_config(identifiable_signs="symmetric"))
    c = _group_coefficients(model, 2, 20_000, 0)
    nonzero = c[c != 0]
    assert 0.4 < float((nonzero < 0).double().mean()) < 0.6


def test_toy_model_projection_variant() -> None:
    cfg = small_config(feature_space_dim=64)
    model = SyntheticModel(cfg)
    truth = model.truth
    assert truth.directions.shape == (40, 16)
    assert torch.allclose(truth.directions.norm(dim=1), torch.ones(40), atol=1e-5)
    assert not torch.allclose(truth.scales, torch.ones(40))
    g = torch.Generator().manual_seed(0)
    coeffs = model.sample_coefficients(10, g)
    g = torch.Generator().manual_seed(0)
    x = model.sample(10, g)
    assert torch.allclose(x, coeffs @ (truth.directions * truth.scales[:, None]), atol=1e-5)


def test_stream_is_deterministic_and_seed_dependent() -> None:
    pair_a = build_synthetic_source(run_config(small_config()))
    pair_b = build_synthetic_source(run_config(small_config()))
    batches_a, batches_b = list(pair_a.train), list(pair_b.train)
    assert len(batches_a) == 4 and batches_a[0].shape == (64, 16)
    assert all(torch.equal(a, b) for a, b in zip(batches_a, batches_b))
    assert all(torch.equal(a, b) for a, b in zip(batches_a, list(pair_a.train)))  # re-iterable, same batches
    assert sum(e.shape[0] for e in pair_a.eval) == 100
    assert all(torch.equal(a, b) for a, b in zip(pair_a.eval, pair_b.eval))
    assert not torch.equal(pair_a.eval[0], batches_a[0])  # eval is held out, not the training stream
    other = build_synthetic_source(run_config(small_config(seed=8)))
    assert not torch.equal(next(iter(other.train)), batches_a[0])
    assert pair_a.info["ground_truth_sha256"] != other.info["ground_truth_sha256"]
    assert pair_a.info["source"] == "synthetic" and pair_a.info["d_in"] == 16


def test_global_rng_is_untouched() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    model = SyntheticModel(small_config())
    list(build_synthetic_source(run_config(small_config())).train)
    model.sample(10, torch.Generator().manual_seed(0))
    assert torch.equal(torch.rand(3), expected)


def test_ground_truth_round_trip(tmp_path) -> None:
    truth = SyntheticModel(small_config()).truth
    save_ground_truth(truth, tmp_path)
    back = load_ground_truth(tmp_path)
    assert torch.equal(back.directions, truth.directions) and torch.equal(back.group, truth.group)
    assert back.config == truth.config and back.fingerprint() == truth.fingerprint()
    text = (tmp_path / "ground_truth.json").read_text()
    assert '"ambiguous"' in text and '"identifiable"' in text
    (tmp_path / "ground_truth.json").write_text(text.replace(truth.fingerprint(), "0" * 64))
    with pytest.raises(DataError, match="sha256"):
        load_ground_truth(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_ground_truth(tmp_path / "missing")


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("num_features", 10, "group features"),
        ("group_rank", 17, "group_rank"),
        ("max_firing_prob", 1.5, "max_firing_prob"),
        ("firing_correlation", 1.0, "firing_correlation"),
        ("noise_std", -1.0, "noise_std"),
    ],
)
def test_bad_config_names_the_field(field: str, value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SyntheticModel(small_config(**{field: value}))


# ---------------------------------------------------------------------------- control groups


def test_control_groups_sit_between_ambiguous_and_identifiable() -> None:
    truth = SyntheticModel(small_config(num_control_groups=1)).truth
    assert truth.kind[:6].tolist() == [AMBIGUOUS] * 6
    assert truth.kind[6:9].tolist() == [CONTROL] * 3
    assert truth.kind[9:15].tolist() == [IDENTIFIABLE] * 6
    assert truth.group_kind.tolist() == [AMBIGUOUS, AMBIGUOUS, CONTROL, IDENTIFIABLE, IDENTIFIABLE]
    v = truth.directions[truth.group_members(2)]
    assert torch.allclose(v @ v.T, torch.eye(3), atol=1e-5)
    assert (truth.mean_magnitude[6:9] == truth.mean_magnitude[6]).all()


def test_no_control_groups_leaves_the_stream_unchanged() -> None:
    # num_control_groups = 0 draws exactly what the generator drew before control groups existed
    # (the truth fingerprint and sums below were computed with the generator before this change)
    model = SyntheticModel(small_config(num_control_groups=0, control_distribution="signed_axes"))
    assert model.truth.fingerprint() == "00de946ae43ac26462498e49bac9315ed3b73d5c06d5f2bbd31fd119b131e14d"
    x = model.sample(200, torch.Generator().manual_seed(2)).double()
    assert float(x.sum()) == pytest.approx(26.795944017125294, abs=1e-6)
    assert float(x.abs().sum()) == pytest.approx(999.7227092336398, abs=1e-6)


@pytest.mark.parametrize("distribution", ["cube", "signed_axes"])
def test_control_group_co_fires_like_an_ambiguous_group_but_has_a_basis(distribution: str) -> None:
    cfg = small_config(num_control_groups=1, control_distribution=distribution, magnitude_mean=2.0)
    model = SyntheticModel(cfg)
    coeffs = model.sample_coefficients(40_000, torch.Generator().manual_seed(3)).double()
    ctl, amb = coeffs[:, 6:9], coeffs[:, 0:3]
    fired = (ctl != 0).any(dim=1)
    # fires as a whole, with the group firing probability, like the ambiguous group
    assert ((ctl != 0).all(dim=1) == fired).all()
    assert abs(float(fired.double().mean()) - 0.2) < 0.01
    a, b = ctl[fired], amb[(amb != 0).any(dim=1)]
    # same squared norm (exactly for the cube, in expectation for signed axes), signed, isotropic second moments
    assert abs(float(a.pow(2).sum(1).mean()) - float(b.pow(2).sum(1).mean())) < 0.1
    assert abs(float((a > 0).double().mean()) - 0.5) < 0.02
    cov = a.T @ a / a.shape[0]
    assert torch.allclose(cov, torch.eye(3, dtype=torch.float64) * cov.trace() / 3, atol=0.05)
    if distribution == "cube":
        assert torch.allclose(a.abs(), torch.full_like(a, 2.0 / math.sqrt(3)), atol=1e-5)
        assert torch.allclose(a.norm(dim=1), torch.full((a.shape[0],), 2.0, dtype=torch.float64), atol=1e-5)
    else:
        assert float(a.abs().max()) <= 2.0 + 1e-5  # magnitude · √(3/r) · 1 with r = 3
        assert abs(float(torch.corrcoef(a.abs().T)[0, 1])) < 0.03  # independent axes
    # not rotation invariant: a rotated basis changes the coordinate distribution
    rotated = ctl[fired] @ _random_rotation(3, 5)
    assert min(ks_2samp(a[:, i].numpy(), rotated[:, i].numpy()).pvalue for i in range(3)) < 1e-6


# ---------------------------------------------------------------------------- the composed-features model


def composed_config(**kw) -> SyntheticConfig:
    base = dict(kind="composed", d_in=12, num_features=7, composed_num_x=3, composed_num_y=4,
                num_ambiguous_groups=0, num_identifiable_groups=0, magnitude_mean=1.5, seed=4)
    base.update(kw)
    return SyntheticConfig(**base)


@pytest.mark.parametrize("rho", [0.0, 0.5, 1.0])
def test_composed_rows_have_exactly_one_x_and_one_y(rho: float) -> None:
    model = SyntheticModel(composed_config(composed_amplitude_correlation=rho))
    truth = model.truth
    assert truth.kind.tolist() == [COMPOSED_X] * 3 + [COMPOSED_Y] * 4
    assert torch.allclose(truth.directions @ truth.directions.T, torch.eye(7), atol=1e-5)  # d_in >= m + n
    coeffs = model.sample_coefficients(30_000, torch.Generator().manual_seed(1))
    x, y = coeffs[:, :3], coeffs[:, 3:]
    assert ((x != 0).sum(dim=1) == 1).all() and ((y != 0).sum(dim=1) == 1).all()
    assert (coeffs >= 0).all() and float(coeffs.max()) <= 3.0  # amplitudes in [0, 2 · magnitude_mean]
    # which x and which y fire is uniform and independent
    freq = (coeffs != 0).double().mean(0)
    assert torch.allclose(freq, truth.firing_prob.double(), atol=0.015)
    pair = torch.zeros(3, 4)
    pair.index_put_(((x != 0).nonzero()[:, 1], (y != 0).nonzero()[:, 1]), torch.ones(30_000), accumulate=True)
    assert torch.allclose(pair / 30_000, torch.full((3, 4), 1 / 12), atol=0.01)
    a_x, a_y = x.sum(dim=1).double(), y.sum(dim=1).double()
    assert abs(float(a_x.mean()) - 1.5) < 0.02 and abs(float(a_y.mean()) - 1.5) < 0.02
    corr = float(torch.corrcoef(torch.stack([a_x, a_y]))[0, 1])
    if rho == 1.0:
        assert torch.allclose(a_x, a_y, atol=1e-5)
    elif rho == 0.0:
        assert abs(corr) < 0.03
    else:
        assert 0.35 < corr < 0.6  # Gaussian copula: (6/π) asin(ρ/2) = 0.48


def test_composed_activations_and_ground_truth(tmp_path) -> None:
    model = SyntheticModel(composed_config(d_in=5))  # fewer dims than features: random unit directions
    truth = model.truth
    assert torch.allclose(truth.directions.norm(dim=1), torch.ones(7), atol=1e-5)
    assert truth.num_groups == 0 and (truth.group == -1).all()
    x = model.sample(100, torch.Generator().manual_seed(0))
    assert x.shape == (100, 5)
    assert model.group_inputs(100, torch.Generator().manual_seed(0)) == []
    save_ground_truth(truth, tmp_path)
    assert load_ground_truth(tmp_path).fingerprint() == truth.fingerprint()


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("num_features", 8, "composed_num_x \\+ composed_num_y"),
        ("num_ambiguous_groups", 1, "num_ambiguous_groups"),
        ("num_control_groups", 2, "num_control_groups"),
        ("feature_space_dim", 20, "feature_space_dim"),
        ("firing_correlation", 0.5, "firing_correlation"),
        ("composed_num_x", 0, "composed_num_x"),
        ("composed_amplitude_correlation", 1.5, "composed_amplitude_correlation"),
    ],
)
def test_bad_composed_config_names_the_field(field: str, value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SyntheticModel(composed_config(**{field: value}))
