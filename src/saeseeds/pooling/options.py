"""What `saeseeds pool` does, as one validated record (the CLI flags and `ss.pool(options=...)` fill it)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from saeseeds.align.sharing import SharingRule
from saeseeds.errors import ConfigError
from saeseeds.pooling.build import RANK_KINDS
from saeseeds.pooling.clusters import EDGE_KINDS
from saeseeds.pooling.fit import FIT_KINDS


@dataclass(frozen=True)
class PoolOptions:
    """Pooling options; every field is recorded in pool.json. Ranges are checked by `validate`."""

    edges: str = "sharing"
    """Cluster edges: `sharing` (the rule's shared latents) or `decoder` (decoder matching with cosine ≥ τ)."""
    rule: SharingRule = field(default_factory=SharingRule)
    """τ and signed/absolute cosines for the edges; also judges the pooled SAEs' stability."""
    size: int = 0
    """Latents of the pooled SAE; 0 = as many as one seed's SAE."""
    unique_cos: float | None = None
    """Keep a cluster only if its direction's cosine with every cluster kept before it is below this; None = τ."""
    rank_by: str = "delta_fvu"
    """Tie-break after support: `delta_fvu` (FVU added by ablating the latent alone) or `mass` (firing mass)."""
    fit: str = "all"
    """What the fit updates: `all` parameters or the `encoder` only (decoder rows and b_dec stay pooled)."""
    fit_tokens: int = -1
    """Tokens of the fit on the run's stream; -1 = a quarter of one seed's training tokens; 0 = no fit."""
    select_tokens: int = 32_768
    """Training-stream rows on which each latent's contribution is measured (for ranking)."""
    splits: int = 3
    """Most disjoint-halves splits of the seeds for the pooled-stability test (needs ≥ 4 seeds); 0 = none."""
    baseline_seeds: int = 2
    """Fresh single seeds trained for a pooled SAE's total compute (0 = no baseline; 1 gives EV but no stability)."""
    ev_tolerance: float = 0.01
    """`equal explained variance`: the pooled SAEs' EV is at least the comparison's minus this (absolute)."""
    alpha: float = 0.05
    """Level of the one-sided sign-flip test over the seed splits (`pooling.verdict`)."""
    device: str = "cpu"
    """Where the fits run (`auto`, `cpu`, `cuda`, ...)."""
    progress: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """ConfigError naming the field and its allowed range."""
        if self.edges not in EDGE_KINDS:
            raise ConfigError(f"edges: {self.edges!r} is not one of {', '.join(EDGE_KINDS)}")
        if self.rank_by not in RANK_KINDS:
            raise ConfigError(f"rank_by: {self.rank_by!r} is not one of {', '.join(RANK_KINDS)}")
        if self.fit not in FIT_KINDS:
            raise ConfigError(f"fit: {self.fit!r} is not one of {', '.join(FIT_KINDS)}")
        for name, low in (("size", 0), ("fit_tokens", -1), ("select_tokens", 1), ("splits", 0),
                          ("baseline_seeds", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name}: {value!r} must be an integer ≥ {low}")
        if self.unique_cos is not None and (not isinstance(self.unique_cos, (int, float))
                                            or not 0.0 < self.unique_cos <= 1.0):
            raise ConfigError(f"unique_cos: {self.unique_cos!r} is outside (0, 1]")
        if not isinstance(self.ev_tolerance, (int, float)) or not (0.0 <= self.ev_tolerance < 1.0):
            raise ConfigError(f"ev_tolerance: {self.ev_tolerance!r} is outside [0, 1)")
        if not isinstance(self.alpha, (int, float)) or not math.isfinite(self.alpha) or not 0 < self.alpha < 1:
            raise ConfigError(f"alpha: {self.alpha!r} is outside (0, 1)")

    @property
    def unique_threshold(self) -> float:
        """The cosine at which two pooled directions count as the same feature."""
        return self.rule.threshold if self.unique_cos is None else float(self.unique_cos)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "rule"}
        return out | {"rule": self.rule.to_dict()}
