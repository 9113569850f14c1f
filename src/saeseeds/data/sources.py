"""The dispatcher that builds the activation source named by a run config (each source module loads lazily)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saeseeds.data.types import SourcePair
from saeseeds.errors import ConfigError
from saeseeds.records import resolve_path
from saeseeds.run_layout import MANIFEST

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


def resolve_run_data(cfg: RunConfig, manifest: Mapping[str, Any], run_dir: str | Path) -> RunConfig:
    """A run's config with `data.path` naming the data it was trained on, wherever the command runs from.

    run.json's data section records the file (or cache) relative to the run directory (`saeseeds.records`), so a
    relative `data.path` given at training time is read against the run, never against today's working directory.
    When that recorded place does not exist but the config's own absolute path does (the run was moved, its data
    was not), the config's path is kept. Sources without a file are returned as they are."""
    key = {"npy": "path", "safetensors": "path", "cache": "cache_path"}.get(cfg.data.source)
    data = manifest.get("data")
    recorded = data.get(key) if key and isinstance(data, Mapping) else None
    if not isinstance(recorded, str) or not recorded:
        return cfg
    path = resolve_path(recorded, run_dir)
    given = Path(cfg.data.path).expanduser()
    if not path.exists() and given.is_absolute() and given.exists():
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=str(path)))


def check_run_data(cfg: RunConfig, manifest: Mapping[str, Any], run_dir: str | Path) -> None:
    """DataError naming the file unless a run's array file (npy, safetensors) is the one it was trained on (size,
    then mtime or sha256 against run.json: `saeseeds.data.arrays.check_same_file`). A missing file passes here: a
    stage that needs it says so when it opens it. LM, cache and synthetic sources carry their own checks."""
    if cfg.data.source not in ("npy", "safetensors"):
        return
    data = manifest.get("data")
    path = Path(cfg.data.path)
    if isinstance(data, Mapping) and path.is_file():
        from saeseeds.data.arrays import check_same_file

        check_same_file(path, data, str(Path(run_dir) / MANIFEST))
