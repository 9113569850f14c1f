"""The one definition of sharing and feature stability: threshold τ, signed or absolute cosines, which
stability estimator, and the stable / unstable cut. Every verb, output and analysis takes it from here.

Definitions (docs/definitions.md gives them with formulas):

- *shared* (Paulo & Belrose): latent x of a is shared with b iff the decoder matching and the encoder matching
  pair it with the same latent y of b and both cosines are strictly above τ.
- stability ``shared`` (default): the fraction of the other seeds with which the latent is shared.
- stability ``reappears`` (Gerasimov et al. 2026): the fraction of the other seeds that hold *some* latent whose
  decoder cosine with it is at least τ (many-to-one, decoder only).
- cut ``half``: stable = stability ≥ 1/2, unstable = stability = 0 (found in no other seed).
- cut ``endpoints``: stable = stability ≥ 1 − ε, unstable = stability ≤ ε, the middle excluded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import numpy as np

from saeseeds.errors import ConfigError

StabilityKind = Literal["shared", "reappears"]
CutKind = Literal["half", "endpoints"]
STABILITY_KINDS: tuple[str, ...] = get_args(StabilityKind)
CUT_KINDS: tuple[str, ...] = get_args(CutKind)

_TOLERANCE = 1e-12
"""Stability values are ratios of small integers; compare them to the cuts with this slack."""


@dataclass(frozen=True)
class SharingRule:
    """When a latent counts as found in another seed, how stability is estimated, and where the cuts are."""

    threshold: float = 0.7
    """τ: cosine a matched latent must exceed (Paulo & Belrose use 0.7)."""
    absolute: bool = False
    """Use |cosine|: a latent whose direction is flipped counts as the same latent."""
    stability: StabilityKind = "shared"
    """Per-latent stability estimator: `shared` (P&B sharing) or `reappears` (decoder max-cosine ≥ τ)."""
    cut: CutKind = "half"
    """Stable / unstable split: `half` (≥ 1/2 / none) or `endpoints` (≥ 1 − ε / ≤ ε)."""
    epsilon: float = 0.05
    """ε of the `endpoints` cut."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the field when a value is outside its range."""
        if not isinstance(self.threshold, (int, float)) or not math.isfinite(self.threshold) or not (
            0.0 <= self.threshold < 1.0
        ):
            raise ConfigError(f"threshold: {self.threshold!r} is outside [0, 1) (a cosine threshold)")
        if self.stability not in STABILITY_KINDS:
            raise ConfigError(f"stability: {self.stability!r} is not one of {', '.join(STABILITY_KINDS)}")
        if self.cut not in CUT_KINDS:
            raise ConfigError(f"cut: {self.cut!r} is not one of {', '.join(CUT_KINDS)}")
        if not isinstance(self.epsilon, (int, float)) or not (0.0 <= self.epsilon < 0.5):
            raise ConfigError(f"epsilon: {self.epsilon!r} is outside [0, 0.5)")

    # ------------------------------------------------------------------ the two per-pair tests

    def shared(
        self, dec_partner: np.ndarray, dec_cos: np.ndarray, enc_partner: np.ndarray, enc_cos: np.ndarray
    ) -> np.ndarray:
        """Shared latents of a with b: the same partner under both matchings, both cosines > τ."""
        with np.errstate(invalid="ignore"):
            return (
                (dec_partner == enc_partner)
                & (dec_partner >= 0)
                & (dec_cos > self.threshold)
                & (enc_cos > self.threshold)
            )

    def reappears(self, dec_max_cos: np.ndarray) -> np.ndarray:
        """Latents of a for which b holds some latent with decoder cosine ≥ τ."""
        with np.errstate(invalid="ignore"):
            return np.asarray(dec_max_cos) >= self.threshold

    # ------------------------------------------------------------------ cuts

    def stable(self, stability: np.ndarray) -> np.ndarray:
        """Stable latents under the cut."""
        stability = np.asarray(stability, dtype=np.float64)
        low = 0.5 if self.cut == "half" else 1.0 - self.epsilon
        return stability >= low - _TOLERANCE

    def unstable(self, stability: np.ndarray) -> np.ndarray:
        """Unstable latents under the cut (found in no other seed, or in at most a fraction ε of them)."""
        stability = np.asarray(stability, dtype=np.float64)
        high = 0.0 if self.cut == "half" else self.epsilon
        return stability <= high + _TOLERANCE

    def describe(self) -> str:
        """One line for tables and logs."""
        cos = "|cos|" if self.absolute else "cos"
        cut = "stable ≥ 1/2, unstable = 0" if self.cut == "half" else (
            f"stable ≥ {1 - self.epsilon:g}, unstable ≤ {self.epsilon:g}"
        )
        return f"{self.stability} stability, {cos} > {self.threshold:g}, {cut}"

    # ------------------------------------------------------------------ records

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record, written into every output that depends on the rule."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "sharing rule") -> SharingRule:
        """Read a record written by `to_dict` (unknown keys are an error)."""
        fields = set(cls.__dataclass_fields__)
        unknown = set(data) - fields
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        try:
            return cls(**dict(data))
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from err

    def replace(self, **changes: Any) -> SharingRule:
        """A copy with some fields changed (validated)."""
        return SharingRule(**(self.to_dict() | changes))


def describe_stability(summary: Mapping[str, Any]) -> str:
    """One line from `CrossSeedResult.stability_summary()`: the stable / unstable shares of all latents, and the
    dead latents apart (they count as unstable over all latents) with the shares of the alive ones."""
    line = (f"stable {summary['stable_fraction']:.1%}, unstable {summary['unstable_fraction']:.1%} of all "
            f"{summary.get('latents', 0):,} latents")
    if summary.get("dead") is None:
        return line + " (dead latents unknown: no stored firing frequencies; any dead one counts as unstable)"
    line += f" ({summary['dead']:,} dead, {summary.get('unstable_dead', 0):,} of them counted unstable"
    if summary.get("stable_fraction_alive") is None:
        return line + "; none alive)"
    return (line + f"; of the {summary['alive']:,} alive: stable {summary['stable_fraction_alive']:.1%}, "
            f"unstable {summary['unstable_fraction_alive']:.1%})")
