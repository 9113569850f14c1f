"""Output recovered: how much of the model's final output survives an activation spliced in, for any model.

LM loss recovered (`saeseeds.analysis.lm_loss`) needs a next-token head. This metric needs none: it splices
the replacement at the hookpoint (the same forward hook and special-token handling as `lm_loss`) and
compares the model's pooled final output with the clean one (docs/definitions.md):

    output_mse(setting) = mean over sequences of ‖out_setting − out_clean‖²
    output_recovered    = (output_mse_zero − output_mse_replaced) / output_mse_zero

where `zero` replaces the hookpoint activation by zeros (as CE_zero does) and positions holding special
tokens keep their clean activation. `out` is one vector per sequence:

- the final hidden state (`last_hidden_state`, else `hidden_states[-1]`; for a causal LM this is the input
  of the next-token head, after the final norm, not the logits: CE/KL already cover the logits), float32;
- pooled over the sequence as the model's sentence-transformers config says (`modules.json` and its
  `Pooling` module's `config.json` in the model directory; a `Normalize` module adds L2-normalisation).
  The packaged default all-MiniLM-L6-v2 says mean pooling + L2-normalisation. With no such config (any
  other model, causal LMs included) the pooling is the mean of the final hidden state over positions,
  without normalisation.

Token chunks are packed without padding and run without an attention mask, so every position (special
tokens included, as in sentence-transformers, whose mask covers [CLS] and [SEP]) enters the pooling.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from saeseeds.analysis.lm_loss import ReplaceFn, sae_replace_fn, spliced_passes, zero_replace_fn
from saeseeds.data.lm_source import forward_kwargs
from saeseeds.errors import DataError

if TYPE_CHECKING:
    from saeseeds.analysis.ablation import AblationSet, Autoencoder

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len", "lasttoken")
"""Supported sentence-transformers pooling modes, in the order sentence-transformers concatenates them."""

_ST_MODE_KEYS = {
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "mean": "pooling_mode_mean_tokens",
    "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}


@dataclass(frozen=True)
class OutputPooling:
    """How the final hidden state [batch, seq, d] becomes one output vector per sequence."""

    modes: tuple[str, ...] = ("mean",)
    """Concatenated in this order (sentence-transformers' order)."""
    normalize: bool = False
    """L2-normalise the pooled vector (sentence-transformers' Normalize module)."""
    source: str = "default (no pooling config)"

    def __post_init__(self) -> None:
        unknown = [m for m in self.modes if m not in POOLING_MODES]
        if not self.modes or unknown:
            raise DataError(f"output pooling: modes must be a non-empty subset of {POOLING_MODES}, got {self.modes}")

    def describe(self) -> str:
        norm = " + L2-normalise" if self.normalize else ""
        return f"{'+'.join(self.modes)} pooling of the last hidden state{norm} [{self.source}]"

    def __call__(self, hidden: Tensor) -> Tensor:
        """[batch, seq, d] → [batch, d · len(modes)] float32 (every position counts: no padding)."""
        hidden = hidden.float()
        parts = []
        for mode in self.modes:
            if mode == "cls":
                parts.append(hidden[:, 0])
            elif mode == "max":
                parts.append(hidden.max(dim=1).values)
            elif mode == "mean":
                parts.append(hidden.mean(dim=1))
            elif mode == "mean_sqrt_len":
                parts.append(hidden.sum(dim=1) / hidden.shape[1] ** 0.5)
            else:  # lasttoken
                parts.append(hidden[:, -1])
        out = torch.cat(parts, dim=-1)
        return torch.nn.functional.normalize(out, dim=-1) if self.normalize else out


def read_pooling_config(directory: str | Path) -> OutputPooling | None:
    """The pooling a sentence-transformers model directory declares (`modules.json`), or None without one."""
    directory = Path(directory)
    modules_file = directory / "modules.json"
    if not modules_file.is_file():
        return None
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{modules_file}: cannot read it ({err})") from err
    types = [str(m.get("type", "")) for m in modules]
    normalize = any(t.endswith(".Normalize") for t in types)
    pooling = next((m for m in modules if str(m.get("type", "")).endswith(".Pooling")), None)
    if pooling is None:
        return OutputPooling(("mean",), normalize, f"{modules_file.name}: no Pooling module, mean")
    config_file = directory / str(pooling.get("path", "")) / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{config_file}: cannot read the pooling config ({err})") from err
    modes = tuple(m for m in POOLING_MODES if config.get(_ST_MODE_KEYS[m], False))
    unsupported = [k for k, v in config.items() if k.startswith("pooling_mode_") and v
                   and k not in _ST_MODE_KEYS.values()]
    if unsupported or not modes:
        raise DataError(f"{config_file}: unsupported pooling {unsupported or 'none'} (supported: {POOLING_MODES})")
    return OutputPooling(modes, normalize, f"{directory.name}/modules.json")


def output_pooling(model: nn.Module) -> OutputPooling:
    """The pooling of `model`: its sentence-transformers config when its directory has one, else mean."""
    config = getattr(model, "config", None)
    name = getattr(model, "name_or_path", None) or getattr(config, "_name_or_path", "") or ""
    if name and Path(name).is_dir():
        found = read_pooling_config(name)
        if found is not None:
            return found
    return OutputPooling()


def final_hidden_state(model: nn.Module, input_ids: Tensor) -> Tensor:
    """The model's last hidden state [batch, seq, d] (after the final norm for HF causal LMs)."""
    out = model(input_ids=input_ids, output_hidden_states=True, **forward_kwargs(model))
    hidden = getattr(out, "last_hidden_state", None)
    if hidden is None:
        states = getattr(out, "hidden_states", None)
        if not states:
            raise DataError(f"{type(model).__name__} returns neither last_hidden_state nor hidden_states")
        hidden = states[-1]
    return hidden


@dataclass
class OutputReport:
    """Output MSE of one replacement beside zero-ablation, and the fraction recovered."""

    output_mse: float
    output_mse_zero: float
    output_recovered: float
    clean_norm_sq: float
    """Mean ‖out_clean‖² (the scale of the MSEs; 1 with L2-normalisation)."""
    sequences: int
    pooling: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def output_mse_sums(
    model: nn.Module,
    chunks: Tensor,
    hookpoint: str,
    replace_fns: Mapping[str, ReplaceFn],
    *,
    hook_input: bool = False,
    batch_size: int = 8,
    special_ids: Sequence[int] = (),
    progress: bool = False,
    pooling: OutputPooling | None = None,
) -> tuple[dict[str, float], float, int]:
    """Summed ‖out_replaced − out_clean‖² per replacement, summed ‖out_clean‖², and the number of sequences.

    Each batch runs the clean model once and every replacement once; special-token positions keep their
    clean activation.
    """
    if chunks.ndim != 2 or chunks.shape[0] == 0 or chunks.shape[1] < 1:
        raise DataError(f"output recovered needs token chunks [n >= 1, seq >= 1], got shape {tuple(chunks.shape)}")
    pool = pooling if pooling is not None else output_pooling(model)
    sq = dict.fromkeys(replace_fns, 0.0)
    clean_sq = 0.0
    for _, clean, name, out in spliced_passes(
        model, chunks, hookpoint, replace_fns, lambda m, ids: pool(final_hidden_state(m, ids)),
        hook_input=hook_input, batch_size=batch_size, special_ids=special_ids, progress=progress,
        desc="output recovered",
    ):
        if name is None:
            clean_sq += float((clean**2).sum())
        else:
            sq[name] += float(((out - clean) ** 2).sum())
    return sq, clean_sq, int(chunks.shape[0])


def evaluate_output_recovered(
    model: nn.Module,
    chunks: Tensor,
    hookpoint: str,
    replace_fns: Mapping[str, ReplaceFn],
    *,
    hook_input: bool = False,
    batch_size: int = 8,
    special_ids: Sequence[int] = (),
    progress: bool = False,
    pooling: OutputPooling | None = None,
) -> dict[str, OutputReport]:
    """OutputReport per replacement (e.g. one per SAE), sharing the clean and zero-ablation passes.

    `pooling` defaults to `output_pooling(model)` (the model's sentence-transformers config, else mean).
    """
    if "__zero__" in replace_fns:
        raise DataError("replacement name '__zero__' is reserved")
    pool = pooling if pooling is not None else output_pooling(model)
    fns = {"__zero__": zero_replace_fn, **replace_fns}
    sq, clean_sq, n = output_mse_sums(
        model, chunks, hookpoint, fns, hook_input=hook_input, batch_size=batch_size,
        special_ids=special_ids, progress=progress, pooling=pool,
    )
    zero = sq["__zero__"] / n
    reports = {}
    for name in replace_fns:
        mse = sq[name] / n
        reports[name] = OutputReport(
            output_mse=mse,
            output_mse_zero=zero,
            output_recovered=(zero - mse) / zero if zero != 0 else float("nan"),
            clean_norm_sq=clean_sq / n,
            sequences=n,
            pooling=pool.describe(),
        )
    return reports


def ablation_output_recovered(
    sae: Autoencoder,
    model: nn.Module,
    chunks: Tensor,
    hookpoint: str,
    sets: Sequence[AblationSet],
    *,
    hook_input: bool = False,
    batch_size: int = 8,
    special_ids: Sequence[int] = (),
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Output MSE and output recovered with each `AblationSet`'s ablated reconstruction spliced in at `hookpoint`.

    The counterpart of `saeseeds.analysis.ablation.ablation_lm_loss` for any model (encoders included): one
    clean and one zero-ablated pass shared by every set. Returns per set name {"output_mse", "output_recovered",
    "output_mse_zero"}.
    """
    fns = {s.name: sae_replace_fn(sae, s.mask) for s in sets}
    reports = evaluate_output_recovered(
        model, chunks, hookpoint, fns, hook_input=hook_input, batch_size=batch_size,
        special_ids=special_ids, progress=progress,
    )
    return {
        name: {"output_mse": r.output_mse, "output_recovered": r.output_recovered, "output_mse_zero": r.output_mse_zero}
        for name, r in reports.items()
    }
