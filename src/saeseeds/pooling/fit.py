"""Fit an SAE on the run's stream with the run's optimiser settings, through `training.member.Member` (the same
step as the trainer): the pooled SAE from its pooled initialisation, or a fresh single seed (the longer-training
baseline). Inputs are scaled by the run's input scale, as in training; the returned SAE stays in that trainer
space (`fold_input_scale` gives the raw-input SAE; `save_sae(..., input_scale=s)` saves it like the trainer).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import Any, Literal, get_args

import torch
from torch import Tensor

from saeseeds.config import SaeConfig, TrainConfig
from saeseeds.errors import ConfigError
from saeseeds.progress import tqdm
from saeseeds.sae.model import SparseAutoencoder
from saeseeds.training.member import Member
from saeseeds.training.schedule import default_lr

FitKind = Literal["all", "encoder"]
FIT_KINDS: tuple[str, ...] = get_args(FitKind)
FROZEN_IN_ENCODER_FIT = ("W_dec", "b_dec")


def _member(sae: SparseAutoencoder, train_cfg: TrainConfig, steps: int, fit: str, seed: int) -> Member:
    """A Member around `sae` whose Adam updates every parameter (`all`) or all but the decoder (`encoder`)."""
    if fit not in FIT_KINDS:
        raise ConfigError(f"fit: {fit!r} is not one of {', '.join(FIT_KINDS)}")
    params = []
    for name, p in sae.named_parameters():
        trainable = fit == "all" or name not in FROZEN_IN_ENCODER_FIT
        p.requires_grad_(trainable)
        if trainable:
            params.append(p)
    lr = getattr(sae.cfg, "lr", 0.0) or train_cfg.lr or default_lr(sae.num_latents)
    optimizer = torch.optim.Adam(params, lr=lr, betas=(train_cfg.adam_beta1, train_cfg.adam_beta2),
                                 eps=train_cfg.adam_eps, fused=True)
    for group in optimizer.param_groups:
        group["initial_lr"] = lr
    counter = torch.zeros(sae.num_latents, dtype=torch.int64, device=sae.device)
    return Member("pool", "pooled", seed, sae, optimizer, train_cfg, steps, counter)


def fit_sae(sae: SparseAutoencoder, batches: Iterable[Tensor], *, tokens: int, train_cfg: TrainConfig,
            scale: float, fit: str = "all", progress: bool = False, desc: str = "fit pooled SAE",
            seed: int = 0) -> tuple[SparseAutoencoder, dict[str, Any]]:
    """Train `sae` (trainer space, in place) on `tokens` of `batches` (raw); returns it and what the fit did."""
    steps = tokens // train_cfg.batch_size
    t0 = time.perf_counter()
    last = None
    done = 0
    if steps > 0:
        cfg = dataclasses.replace(train_cfg, num_tokens=steps * train_cfg.batch_size)
        member = _member(sae, cfg, steps, fit, seed)
        for step, x in enumerate(tqdm(batches, total=steps, desc=desc, disable=not progress, leave=False,
                                      mininterval=1.0)):
            if step >= steps:
                break
            last = member.step(x.to(sae.device, torch.float32) * scale, step)
            done += 1
        for p in sae.parameters():
            p.requires_grad_(True)
    sae.eval()
    info = {"fit": fit, "steps": done, "tokens": done * train_cfg.batch_size, "seconds": time.perf_counter() - t0,
            "final_train_fvu": None if last is None else last.fvu, "final_train_l0": None if last is None else last.l0}
    return sae, info


def train_single(sae_cfg: SaeConfig, d_in: int, batches: Iterable[Tensor], *, tokens: int, train_cfg: TrainConfig,
                 scale: float, seed: int, device: str | torch.device = "cpu", progress: bool = False
                 ) -> tuple[SparseAutoencoder, dict[str, Any]]:
    """A fresh seed trained as the trainer would, for `tokens` (the compute-matched baseline); b_dec starts at the
    first batch's mean, as in training."""
    steps = tokens // train_cfg.batch_size
    if steps <= 0:
        raise ConfigError(f"baseline: {tokens} tokens is less than one batch of {train_cfg.batch_size}")
    cfg = dataclasses.replace(train_cfg, num_tokens=steps * train_cfg.batch_size)
    member = Member.create("pool", sae_cfg, seed, d_in, cfg, steps, torch.device(device))
    t0 = time.perf_counter()
    done = 0
    last = None
    for step, x in enumerate(tqdm(batches, total=steps, desc=f"baseline seed {seed}", disable=not progress,
                                  leave=False, mininterval=1.0)):
        if step >= steps:
            break
        x = x.to(member.sae.device, torch.float32) * scale
        if step == 0:
            with torch.no_grad():
                member.sae.b_dec.copy_(x.mean(0))
        last = member.step(x, step)
        done += 1
    member.sae.eval()
    info = {"seed": seed, "steps": done, "tokens": done * train_cfg.batch_size,
            "seconds": time.perf_counter() - t0, "final_train_fvu": None if last is None else last.fvu}
    return member.sae, info
