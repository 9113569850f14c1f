"""Config of the synthetic ground-truth generator (`saeseeds.data.synthetic`), and its cross-field checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from saeseeds.config.checks import SEED_LIMIT, check_choice, check_float, check_int, fail

AmbiguousDistribution = Literal["sphere", "gaussian"]
IdentifiableSigns = Literal["positive", "symmetric"]
ControlDistribution = Literal["cube", "signed_axes"]
SyntheticKind = Literal["groups", "composed"]


@dataclass
class SyntheticConfig:
    """Ground-truth features in superposition, with identifiable, basis-ambiguous and control groups, or the
    composed-features toy model (`kind = "composed"`).

    Groups model: features are laid out as ambiguous groups, then control groups, then identifiable groups (each
    `group_rank` features), then single features (the rest of `num_features`), whose firing probabilities
    follow a power law.
    """

    kind: SyntheticKind = "groups"
    """'groups' (ambiguous / control / identifiable groups and power-law singles) or 'composed' (mutually
    exclusive x and y feature sets: exactly one x and one y fire on every row; see the composed_* fields)."""

    d_in: int = 64
    """Width of the generated activations (the SAE's input width)."""
    num_features: int = 256
    """Total number of true features N, groups included; N > d_in means superposition."""
    seed: int = 0
    """Seed of everything random in the generator: the ground truth, the training stream and the eval set."""
    zipf_exponent: float = 1.0
    """Single features fire with probability max_firing_prob · rank^(-zipf_exponent), rank = 1, 2, ..."""
    max_firing_prob: float = 0.05
    """Firing probability of the most frequent single feature."""
    min_firing_prob: float = 0.0
    """Floor of the single features' firing probabilities."""
    num_ambiguous_groups: int = 8
    """Groups whose coefficients are rotation invariant in the group's subspace: no preferred basis."""
    num_control_groups: int = 0
    """Control groups: fire as a whole like ambiguous groups (same firing, norm and signs) but with coefficients
    that have a preferred basis (`control_distribution`): dense co-firing without rotation invariance."""
    control_distribution: ControlDistribution = "cube"
    """Coefficients of a firing control group: 'cube' = magnitude · (±1, ..., ±1)/√r with independent signs
    (a vertex of the cube: norm exactly the magnitude), 'signed_axes' = magnitude · √(3/r) · U(−1, 1) on each
    axis independently (uniform in the solid cube: E‖c‖² = magnitude², independent non-Gaussian axes)."""
    num_identifiable_groups: int = 8
    """Groups with the same kind of span whose features fire independently: the basis is identifiable."""
    group_rank: int = 3
    """Features per group r (the dimension of the group's subspace); directions within a group are orthonormal."""
    group_firing_prob: float = 0.05
    """Firing probability of each group feature: an ambiguous group fires as a whole, identifiable features each."""
    ambiguous_distribution: AmbiguousDistribution = "sphere"
    """Coefficients of a firing ambiguous group: magnitude · uniform-on-sphere, or magnitude · N(0, I_r)/√r."""
    identifiable_signs: IdentifiableSigns = "positive"
    """Signs of identifiable-group coefficients: always positive, or ± with equal odds."""
    magnitude_mean: float = 1.0
    """Mean coefficient magnitude of a firing feature (of a firing ambiguous group's coefficient vector norm)."""
    magnitude_std: float = 0.0
    """Relative spread of each firing's magnitude (log-normal with mean 1 times the feature's mean magnitude)."""
    feature_magnitude_std: float = 0.0
    """Relative spread of the mean magnitudes across features (log-normal), to make some features weak."""
    firing_correlation: float = 0.0
    """Correlation (Gaussian copula, in [0, 1)) between the firing of units in the same correlation block."""
    correlation_block_size: int = 4
    """Firing units (single features, identifiable features, ambiguous groups) per correlation block."""
    noise_std: float = 0.0
    """Standard deviation of isotropic Gaussian noise added to every activation coordinate."""
    feature_space_dim: int = 0
    """Toy-model variant: if > 0, features are built in this many dimensions and the data is passed through
    a fixed random projection to d_in dimensions (feature_space_dim >= num_features: orthogonal features)."""
    composed_num_x: int = 4
    """Composed model: size m of the x set (exactly one x_i fires per row, uniformly)."""
    composed_num_y: int = 4
    """Composed model: size n of the y set (exactly one y_j fires per row, uniformly, independently of x)."""
    composed_amplitude_correlation: float = 0.0
    """Composed model: correlation ρ in [0, 1] of the x and y amplitudes (Gaussian copula; each amplitude is
    2 · magnitude_mean · U(0, 1)); 1 gives both the same amplitude, 0 independent ones."""

    def num_groups(self) -> int:
        """Groups of every kind."""
        return self.num_ambiguous_groups + self.num_control_groups + self.num_identifiable_groups

    def num_single_features(self) -> int:
        """Features that belong to no group."""
        return self.num_features - self.num_groups() * self.group_rank

    def validate(self, where: str = "synthetic") -> None:
        """Every field in range and the groups fit in num_features (see `validate_synthetic`)."""
        validate_synthetic(self, where)


def validate_synthetic(cfg: SyntheticConfig, where: str = "synthetic") -> None:
    """Range and cross-field checks; a bad value raises ConfigError naming the `synthetic.` field."""
    check_int(f"{where}.d_in", cfg.d_in, 1)
    check_int(f"{where}.num_features", cfg.num_features, 1)
    check_int(f"{where}.seed", cfg.seed, 0, SEED_LIMIT - 1)
    check_int(f"{where}.num_ambiguous_groups", cfg.num_ambiguous_groups, 0)
    check_int(f"{where}.num_control_groups", cfg.num_control_groups, 0)
    check_int(f"{where}.num_identifiable_groups", cfg.num_identifiable_groups, 0)
    check_int(f"{where}.feature_space_dim", cfg.feature_space_dim, 0, note="0 builds the features in d_in dimensions")
    check_choice(f"{where}.kind", cfg.kind, get_args(SyntheticKind))
    check_int(f"{where}.composed_num_x", cfg.composed_num_x, 1)
    check_int(f"{where}.composed_num_y", cfg.composed_num_y, 1)
    check_float(f"{where}.composed_amplitude_correlation", cfg.composed_amplitude_correlation, 0.0, 1.0)
    check_choice(f"{where}.control_distribution", cfg.control_distribution, get_args(ControlDistribution))
    if cfg.kind == "composed":
        _validate_composed(cfg, where)
        return
    num_groups = cfg.num_groups()
    space = cfg.feature_space_dim if cfg.feature_space_dim > 0 else cfg.d_in
    if num_groups:
        check_int(f"{where}.group_rank", cfg.group_rank, 1, space, "at most the feature space width")
    else:
        check_int(f"{where}.group_rank", cfg.group_rank, 1)
    group_features = num_groups * cfg.group_rank
    if cfg.num_single_features() < 0:
        raise fail(
            f"{where}.num_features", cfg.num_features,
            f">= {group_features} ({num_groups} groups x group_rank {cfg.group_rank})",
            f"is smaller than the {group_features} group features",
        )
    _common_checks(cfg, where)


def _common_checks(cfg: SyntheticConfig, where: str) -> None:
    check_float(f"{where}.max_firing_prob", cfg.max_firing_prob, 0.0, 1.0, lo_open=True)
    check_float(f"{where}.group_firing_prob", cfg.group_firing_prob, 0.0, 1.0, lo_open=True)
    check_float(f"{where}.min_firing_prob", cfg.min_firing_prob, 0.0, cfg.max_firing_prob, note="at most max_firing_prob")
    check_float(f"{where}.zipf_exponent", cfg.zipf_exponent, 0.0)
    check_float(f"{where}.magnitude_mean", cfg.magnitude_mean, 0.0, lo_open=True)
    for name in ("magnitude_std", "feature_magnitude_std", "noise_std"):
        check_float(f"{where}.{name}", getattr(cfg, name), 0.0)
    check_float(f"{where}.firing_correlation", cfg.firing_correlation, 0.0, 1.0, hi_open=True)
    check_int(f"{where}.correlation_block_size", cfg.correlation_block_size, 1)
    check_choice(f"{where}.ambiguous_distribution", cfg.ambiguous_distribution, get_args(AmbiguousDistribution))
    check_choice(f"{where}.identifiable_signs", cfg.identifiable_signs, get_args(IdentifiableSigns))
    check_int(f"{where}.group_rank", cfg.group_rank, 1)


COMPOSED_UNUSED = ("num_ambiguous_groups", "num_control_groups", "num_identifiable_groups", "feature_space_dim",
                   "firing_correlation", "magnitude_std", "feature_magnitude_std")
"""Fields that would change the data of the groups model; the composed model requires them at 0 rather than
silently ignoring them. (Firing-probability fields are unused: every row has exactly one x and one y.)"""


def _validate_composed(cfg: SyntheticConfig, where: str) -> None:
    """The composed model: num_features = m + n, and the groups-only data fields left at 0."""
    _common_checks(cfg, where)
    for name in COMPOSED_UNUSED:
        value = getattr(cfg, name)
        if value != 0:
            raise fail(f"{where}.{name}", value, "0 when kind = 'composed'", "has no meaning in the composed model")
    total = cfg.composed_num_x + cfg.composed_num_y
    if cfg.num_features != total:
        raise fail(f"{where}.num_features", cfg.num_features,
                   f"composed_num_x + composed_num_y = {total} when kind = 'composed'", "does not match the x and y sets")
