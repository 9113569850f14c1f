"""LM loss with an activation spliced in: CE, KL to the clean model, and loss recovered vs zero-ablation.

docs/definitions.md: loss recovered = (CE_zero − CE_sae) / (CE_zero − CE_clean), KL recovered = (KL_zero − KL_sae) / KL_zero,
with KL(clean ‖ spliced) averaged over predicted positions. The splice is a forward hook that replaces the
hookpoint's output (or input) by `replace_fn(activation [batch, seq, d])`; positions holding special tokens
(BOS/separators) can be left untouched, as SAEs are trained without them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saeseeds.data.hookpoints import hook_module
from saeseeds.data.lm_source import forward_kwargs
from saeseeds.errors import DataError
from saeseeds.progress import tqdm

ReplaceFn = Callable[[Tensor], Tensor]
"""Maps the activation at a hookpoint [batch, seq, d] to its replacement (same shape)."""


@dataclass
class ReplacementLoss:
    """Mean next-token CE with the replacement, and mean KL(clean ‖ replaced), over `tokens` predictions."""

    ce: float
    kl: float
    ce_clean: float
    tokens: int


@dataclass
class LmLossReport:
    """CE and KL of one replacement beside the clean and zero-ablated model, and the recovered fractions."""

    ce_clean: float
    ce_zero: float
    ce_replaced: float
    kl_zero: float
    kl_replaced: float
    loss_recovered: float
    kl_recovered: float
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def zero_replace_fn(activation: Tensor) -> Tensor:
    """Zero-ablation: the activation replaced by zeros."""
    return torch.zeros_like(activation)


def sae_replace_fn(sae: Any, latent_mask: Tensor | None = None) -> ReplaceFn:
    """Replace an activation by `sae`'s reconstruction; latents where `latent_mask` (bool [n]) is True are removed.

    The SAE runs on its own device and dtype; the result comes back in the activation's device and dtype.
    """

    @torch.no_grad()
    def replace(activation: Tensor) -> Tensor:
        flat = activation.reshape(-1, activation.shape[-1]).to(sae.device, sae.dtype)
        code = sae.encode(flat)
        if latent_mask is not None:
            drop = latent_mask.to(code.indices.device)[code.indices]
            code = code._replace(values=code.values.masked_fill(drop, 0))
        return sae.decode(code).reshape(activation.shape).to(activation.device, activation.dtype)

    return replace


def masked_replace(fn: ReplaceFn, keep: Tensor | None) -> Callable[[Tensor], Tensor]:
    """Apply `fn`, but keep the original activation where `keep` [batch, seq] is True."""

    def replace(activation: Tensor) -> Tensor:
        new = fn(activation)
        if new.shape != activation.shape:
            raise DataError(
                f"replace_fn returned shape {tuple(new.shape)} for an activation of shape {tuple(activation.shape)}"
            )
        if keep is None:
            return new
        return torch.where(keep.unsqueeze(-1).to(new.device), activation, new)

    return replace


def _logits(model: nn.Module, input_ids: Tensor) -> Tensor:
    out = model(input_ids=input_ids, **forward_kwargs(model))
    logits = out.logits if hasattr(out, "logits") else out[0]
    return logits[:, :-1].float()


def _ce_sum(logp: Tensor, targets: Tensor, valid: Tensor) -> float:
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return float(nll[valid].sum())


def _kl_sum(clean_logp: Tensor, logp: Tensor, valid: Tensor) -> float:
    kl = (clean_logp.exp() * (clean_logp - logp)).sum(-1)
    return float(kl[valid].sum())


def _check_causal(model: nn.Module) -> None:
    """A HF model without an output (next-token) head, such as a bare encoder, cannot be scored."""
    head = getattr(model, "get_output_embeddings", None)
    if head is not None and head() is None:
        raise DataError(
            f"LM loss needs a causal language model with a next-token head; {type(model).__name__} has none"
        )


def spliced_passes(
    model: nn.Module,
    chunks: Tensor,
    hookpoint: str,
    replace_fns: Mapping[str, ReplaceFn],
    forward: Callable[[nn.Module, Tensor], Tensor],
    *,
    hook_input: bool = False,
    batch_size: int = 8,
    special_ids: Sequence[int] = (),
    progress: bool = False,
    desc: str = "spliced passes",
) -> Iterator[tuple[Tensor, Tensor, str | None, Tensor | None]]:
    """Per batch of chunks: `(ids, clean, None, None)` for the clean pass, then `(ids, clean, name, out)` with
    each replacement spliced at `hookpoint` (special-token positions keep their clean activation).

    The one splice loop behind LM loss and output recovered; outputs are yielded one at a time, so only the
    clean and one replaced output are alive at once.
    """
    device = next(model.parameters()).device
    special = torch.tensor(list(special_ids), dtype=torch.int64, device=device)
    for start in tqdm(range(0, chunks.shape[0], batch_size), desc=desc, disable=not progress, leave=False):
        input_ids = chunks[start : start + batch_size].to(device)
        keep = torch.isin(input_ids, special) if special.numel() else None
        clean = forward(model, input_ids)
        yield input_ids, clean, None, None
        for name, fn in replace_fns.items():
            with hook_module(model, hookpoint, masked_replace(fn, keep), hook_input=hook_input):
                out = forward(model, input_ids)
            yield input_ids, clean, name, out


@torch.no_grad()
def replacement_loss_sums(
    model: nn.Module,
    chunks: Tensor,
    hookpoint: str,
    replace_fns: Mapping[str, ReplaceFn],
    *,
    hook_input: bool = False,
    batch_size: int = 8,
    special_ids: Sequence[int] = (),
    progress: bool = False,
) -> tuple[dict[str, float], dict[str, float], float, int]:
    """Summed CE and KL per replacement, the clean CE sum, and the number of predictions, in one pass.

    Each batch runs the clean model once and every replacement once. Predictions whose target is a special
    token are not scored; positions holding special tokens keep their clean activation.
    """
    _check_causal(model)
    if chunks.ndim != 2 or chunks.shape[1] < 2:
        raise DataError(f"LM loss needs token chunks [n, seq >= 2], got shape {tuple(chunks.shape)}")
    ce = dict.fromkeys(replace_fns, 0.0)
    kl = dict.fromkeys(replace_fns, 0.0)
    ce_clean, count = 0.0, 0
    special = torch.tensor(list(special_ids), dtype=torch.int64)
    targets = valid = clean_logp = None
    for input_ids, clean, name, out in spliced_passes(
        model, chunks, hookpoint, replace_fns, _logits, hook_input=hook_input, batch_size=batch_size,
        special_ids=special_ids, progress=progress, desc="LM loss",
    ):
        if name is None:  # the clean pass of a new batch
            targets = input_ids[:, 1:]
            valid = ~torch.isin(targets, special.to(targets.device))
            clean_logp = F.log_softmax(clean, dim=-1)
            ce_clean += _ce_sum(clean_logp, targets, valid)
            count += int(valid.sum())
            continue
        logp = F.log_softmax(out, dim=-1)
        ce[name] += _ce_sum(logp, targets, valid)
        kl[name] += _kl_sum(clean_logp, logp, valid)
    if count == 0:
        raise DataError("LM loss: no scorable predictions (every target is a special token)")
    return ce, kl, ce_clean, count


def lm_loss_with_replacement(
    model: nn.Module,
    chunks: Tensor,
    hookpoint: str,
    replace_fn: ReplaceFn,
    *,
    hook_input: bool = False,
    batch_size: int = 8,
    special_ids: Sequence[int] = (),
) -> ReplacementLoss:
    """Mean CE and KL to the clean model when `replace_fn` replaces the activation at `hookpoint`."""
    ce, kl, ce_clean, n = replacement_loss_sums(
        model, chunks, hookpoint, {"x": replace_fn}, hook_input=hook_input,
        batch_size=batch_size, special_ids=special_ids,
    )
    return ReplacementLoss(ce["x"] / n, kl["x"] / n, ce_clean / n, n)


def evaluate_lm_loss(
    model: nn.Module,
    chunks: Tensor,
    hookpoint: str,
    replace_fns: Mapping[str, ReplaceFn],
    *,
    hook_input: bool = False,
    batch_size: int = 8,
    special_ids: Sequence[int] = (),
    progress: bool = False,
) -> dict[str, LmLossReport]:
    """LmLossReport per replacement (e.g. one per SAE), sharing the clean and zero-ablation passes."""
    if "__zero__" in replace_fns:
        raise DataError("replacement name '__zero__' is reserved")
    fns = {"__zero__": zero_replace_fn, **replace_fns}
    ce, kl, ce_clean, n = replacement_loss_sums(
        model, chunks, hookpoint, fns, hook_input=hook_input, batch_size=batch_size,
        special_ids=special_ids, progress=progress,
    )
    clean, zero, kl_zero = ce_clean / n, ce["__zero__"] / n, kl["__zero__"] / n
    reports = {}
    for name in replace_fns:
        ce_r, kl_r = ce[name] / n, kl[name] / n
        gap = zero - clean
        reports[name] = LmLossReport(
            ce_clean=clean,
            ce_zero=zero,
            ce_replaced=ce_r,
            kl_zero=kl_zero,
            kl_replaced=kl_r,
            loss_recovered=(zero - ce_r) / gap if gap != 0 else float("nan"),
            kl_recovered=(kl_zero - kl_r) / kl_zero if kl_zero != 0 else float("nan"),
            tokens=n,
        )
    return reports
