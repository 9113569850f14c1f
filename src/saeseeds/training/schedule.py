"""Learning-rate and penalty-coefficient schedules: linear warm-up, then constant, then decay to zero."""

from __future__ import annotations

import math


def lr_factor(step: int, total_steps: int, warmup_steps: int, decay: str, decay_start: float) -> float:
    """Multiplier of the base learning rate at `step` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    start = int(total_steps * decay_start)
    if decay == "constant" or step < start or total_steps <= start:
        return 1.0
    progress = min((step - start) / max(total_steps - start, 1), 1.0)
    if decay == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up of a penalty coefficient from 0 to 1 over `warmup_steps`."""
    if warmup_steps <= 0:
        return 1.0
    return min((step + 1) / warmup_steps, 1.0)


def default_lr(num_latents: int) -> float:
    """sparsify's rule: 2e-4 scaled by 1/sqrt(num_latents / 2**14)."""
    return 2e-4 / math.sqrt(num_latents / 2**14)
