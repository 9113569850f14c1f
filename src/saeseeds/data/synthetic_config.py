"""Config of the synthetic ground-truth generator (`saeseeds.data.synthetic`), and its cross-field checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from saeseeds.errors import ConfigError


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
    ambiguous_distribution: Literal["sphere", "gaussian"] = "sphere"
    """Coefficients of a firing ambiguous group: magnitude · uniform-on-sphere, or magnitude · N(0, I_r)/√r."""
    identifiable_signs: Literal["positive", "symmetric"] = "positive"
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


def validate_synthetic(cfg: SyntheticConfig) -> None:
    """Cross-field checks; a bad value raises ConfigError naming the `synthetic.` field."""
    if cfg.d_in <= 0:
        raise ConfigError(f"synthetic.d_in must be positive, got {cfg.d_in}")
    if cfg.num_features <= 0:
        raise ConfigError(f"synthetic.num_features must be positive, got {cfg.num_features}")
    if cfg.num_ambiguous_groups < 0 or cfg.num_identifiable_groups < 0:
        raise ConfigError("synthetic.num_ambiguous_groups and num_identifiable_groups must be >= 0")
    num_groups = cfg.num_ambiguous_groups + cfg.num_identifiable_groups
    space = cfg.feature_space_dim if cfg.feature_space_dim > 0 else cfg.d_in
    if num_groups and not 1 <= cfg.group_rank <= space:
        raise ConfigError(
            f"synthetic.group_rank must be in [1, {space}] (the feature space width), got {cfg.group_rank}"
        )
    if cfg.num_single_features() < 0:
        raise ConfigError(
            f"synthetic.num_features={cfg.num_features} is smaller than the {num_groups} groups x "
            f"group_rank {cfg.group_rank} = {num_groups * cfg.group_rank} group features"
        )
    for name in ("max_firing_prob", "group_firing_prob"):
        value = getattr(cfg, name)
        if not 0.0 < value <= 1.0:
            raise ConfigError(f"synthetic.{name} must be in (0, 1], got {value}")
    if not 0.0 <= cfg.min_firing_prob <= cfg.max_firing_prob:
        raise ConfigError(f"synthetic.min_firing_prob must be in [0, max_firing_prob], got {cfg.min_firing_prob}")
    if cfg.zipf_exponent < 0:
        raise ConfigError(f"synthetic.zipf_exponent must be >= 0, got {cfg.zipf_exponent}")
    if cfg.magnitude_mean <= 0:
        raise ConfigError(f"synthetic.magnitude_mean must be positive, got {cfg.magnitude_mean}")
    for name in ("magnitude_std", "feature_magnitude_std", "noise_std"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"synthetic.{name} must be >= 0, got {getattr(cfg, name)}")
    if not 0.0 <= cfg.firing_correlation < 1.0:
        raise ConfigError(f"synthetic.firing_correlation must be in [0, 1), got {cfg.firing_correlation}")
    if cfg.correlation_block_size < 1:
        raise ConfigError(f"synthetic.correlation_block_size must be >= 1, got {cfg.correlation_block_size}")
    if cfg.feature_space_dim < 0:
        raise ConfigError(f"synthetic.feature_space_dim must be >= 0, got {cfg.feature_space_dim}")
