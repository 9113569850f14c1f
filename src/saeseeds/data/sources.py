"""Activation sources behind one interface, and the dispatcher that builds one from a run config."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from torch import Tensor

from saeseeds.errors import ConfigError

if TYPE_CHECKING:
    from saeseeds.config import RunConfig

Batch = Tensor | Mapping[str, Tensor]
"""One step of activations: [batch, d_in] for one hookpoint, or hookpoint name → [batch, d_in] from one forward."""


class SourcePair(NamedTuple):
    """A training stream, a fixed held-out evaluation set, and a description that goes into run.json."""

    train: Iterable[Batch]
    eval: list[Batch]
    info: dict[str, Any]


def as_mapping(batch: Batch, default_hookpoint: str) -> dict[str, Tensor]:
    """Normalise a batch to hookpoint name → tensor."""
    if isinstance(batch, Tensor):
        return {default_hookpoint: batch}
    return dict(batch)


def build_source(cfg: RunConfig) -> SourcePair:
    """Build the activation source named by `cfg.data.source`."""
    kind = cfg.data.source
    if kind in ("npy", "safetensors"):
        from saeseeds.data.arrays import build_array_source

        return build_array_source(cfg)
    if kind == "lm":
        from saeseeds.data.lm_source import build_lm_source

        return build_lm_source(cfg)
    if kind == "cache":
        from saeseeds.data.cache import build_cache_source

        return build_cache_source(cfg)
    if kind == "synthetic":
        from saeseeds.data.synthetic import build_synthetic_source

        return build_synthetic_source(cfg)
    raise ConfigError(f"data.source: unknown source {kind!r}")
