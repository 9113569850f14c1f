"""The initial encoder and decoder rows of `SparseAutoencoder` (`SaeConfig.init_encoder`, `init_decoder`).

random / transpose reproduce the original initialisation draw for draw; data and kmeans read a sample of training
activations the caller passes in (the model knows no data source: saeseeds.training.init_sample draws it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from saeseeds.errors import ConfigError
from saeseeds.sae.kmeans import kmeans

if TYPE_CHECKING:
    from saeseeds.config import SaeConfig


def unit_rows(w: Tensor) -> Tensor:
    """Each row scaled to unit norm (a zero row stays zero)."""
    return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)


def initial_decoder(cfg: SaeConfig, num_latents: int, d_in: int, generator: torch.Generator | None,
                    sample: Tensor | None) -> Tensor:
    """Unit decoder rows [num_latents, d_in] (CPU float32): random Gaussian directions (the original draw), or
    sampled / k-means rows of `sample` chosen with the seed's `generator`."""
    if cfg.init_decoder == "random":
        return unit_rows(torch.randn(num_latents, d_in, generator=generator, dtype=torch.float32))
    points = require_sample(cfg, sample, num_latents, "init_decoder")
    if cfg.init_decoder == "data":
        rows = torch.randperm(points.shape[0], generator=generator)[:num_latents]
        return unit_rows(points[rows].float())
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    return unit_rows(kmeans(points.float(), num_latents, generator).float())


def require_sample(cfg: SaeConfig, sample: Tensor | None, needed: int, field: str) -> Tensor:
    """The init sample on the CPU, refusing a missing one or one with fewer than `needed` rows."""
    if sample is None:
        raise ConfigError(f"{field} = {getattr(cfg, field)!r} needs the run's init sample (train it with saeseeds "
                          "train, or pass `sample` to SparseAutoencoder)")
    if sample.shape[0] < needed:
        raise ConfigError(f"{field} = {getattr(cfg, field)!r} needs at least {needed} sample rows, the init sample "
                          f"has {sample.shape[0]}; allowed: train.init_sample_tokens >= {needed}")
    return sample.detach().to("cpu")


def initial_encoder(cfg: SaeConfig, decoder: Tensor, generator: torch.Generator | None) -> Tensor:
    """Encoder rows before `encoder_init_scale`: the decoder rows (transpose) or fresh random unit rows drawn from
    the seed's generator after the decoder's."""
    if cfg.init_encoder == "transpose":
        return decoder
    return unit_rows(torch.randn(decoder.shape, generator=generator, dtype=torch.float32))
