"""Config of the synthetic ground-truth generator (`saeseeds.data.synthetic`), and its cross-field checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from saeseeds.config.checks import SEED_LIMIT, check_choice, check_float, check_int, fail

AmbiguousDistribution = Literal["sphere", "gaussian"]
IdentifiableSigns = Literal["positive", "symmetric"]


@dataclass
class SyntheticConfig:
    """Ground-truth features in superposition, with identifiable and basis-ambiguous groups.

    Features are laid out as: ambiguous groups, then identifiable groups (each `group_rank` features), then
    single features (the rest of `num_features`), whose firing probabilities follow a power law.
    """

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

    def num_single_features(self) -> int:
        """Features that belong to no group."""
        return self.num_features - (self.num_ambiguous_groups + self.num_identifiable_groups) * self.group_rank

    def validate(self, where: str = "synthetic") -> None:
        """Every field in range and the groups fit in num_features (see `validate_synthetic`)."""
        validate_synthetic(self, where)


def validate_synthetic(cfg: SyntheticConfig, where: str = "synthetic") -> None:
    """Range and cross-field checks; a bad value raises ConfigError naming the `synthetic.` field."""
    check_int(f"{where}.d_in", cfg.d_in, 1)
    check_int(f"{where}.num_features", cfg.num_features, 1)
    check_int(f"{where}.seed", cfg.seed, 0, SEED_LIMIT - 1)
    check_int(f"{where}.num_ambiguous_groups", cfg.num_ambiguous_groups, 0)
    check_int(f"{where}.num_identifiable_groups", cfg.num_identifiable_groups, 0)
    check_int(f"{where}.feature_space_dim", cfg.feature_space_dim, 0, note="0 builds the features in d_in dimensions")
    num_groups = cfg.num_ambiguous_groups + cfg.num_identifiable_groups
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
