"""The run's init sample: the first `train.init_sample_tokens` rows of the training stream, for data-dependent
initialisation (`init_decoder` data / kmeans, `init_b_dec` geometric_median) and rasae's shared candidates.

Read ahead of training without consuming the stream: the batches read for it are replayed, in order, before the
rest, so the run trains on exactly the batches it would without it. The same rows serve every seed; they are
stored raw (before the input scale) in <run>/init_sample.safetensors with their SHA-256 in run.json, and a
resumed run reads them back from there. A run whose SAEs need none of this draws and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from saeseeds.atomic import atomic_write
from saeseeds.config import SaeConfig
from saeseeds.errors import ConfigError
from saeseeds.hashing import file_sha256
from saeseeds.run_layout import INIT_SAMPLE
from saeseeds.sae.kmeans import geometric_median, kmeans
from saeseeds.sae.registry import get_architecture

CENTROID_SEED = 0
"""Seed of the one k-means whose centroids every seed of the run shares (rasae's candidates)."""

Batch = dict[str, Tensor]


def needs_init_sample(saes: list[SaeConfig]) -> bool:
    """Whether any [[sae]] initialises from data (so the run draws and stores the sample)."""
    return any(
        cfg.init_decoder != "random" or cfg.init_b_dec == "geometric_median"
        or get_architecture(cfg.architecture).shared_points(cfg, 1) > 0
        for cfg in saes
    )


def peek_rows(first: Batch, stream: Iterator[Batch], rows: int) -> tuple[Batch, Iterator[Batch]]:
    """The first `rows` rows of `first` + `stream` per hookpoint (fewer if the stream ends), and the batches after
    `first` to train on: those read ahead, then the rest of `stream`."""
    taken, count = [first], int(next(iter(first.values())).shape[0])
    while count < rows:
        batch = next(stream, None)
        if batch is None:
            break
        taken.append(batch)
        count += int(next(iter(batch.values())).shape[0])
    sample = {h: torch.cat([b[h] for b in taken])[:rows].to("cpu", torch.float32).contiguous() for h in first}
    return sample, chain(taken[1:], stream)


def save_init_sample(out: Path, sample: Batch) -> dict[str, Any]:
    """Write the sample atomically into the run; run.json's `init_sample` record (path, rows, sha256)."""
    path = out / INIT_SAMPLE
    atomic_write(path, lambda tmp: save_file(sample, str(tmp)))
    rows = int(next(iter(sample.values())).shape[0])
    return {"path": INIT_SAMPLE, "rows": rows, "hookpoints": sorted(sample), "sha256": file_sha256(path),
            "about": "the first rows of the training stream, raw; data-dependent initialisation reads them"}


def load_init_sample(out: Path, record: Any) -> Batch | None:
    """The stored sample when run.json's record matches the file (same SHA-256), else None (draw it again)."""
    path = out / INIT_SAMPLE
    if not isinstance(record, dict) or not path.is_file() or file_sha256(path) != record.get("sha256"):
        return None
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return None


def check_sample_rows(where: str, cfg: SaeConfig, num_latents: int, rows: int) -> None:
    """Refuse a configuration that needs more sample rows than the run has (one line naming both fields)."""
    needs = []
    if cfg.init_decoder != "random":
        needs.append((f"{where}.init_decoder = {cfg.init_decoder!r}", num_latents))
    count = get_architecture(cfg.architecture).shared_points(cfg, num_latents)
    if count:
        needs.append((f"{where}.architecture = {cfg.architecture!r} with {count} candidates", count))
    for what, needed in needs:
        if needed > rows:
            raise ConfigError(f"{what} needs {needed} init-sample rows but the run has {rows}; allowed: "
                              f"train.init_sample_tokens >= {needed} (and a stream that long)")


class InitInputs:
    """The scaled sample, its geometric median and the shared centroids of one run, each computed once."""

    def __init__(self, sample: Batch, scales: dict[str, float]) -> None:
        self.raw = sample
        self.scales = scales
        self._scaled: dict[str, Tensor] = {}
        self._medians: dict[str, Tensor] = {}
        self._centroids: dict[tuple[str, int], Tensor] = {}

    def rows(self, hookpoint: str) -> int:
        """How many sample rows the hookpoint has."""
        return int(self.raw[hookpoint].shape[0])

    def scaled(self, hookpoint: str) -> Tensor:
        """The sample as the trainer feeds it (times the input scale), float32 on the CPU."""
        if hookpoint not in self._scaled:
            self._scaled[hookpoint] = self.raw[hookpoint].float() * self.scales[hookpoint]
        return self._scaled[hookpoint]

    def centred(self, hookpoint: str) -> Tensor:
        """The scaled sample minus its mean: where data-initialised atoms come from (the SAE decodes x − b_dec)."""
        points = self.scaled(hookpoint)
        return points - points.mean(0)

    def median(self, hookpoint: str) -> Tensor:
        """Geometric median of the scaled sample."""
        if hookpoint not in self._medians:
            self._medians[hookpoint] = geometric_median(self.scaled(hookpoint))
        return self._medians[hookpoint]

    def centroids(self, hookpoint: str, count: int) -> Tensor:
        """`count` k-means centroids of the scaled sample (not centred: rasae's atoms are points of the data's
        hull), k-means++ seeded by CENTROID_SEED: shared by every seed."""
        key = (hookpoint, count)
        if key not in self._centroids:
            generator = torch.Generator().manual_seed(CENTROID_SEED)
            self._centroids[key] = kmeans(self.scaled(hookpoint), count, generator)
        return self._centroids[key]
