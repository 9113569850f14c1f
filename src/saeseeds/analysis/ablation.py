"""Functional importance by ablation: remove a set of latents from the SAE's reconstruction and measure the loss.

Ablating latent i means zeroing its activation before decoding (interfaces.md): x̂ = Σ_{j∉S} f_j(x) d_j + b_dec.
Ablating every latent therefore leaves x̂ = b_dec, the "zero reconstruction" of an SAE with a decoder bias:
its FVU is Σ‖x − b_dec‖² / Σ‖x − x̄‖² = 1 + N‖x̄ − b_dec‖² / Σ‖x − x̄‖² ≥ 1 (equal to 1 only when b_dec = x̄).
Encoder activations of the remaining latents are left as they are (no re-encoding), so effects are additive
in the decoder and the sets are comparable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from saeseeds.errors import DataError
from saeseeds.sae.outputs import LatentCode


class Autoencoder(Protocol):
    """What ablation needs of an SAE: a sparse encode and a decode (saeseeds.sae.SparseAutoencoder fits)."""

    num_latents: int

    def encode(self, x: Tensor) -> LatentCode: ...

    def decode(self, code: LatentCode) -> Tensor: ...


@dataclass(frozen=True)
class AblationSet:
    """A named set of latents to remove; `family` groups random controls drawn alike."""

    name: str
    family: str
    mask: Tensor
    """bool [num_latents]: True = ablated."""

    @property
    def size(self) -> int:
        return int(self.mask.sum())


def ablate_code(code: LatentCode, mask: Tensor) -> LatentCode:
    """The code with every entry whose latent is in `mask` (bool [num_latents]) set to 0."""
    drop = mask.to(code.indices.device)[code.indices]
    return LatentCode(code.values.masked_fill(drop, 0), code.indices)


def build_ablation_sets(
    stable: Tensor,
    unstable: Tensor,
    *,
    n_random: int = 5,
    pool: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> list[AblationSet]:
    """Sets: none, stable, unstable, all, and `n_random` random sets the size of each of stable/unstable.

    Random controls are drawn without replacement from `pool` (bool mask; default all latents), e.g. the
    latents alive on the evaluation data, so a control never gets credit for dead latents.
    """
    if stable.shape != unstable.shape or stable.ndim != 1:
        raise DataError(f"ablation: stable {tuple(stable.shape)} and unstable {tuple(unstable.shape)} masks must be equal [n]")
    n = stable.numel()
    pool = torch.ones(n, dtype=torch.bool) if pool is None else pool.bool().cpu()
    candidates = torch.nonzero(pool).flatten()
    sets = [
        AblationSet("none", "none", torch.zeros(n, dtype=torch.bool)),
        AblationSet("stable", "stable", stable.bool().cpu()),
        AblationSet("unstable", "unstable", unstable.bool().cpu()),
    ]
    for family, size in (("random_like_stable", int(stable.sum())), ("random_like_unstable", int(unstable.sum()))):
        if size > candidates.numel():
            raise DataError(f"ablation: cannot draw {size} random latents from a pool of {candidates.numel()}")
        for i in range(n_random):
            pick = candidates[torch.randperm(candidates.numel(), generator=generator)[:size]]
            mask = torch.zeros(n, dtype=torch.bool)
            mask[pick] = True
            sets.append(AblationSet(f"{family}/{i}", family, mask))
    sets.append(AblationSet("all", "all", torch.ones(n, dtype=torch.bool)))
    return sets


class _FvuSums:
    """Streaming FVU for several reconstructions of the same inputs, sharing one whole-set denominator."""

    def __init__(self, names: Sequence[str]) -> None:
        self.err = {name: 0.0 for name in names}
        self.count = 0
        self.sum: Tensor | None = None
        self.sumsq = 0.0

    def add_inputs(self, x: Tensor) -> None:
        x = x.double()
        self.count += x.shape[0]
        s = x.sum(0)
        self.sum = s if self.sum is None else self.sum + s
        self.sumsq += float((x**2).sum())

    def add_error(self, name: str, x: Tensor, x_hat: Tensor) -> None:
        self.err[name] += float(((x.double() - x_hat.double()) ** 2).sum())

    def values(self) -> dict[str, float]:
        if self.sum is None or self.count == 0:
            raise DataError("ablation: no evaluation activations were given")
        total = self.sumsq - float((self.sum**2).sum()) / self.count
        if total <= 0:
            raise DataError("ablation: evaluation activations have zero variance; FVU is undefined")
        return {name: err / total for name, err in self.err.items()}


@torch.no_grad()
def ablation_fvu(sae: Autoencoder, batches: Iterable[Tensor], sets: Sequence[AblationSet]) -> dict[str, float]:
    """FVU (docs/definitions.md, whole-set mean) of the reconstruction with each set ablated, in one pass over `batches`."""
    for s in sets:
        if s.mask.numel() != sae.num_latents:
            raise DataError(f"ablation set {s.name}: mask of {s.mask.numel()} for {sae.num_latents} latents")
    sums = _FvuSums([s.name for s in sets])
    for x in batches:
        if x.ndim != 2:
            raise DataError(f"ablation: evaluation batches must be [batch, d_in], got {tuple(x.shape)}")
        sums.add_inputs(x)
        code = sae.encode(x)
        for s in sets:
            sums.add_error(s.name, x, sae.decode(ablate_code(code, s.mask)))
    return sums.values()


def ablation_lm_loss(
    sae: Autoencoder,
    model: torch.nn.Module,
    chunks: Tensor,
    hookpoint: str,
    sets: Sequence[AblationSet],
    *,
    hook_input: bool = False,
    batch_size: int = 8,
    special_ids: Sequence[int] = (),
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """CE, KL and loss recovered (docs/definitions.md) with each set's ablated reconstruction spliced in at `hookpoint`.

    Uses `saeseeds.analysis.lm_loss`: one clean and one zero-ablated pass shared by every set.
    """
    from saeseeds.analysis.lm_loss import evaluate_lm_loss, sae_replace_fn

    fns = {s.name: sae_replace_fn(sae, s.mask) for s in sets}
    reports = evaluate_lm_loss(
        model, chunks, hookpoint, fns, hook_input=hook_input, batch_size=batch_size,
        special_ids=special_ids, progress=progress,
    )
    return {
        name: {
            "ce": r.ce_replaced,
            "kl": r.kl_replaced,
            "loss_recovered": r.loss_recovered,
            "kl_recovered": r.kl_recovered,
            "ce_clean": r.ce_clean,
            "ce_zero": r.ce_zero,
            "kl_zero": r.kl_zero,
        }
        for name, r in reports.items()
    }


# --------------------------------------------------------------------------------------------
# tables


@dataclass(frozen=True)
class AblationRow:
    """One row of the ablation table: a set (or a family of random controls) and its metrics."""

    name: str
    size: int
    n_draws: int
    metrics: dict[str, float]
    """Metric name → value (the mean over draws for random families)."""
    spread: dict[str, dict[str, float]]
    """Metric name → {std, min, max} over draws (empty for fixed sets)."""


def ablation_table(sets: Sequence[AblationSet], results: Mapping[str, Mapping[str, float]]) -> list[AblationRow]:
    """Collapse per-set results (set name → metric → value) into rows, random controls as mean ± spread."""
    families: dict[str, list[AblationSet]] = {}
    for s in sets:
        families.setdefault(s.family, []).append(s)
    rows = []
    for family, members in families.items():
        metric_names = sorted({m for s in members for m in results.get(s.name, {})})
        metrics: dict[str, float] = {}
        spread: dict[str, dict[str, float]] = {}
        for metric in metric_names:
            vals = torch.tensor([results[s.name][metric] for s in members], dtype=torch.float64)
            metrics[metric] = float(vals.mean())
            if len(members) > 1:
                spread[metric] = {
                    "std": float(vals.std()),
                    "min": float(vals.min()),
                    "max": float(vals.max()),
                }
        rows.append(AblationRow(family, members[0].size, len(members), metrics, spread))
    return rows


def z_score(value: float, row: AblationRow, metric: str) -> float:
    """How many control standard deviations `value` lies from a random-control row's mean."""
    sp = row.spread.get(metric)
    if not sp or sp["std"] == 0:
        return math.nan
    return (value - row.metrics[metric]) / sp["std"]
