"""One SAE being trained: its model, optimizer, schedule, dead-latent counter and (optionally) L0 controller;
knows nothing of the others."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from saeseeds.config import SaeConfig, TrainConfig
from saeseeds.sae.model import SparseAutoencoder
from saeseeds.training.run_dir import member_key
from saeseeds.training.schedule import default_lr, lr_factor, warmup_factor

L0_GAIN = 0.02
"""L0 controller: log-coefficient change per step per unit of log(L0 / target) (docs/definitions.md)."""
L0_MAX_STEP = 0.05
"""L0 controller: the largest change of the log-coefficient in one step."""
L0_EMA = 0.9
"""L0 controller: momentum of the moving average of the training-batch L0 it steers."""


class StepStats(NamedTuple):
    """What one optimisation step measured (on the training batch)."""

    loss: float
    fvu: float
    l0: float
    aux_loss: float
    dead_fraction: float


@dataclass
class Member:
    """An SAE of the run, identified by hookpoint, configuration name and seed."""

    hookpoint: str
    name: str
    seed: int
    sae: SparseAutoencoder
    optimizer: torch.optim.Optimizer
    train_cfg: TrainConfig
    total_steps: int
    tokens_since_fired: Tensor
    penalty_scale: float = 1.0
    """Multiplier of the sparsity coefficient set by the L0 controller (1 without `target_l0`)."""
    l0_ema: float = math.nan
    """The L0 controller's moving average of the training L0 (NaN before it starts)."""

    @property
    def key(self) -> str:
        """'<hookpoint>/<name>/seed<N>', the member's path inside the run directory."""
        return member_key(self.hookpoint, self.name, self.seed)

    @classmethod
    def create(
        cls,
        hookpoint: str,
        sae_cfg: SaeConfig,
        seed: int,
        d_in: int,
        train_cfg: TrainConfig,
        total_steps: int,
        device: torch.device,
        *,
        sample: Tensor | None = None,
        points: Tensor | None = None,
    ) -> Member:
        """Initialise from the seed's own generator (never the global RNG); `sample` / `points`: the run's init
        sample and shared centroids, for data-dependent initialisation (saeseeds.training.init_sample)."""
        generator = torch.Generator().manual_seed(seed)
        sae = SparseAutoencoder(sae_cfg, d_in, generator=generator, device=device, sample=sample, points=points)
        lr = sae_cfg.lr or train_cfg.lr or default_lr(sae.num_latents)
        optimizer = torch.optim.Adam(
            sae.parameters(),
            lr=lr,
            betas=(train_cfg.adam_beta1, train_cfg.adam_beta2),
            eps=train_cfg.adam_eps,
            fused=True,  # one kernel per parameter on CPU and CUDA; same update as the reference Adam
        )
        for group in optimizer.param_groups:
            group["initial_lr"] = lr
        counter = torch.zeros(sae.num_latents, dtype=torch.int64, device=device)
        return cls(hookpoint, sae_cfg.resolved_name(d_in), seed, sae, optimizer, train_cfg, total_steps, counter)

    def _coefficient_warmup(self, step: int) -> float:
        """Weight of the architecture's sparsity loss at `step`: its coefficient, warmed up linearly."""
        penalty = self.sae.spec.sparsity_penalty(self.sae.cfg)
        if penalty is None:
            return 0.0
        return penalty.coefficient * self.penalty_scale * warmup_factor(step, self._penalty_warmup(penalty.warmup_steps))

    def _penalty_warmup(self, warmup_steps: int) -> int:
        """Warm-up steps of the sparsity coefficient: the configured ones, or 5% of training."""
        return warmup_steps or max(int(0.05 * self.total_steps), 1)

    @property
    def penalty_coefficient(self) -> float | None:
        """The sparsity coefficient in force after warm-up (with the controller's scale), None for topk-like."""
        penalty = self.sae.spec.sparsity_penalty(self.sae.cfg)
        return None if penalty is None else penalty.coefficient * self.penalty_scale

    def _steer_l0(self, l0: float, step: int) -> None:
        """The L0 controller: after the coefficient's warm-up and until `l0_control_until` of training, move the
        log-coefficient by L0_GAIN * log(EMA of L0 / target_l0) (clipped to ±L0_MAX_STEP); then keep it."""
        target, penalty = self.sae.cfg.target_l0, self.sae.spec.sparsity_penalty(self.sae.cfg)
        if target <= 0 or penalty is None:
            return
        start = self._penalty_warmup(penalty.warmup_steps)
        if step < start or step >= round(self.sae.cfg.l0_control_until * self.total_steps):
            return
        level = max(l0, 1e-3)
        self.l0_ema = level if math.isnan(self.l0_ema) else L0_EMA * self.l0_ema + (1 - L0_EMA) * level
        change = max(-L0_MAX_STEP, min(L0_MAX_STEP, L0_GAIN * math.log(self.l0_ema / target)))
        self.penalty_scale *= math.exp(change)

    def dead_mask(self) -> Tensor:
        """Latents that have not fired for `dead_tokens_threshold` training tokens."""
        return self.tokens_since_fired >= self.train_cfg.dead_tokens_threshold

    def step(self, x: Tensor, step: int) -> StepStats:
        """One Adam step on batch `x`; decoder rows stay unit-norm (projected gradient + renormalisation)."""
        sae, cfg = self.sae, self.train_cfg
        warmup = sae.cfg.lr_warmup_steps or cfg.lr_warmup_steps
        factor = lr_factor(step, self.total_steps, warmup, cfg.lr_decay, cfg.lr_decay_start)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        dead = self.dead_mask()
        sae.train()
        use_autocast = x.device.type == "cuda" and cfg.dtype == "bfloat16"
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_autocast):
            out = sae(x, dead_mask=dead)
            loss = out.recon_loss + self._coefficient_warmup(step) * out.sparsity_loss
            loss = loss + sae.cfg.auxk_alpha * out.aux_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if sae.cfg.normalize_decoder:
            sae.project_decoder_grad()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip)
        self.optimizer.step()
        if sae.cfg.normalize_decoder:
            sae.normalize_decoder()
        with torch.no_grad():
            sae.spec.post_step(sae)
            self.tokens_since_fired += x.shape[0]
            self.tokens_since_fired[out.fired] = 0
        stats = StepStats(
            float(loss.detach()),
            float(out.fvu.detach()),
            float(out.l0.detach()),
            float(out.aux_loss.detach()),
            float(dead.float().mean()),
        )
        self._steer_l0(stats.l0, step)
        return stats

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this member exactly: parameters, optimizer moments, dead counter."""
        return {
            "sae": {k: v.detach().cpu() for k, v in self.sae.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "tokens_since_fired": self.tokens_since_fired.cpu(),
            "l0_control": {"penalty_scale": self.penalty_scale, "l0_ema": self.l0_ema},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved."""
        self.sae.load_state_dict(state["sae"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.tokens_since_fired.copy_(state["tokens_since_fired"])
        control = state.get("l0_control", {})
        self.penalty_scale = float(control.get("penalty_scale", 1.0))
        self.l0_ema = float(control.get("l0_ema", math.nan))
