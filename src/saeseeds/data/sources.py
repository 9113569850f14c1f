"""The dispatcher that builds the activation source named by a run config (each source module loads lazily)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from saeseeds.data.types import SourcePair
from saeseeds.errors import ConfigError

if TYPE_CHECKING:
    from saeseeds.config import RunConfig


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
