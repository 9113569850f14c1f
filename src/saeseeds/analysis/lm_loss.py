"""LM loss with an activation spliced in: CE, KL to the clean model, and loss recovered vs zero-ablation.

docs/definitions.md: loss recovered = (CE_zero − CE_sae) / (CE_zero − CE_clean), KL recovered = (KL_zero − KL_sae) / KL_zero,
with KL(clean ‖ spliced) averaged over predicted positions. The splice is a forward hook that replaces the
hookpoint's output (or input) by `replace_fn(activation [batch, seq, d])`; positions holding special tokens
(BOS/separators) can be left untouched, as SAEs are trained without them.

`lm_loss_of_run` / `write_lm_loss` score every SAE of a run on its stored held-out chunks (`<run>/lm_loss.json`,
schema `saeseeds.lm_loss/1`): what `train` writes after a causal-LM run and `demo` reads.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saeseeds.data.hookpoints import hook_module
from saeseeds.data.lm_source import forward_kwargs
from saeseeds.errors import DataError
from saeseeds.progress import tqdm
from saeseeds.training.run_dir import member_key

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


# --------------------------------------------------------------------------------------------
# every SAE of a run, on its stored held-out chunks: <run>/lm_loss.json

LM_LOSS_SCHEMA = "saeseeds.lm_loss/1"
LM_LOSS_FIELDS = ("ce_clean", "ce_spliced", "ce_zero", "ce_loss_recovered", "kl_spliced")
"""The fields of every row of lm_loss.json (docs/formats.md), beside hookpoint, sae and seed."""
LM_LOSS_DEFINITION = ("ce_*: mean next-token cross-entropy (nats) of the clean model, with the SAE's reconstruction "
                      "spliced in at the hookpoint, and with the hookpoint zero-ablated; ce_loss_recovered = "
                      "(ce_zero - ce_spliced) / (ce_zero - ce_clean); kl_spliced: mean KL(clean || spliced) per "
                      "scored token (docs/definitions.md)")


def lm_loss_of_run(run_dir: str | Path, loaded: Any = None, *, progress: bool = False) -> dict[str, Any] | None:
    """LM loss of every SAE of a run with its reconstruction spliced in, on the run's stored held-out chunks.

    Reads the chunks and special-token ids of `<run>/eval/` (never re-tokenises), so the cost is bounded by
    `train.store_eval_tokens`: per batch of chunks one clean, one zero-ablated and one spliced pass per SAE.
    `loaded` is the run's `LoadedModel` (or a bare causal LM module) when the caller holds it; else the run's
    model is loaded. None when the run has no stored token chunks or its model is not a causal LM.
    """
    from saeseeds.training.eval_store import read_eval_rows, stored_info
    from saeseeds.training.run_dir import load_run_config, read_manifest

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    info = stored_info(manifest)
    data = manifest.get("data") if isinstance(manifest.get("data"), dict) else {}
    if info is None or not info.get("has_tokens") or not data.get("is_causal"):
        return None
    rows = read_eval_rows(run_dir, info)
    cfg = load_run_config(run_dir)
    if loaded is None:
        from saeseeds.data.lm_source import load_language_model

        loaded = load_language_model(cfg.lm)
    model = getattr(loaded, "model", loaded)
    chunks, special = rows["chunks"], [int(t) for t in rows["special_ids"]]
    reports = _run_reports(run_dir, model, chunks, special, hook_input=cfg.lm.hook_input,
                           batch_size=cfg.lm.lm_batch_size, progress=progress)
    tokens = next(iter(reports.values()))[1].tokens if reports else 0
    return {
        "definition": LM_LOSS_DEFINITION,
        "model": data.get("model"),
        "hook_input": cfg.lm.hook_input,
        "chunks": int(chunks.shape[0]),
        "ctx_len": int(chunks.shape[1]),
        "tokens": tokens,
        "rows": [_row(ref, report) for ref, report in reports.values()],
    }


def _run_reports(run_dir: Path, model: nn.Module, chunks: Tensor, special: Sequence[int], *, hook_input: bool,
                 batch_size: int, progress: bool) -> dict[str, tuple[Any, LmLossReport]]:
    """(checkpoint, report) per SAE of the run, sharing the clean and zero-ablation passes per hookpoint."""
    from saeseeds.sae import load_sae
    from saeseeds.training.run_dir import list_checkpoints

    device = str(next(model.parameters()).device)
    refs: dict[str, dict[str, Any]] = {}
    for ref in list_checkpoints(run_dir):
        refs.setdefault(ref.hookpoint, {})[member_key(ref.hookpoint, ref.sae_name, ref.seed)] = ref
    out: dict[str, tuple[Any, LmLossReport]] = {}
    for hookpoint, by_key in refs.items():
        fns = {key: sae_replace_fn(load_sae(ref.path, device=device)) for key, ref in by_key.items()}
        reports = evaluate_lm_loss(model, chunks, hookpoint, fns, hook_input=hook_input, batch_size=batch_size,
                                   special_ids=special, progress=progress)
        out.update({key: (by_key[key], report) for key, report in reports.items()})
    return out


def _row(ref: Any, report: LmLossReport) -> dict[str, Any]:
    """One row of lm_loss.json."""
    return {
        "hookpoint": ref.hookpoint, "sae": ref.sae_name, "seed": ref.seed,
        "ce_clean": report.ce_clean, "ce_spliced": report.ce_replaced, "ce_zero": report.ce_zero,
        "ce_loss_recovered": report.loss_recovered, "kl_spliced": report.kl_replaced,
        "kl_zero": report.kl_zero, "kl_recovered": report.kl_recovered, "tokens": report.tokens,
    }


def write_lm_loss(run_dir: str | Path, loaded: Any = None, *, progress: bool = False) -> dict[str, Any] | None:
    """`lm_loss_of_run`, written to `<run>/lm_loss.json` (schema saeseeds.lm_loss/1); None (nothing written)
    when the run has no causal model or stored chunks."""
    from saeseeds.records import write_record
    from saeseeds.run_layout import LM_LOSS

    record = lm_loss_of_run(run_dir, loaded, progress=progress)
    if record is not None:
        write_record(Path(run_dir) / LM_LOSS, LM_LOSS_SCHEMA, record)
    return record


def read_lm_loss(run_dir: str | Path) -> dict[str, Any] | None:
    """A run's lm_loss.json, or None when it has none (or it does not parse)."""
    import json

    from saeseeds.run_layout import LM_LOSS

    try:
        record = json.loads((Path(run_dir) / LM_LOSS).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("rows"), list) else None


def summary_lines(record: Mapping[str, Any]) -> list[str]:
    """One line per SAE configuration: loss recovered and KL, mean ± sd over its seeds, and the CE it comes from."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in record.get("rows", []):
        groups.setdefault((row["hookpoint"], row["sae"]), []).append(row)
    lines = []
    for (hookpoint, sae), rows in sorted(groups.items()):
        rec, kl = _mean_sd([r["ce_loss_recovered"] for r in rows]), _mean_sd([r["kl_spliced"] for r in rows])
        ce = sum(r["ce_spliced"] for r in rows) / len(rows)
        lines.append(f"{hookpoint}/{sae}: LM loss recovered {rec[0]:.3f} ± {rec[1]:.3f}, KL {kl[0]:.4f} ± {kl[1]:.4f} "
                     f"nats/token over {len(rows)} seed(s) (CE clean {rows[0]['ce_clean']:.3f}, spliced {ce:.3f}, "
                     f"zero-ablated {rows[0]['ce_zero']:.3f}; {record.get('tokens', 0):,} held-out tokens)")
    return lines


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value; NaN values propagate)."""
    mean = sum(values) / len(values)
    return mean, statistics.stdev(values) if len(values) > 1 and not any(map(math.isnan, values)) else 0.0
