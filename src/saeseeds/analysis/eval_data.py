"""Held-out evaluation data of a run for analysis: activations per hookpoint, aligned with their token ids.

For a language-model run it re-tokenises the run's corpus exactly as training did, runs one model forward
per batch of held-out chunks, and keeps for each activation row its token id and its global position in
the `[n_chunks, ctx_len]` chunk grid (special-token positions have no row). Other sources give activations
only (no tokens: trigger concentration and LM loss are then unavailable).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from saeseeds.errors import DataError


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
    from saeseeds.data.sources import as_mapping, build_source

    pair = build_source(cfg)
    batches = [EvalBatch(as_mapping(b, cfg.data.hookpoint)) for b in pair.eval]
    if not batches:
        raise DataError("the run's data source has no evaluation batches")
    return EvalData(batches, list(batches[0].acts), info=dict(pair.info))


def _lm_eval_data(cfg: Any, *, max_chunks: int, progress: bool) -> EvalData:
    from tqdm.auto import tqdm

    from saeseeds.data.lm_source import chunk_activations, prepare_lm

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

