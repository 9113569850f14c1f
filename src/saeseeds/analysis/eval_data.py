"""Held-out evaluation data of a run for analysis: activations per hookpoint, aligned with their token ids.

For a language-model run it re-tokenises the run's corpus exactly as training did, runs one model forward
per batch of held-out chunks, and keeps for each activation row its token id and its global position in
the `[n_chunks, ctx_len]` chunk grid (special-token positions have no row). Other sources give activations
only (no tokens: trigger concentration and LM loss are then unavailable).

`load_eval_data(run)` reads the same rows from the run's stored held-out set (`<run>/eval/`, written by the
trainer, read through `saeseeds.training.run_dir.Run.stored_held_out`) without running the LM; only the
tokenizer (for decoding contexts) and, on request, the model (for the LM-loss ablation) are loaded. Runs without a stored set fall back to `build_eval_data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from saeseeds.errors import DataError
from saeseeds.training.run_dir import Run


@dataclass
class EvalBatch:
    """One batch of held-out activations with, for LM runs, the token id and global position of each row."""

    acts: dict[str, Tensor]
    """hookpoint → [rows, d_in] float32."""
    token_ids: Tensor | None = None
    """int64 [rows]."""
    positions: Tensor | None = None
    """int64 [rows]: flat index into the eval chunk grid [n_chunks, ctx_len]."""


@dataclass
class EvalData:
    """Held-out evaluation batches of a run, plus what the LM-based analyses need (model, chunks, tokenizer)."""

    batches: list[EvalBatch]
    hookpoints: list[str]
    chunks: Tensor | None = None
    """int64 [n_chunks, ctx_len] held-out token chunks (LM runs)."""
    tokenizer: Any = None
    vocab_size: int = 0
    loaded: Any = None
    """saeseeds.data.lm_source.LoadedModel (LM runs)."""
    special_ids: tuple[int, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def has_tokens(self) -> bool:
        return self.chunks is not None

    def acts(self, hookpoint: str) -> list[Tensor]:
        """The activation batches of one hookpoint."""
        if hookpoint not in self.hookpoints:
            raise DataError(f"hookpoint {hookpoint!r} is not in the evaluation data ({', '.join(self.hookpoints)})")
        return [b.acts[hookpoint] for b in self.batches]


def build_eval_data(cfg: Any, *, max_chunks: int = 0, progress: bool = False) -> EvalData:
    """Evaluation data for a run config (`saeseeds.config.RunConfig`); `max_chunks` > 0 caps the LM chunks."""
    if cfg.data.source == "lm":
        return _lm_eval_data(cfg, max_chunks=max_chunks, progress=progress)
    from saeseeds.data.sources import build_source
    from saeseeds.data.types import as_mapping

    pair = build_source(cfg)
    batches = [EvalBatch(as_mapping(b, cfg.data.hookpoint)) for b in pair.eval]
    if not batches:
        raise DataError("the run's data source has no evaluation batches")
    return EvalData(batches, list(batches[0].acts), info=dict(pair.info))


def _lm_eval_data(cfg: Any, *, max_chunks: int, progress: bool) -> EvalData:
    from saeseeds.data.lm_source import chunk_activations, prepare_lm
    from saeseeds.progress import tqdm

    loaded, token_chunks, hookpoints = prepare_lm(cfg, progress=progress)
    chunks = token_chunks.eval
    if max_chunks > 0:
        chunks = chunks[:max_chunks]
    if chunks.numel() == 0:
        raise DataError("the run has no held-out token chunks (lm.eval_chunks = 0)")
    special = tuple(token_chunks.special_ids) if cfg.lm.exclude_special_tokens else ()
    ctx_len = chunks.shape[1]
    step = max(cfg.lm.lm_batch_size, 1)
    batches = []
    for start in tqdm(range(0, chunks.shape[0], step), desc="eval forward", disable=not progress, leave=False):
        ids = chunks[start : start + step]
        acts = chunk_activations(loaded.model, ids, hookpoints, special_ids=special, hook_input=cfg.lm.hook_input)
        keep = ~torch.isin(ids, torch.tensor(list(special), dtype=ids.dtype))
        grid = torch.arange(start * ctx_len, (start + ids.shape[0]) * ctx_len).reshape(ids.shape)
        batch = EvalBatch({h: a.cpu() for h, a in acts.items()}, ids[keep], grid[keep])
        rows = next(iter(batch.acts.values())).shape[0]
        if rows != batch.token_ids.numel():  # type: ignore[union-attr]
            raise DataError(f"eval forward: {rows} activation rows for {batch.token_ids.numel()} text tokens")  # type: ignore[union-attr]
        batches.append(batch)
    tok = loaded.tokenizer
    vocab = max(len(tok), int(chunks.max()) + 1)
    return EvalData(batches, list(hookpoints), chunks, tok, vocab, loaded, special, {"source": "lm"})


def load_eval_data(
    run: Run | str | Path,
    *,
    need_model: bool = False,
    any_model: bool = False,
    need_tokenizer: bool = True,
    max_chunks: int = 0,
    progress: bool = False,
) -> EvalData:
    """The run's evaluation data from its stored held-out set; the LM is loaded only for `need_model`.

    `need_model` loads the model when the run's LM is causal (LM-loss ablation), or whatever it is with
    `any_model` (encoders too: output recovered, `saeseeds.analysis.output_recovered`); `need_tokenizer` loads only
    the tokenizer (decoding contexts; None when it cannot be found). `max_chunks` > 0 caps the LM chunks.
    Runs trained before the held-out set was stored are rebuilt with `build_eval_data` (runs the LM).
    """
    run = Run.open(run)
    cfg = run.config
    stored = run.stored_held_out()
    if stored is None:
        run.check_data()
        return build_eval_data(cfg, max_chunks=max_chunks, progress=progress)
    info, acts, rows = stored
    hookpoints = list(acts)
    sizes = [int(n) for n in rows["batch_rows"]]
    meta = {"source": run.data.get("source", cfg.data.source), "stored": info}
    if "chunks" not in rows:
        split = {h: a.split(sizes) for h, a in acts.items()}
        batches = [EvalBatch({h: parts[i] for h, parts in split.items()}) for i in range(len(sizes))]
        return EvalData(batches, hookpoints, info=meta)
    chunks, positions, token_ids = rows["chunks"], rows["positions"], rows["token_ids"]
    if max_chunks > 0:
        chunks = chunks[:max_chunks]
    ctx_len = int(chunks.shape[1]) if chunks.ndim == 2 else 0
    if chunks.numel() == 0:
        raise DataError(f"{run.path}: the stored held-out set has no token chunks")
    keep = positions < chunks.shape[0] * ctx_len
    # the same batches as build_eval_data: one per `lm.lm_batch_size` chunks
    group = torch.div(positions[keep], ctx_len * max(cfg.lm.lm_batch_size, 1), rounding_mode="floor")
    counts = torch.bincount(group).tolist() if group.numel() else []
    parts = {h: a[keep].split(counts) for h, a in acts.items()}
    ids, pos = token_ids[keep].split(counts), positions[keep].split(counts)
    batches = [
        EvalBatch({h: parts[h][i] for h in hookpoints}, ids[i], pos[i]) for i in range(len(counts)) if counts[i]
    ]
    loaded = _load_model(cfg, run.data, any_model=any_model) if need_model else None
    tokenizer = loaded.tokenizer if loaded is not None else (_load_tokenizer(cfg) if need_tokenizer else None)
    vocab = max(len(tokenizer) if tokenizer is not None else 0, int(chunks.max()) + 1)
    special = tuple(int(t) for t in rows["special_ids"])
    return EvalData(batches, hookpoints, chunks, tokenizer, vocab, loaded, special, meta)


def _load_model(cfg: Any, data: dict[str, Any], *, any_model: bool = False) -> Any:
    """The run's LM when it is causal (only then can LM loss be measured; run.json's `data`) or `any_model`."""
    if not any_model and not data.get("is_causal", False):
        return None
    from saeseeds.data.lm_source import load_language_model

    return load_language_model(cfg.lm)


def _load_tokenizer(cfg: Any) -> Any:
    """The run's tokenizer alone (no model weights), or None when it cannot be loaded here."""
    from transformers import AutoTokenizer

    from saeseeds.data.default_model import default_model_path, is_default_model

    try:
        if is_default_model(cfg.lm.model):
            return AutoTokenizer.from_pretrained(str(default_model_path()))
        kwargs: dict[str, Any] = {"trust_remote_code": cfg.lm.trust_remote_code}
        if not Path(cfg.lm.model).exists():
            kwargs["revision"] = cfg.lm.revision
        return AutoTokenizer.from_pretrained(cfg.lm.model, **kwargs)
    except (OSError, ValueError, DataError):
        return None
