"""The analysis tokens: the run's stored held-out rows, then rows of the training stream, up to a token budget.

Firing frequency, trigger and ablation statistics need far more tokens than the small held-out split the trainer
keeps for FVU. `analysis_tokens` returns an `EvalData` whose batches are the held-out rows first, then the first
rows of the training stream (in training order) until `max_tokens` rows: for an LM run the training chunks are
re-tokenised exactly as in training (the token fingerprint must match run.json) and run through the LM (or read
from `train_stream`, an in-memory replay of the same stream); for other sources the source's training batches.
Token positions index one grid: held-out chunks first, then the training chunks used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from saeseeds.analysis.eval_data import EvalBatch, EvalData
from saeseeds.errors import DataError


def _rows(data: EvalData) -> int:
    return sum(next(iter(b.acts.values())).shape[0] for b in data.batches)


def _truncate(data: EvalData, max_tokens: int) -> EvalData:
    batches, left = [], max_tokens
    for b in data.batches:
        rows = next(iter(b.acts.values())).shape[0]
        if left <= 0:
            break
        if rows > left:
            b = EvalBatch({h: a[:left] for h, a in b.acts.items()},
                          None if b.token_ids is None else b.token_ids[:left],
                          None if b.positions is None else b.positions[:left])
            rows = left
        batches.append(b)
        left -= rows
    return EvalData(batches, data.hookpoints, data.chunks, data.tokenizer, data.vocab_size, data.loaded,
                    data.special_ids, dict(data.info))


def analysis_tokens(
    run_dir: str | Path,
    eval_data: EvalData,
    *,
    max_tokens: int,
    train_stream: Iterable[Mapping[str, Tensor]] | None = None,
    progress: bool = False,
) -> tuple[EvalData, dict[str, Any]]:
    """Held-out rows, then training rows, up to `max_tokens` (0: held-out rows only); and what was used."""
    from saeseeds.training.run_dir import load_run_config, read_manifest

    n_eval = _rows(eval_data)
    if max_tokens <= 0 or max_tokens <= n_eval:
        data = _truncate(eval_data, max_tokens) if max_tokens > 0 else eval_data
        used = _rows(data)
        return data, {"max_tokens": max_tokens, "tokens": used, "held_out_rows": used, "train_rows": 0,
                      "train_chunks": 0, "note": "held-out rows only (the budget is not above them)"}
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    cfg = load_run_config(run_dir)
    need = max_tokens - n_eval
    if eval_data.has_tokens and cfg.data.source == "lm":
        extra, chunks_used, note = _lm_rows(cfg, manifest, eval_data, need, train_stream, progress)
    else:
        extra, chunks_used, note = _source_rows(cfg, eval_data, need, train_stream), None, "the source's training batches"
    batches = list(eval_data.batches) + extra
    chunks = eval_data.chunks
    if chunks_used is not None and chunks is not None:
        chunks = torch.cat([chunks, chunks_used])
    vocab = eval_data.vocab_size
    if chunks is not None and chunks.numel():
        vocab = max(vocab, int(chunks.max()) + 1)
    data = EvalData(batches, eval_data.hookpoints, chunks, eval_data.tokenizer, vocab, eval_data.loaded,
                    eval_data.special_ids, dict(eval_data.info))
    train_rows = sum(next(iter(b.acts.values())).shape[0] for b in extra)
    return data, {
        "max_tokens": max_tokens, "tokens": n_eval + train_rows, "held_out_rows": n_eval, "train_rows": train_rows,
        "train_chunks": 0 if chunks_used is None else int(chunks_used.shape[0]),
        "note": f"held-out rows, then the first training rows in training order ({note}); training rows were seen "
                "in training, so ablation FVU on them is in-sample",
    }


def _lm_rows(cfg: Any, manifest: dict[str, Any], eval_data: EvalData, need: int,
             train_stream: Iterable[Mapping[str, Tensor]] | None, progress: bool) -> tuple[list[EvalBatch], Tensor, str]:
    from saeseeds.data.corpus import build_token_chunks
    from saeseeds.progress import tqdm

    tokenizer = eval_data.loaded.tokenizer if eval_data.loaded is not None else eval_data.tokenizer
    if tokenizer is None:
        raise DataError("more analysis tokens need the run's tokenizer, which could not be loaded; "
                        "set --max-tokens 0 to use the held-out rows only")
    chunks = build_token_chunks(cfg.lm, tokenizer, shuffle=cfg.data.shuffle, shuffle_seed=cfg.data.shuffle_seed)
    want = manifest.get("data", {}).get("token_fingerprint")
    if want and chunks.fingerprint != want:
        raise DataError("the run's corpus no longer tokenises to the chunks it was trained on (token fingerprint "
                        "differs); set --max-tokens 0 to use the stored held-out rows only")
    special = tuple(chunks.special_ids) if cfg.lm.exclude_special_tokens else ()
    ctx_len = chunks.train.shape[1]
    step = max(cfg.lm.lm_batch_size, 1)
    offset = (eval_data.chunks.shape[0] if eval_data.chunks is not None else 0) * ctx_len
    limit = chunks.train.shape[0]
    if train_stream is None:
        from saeseeds.data.lm_source import LmActivationStream, load_language_model

        model = eval_data.loaded.model if eval_data.loaded is not None else load_language_model(cfg.lm).model
        stream: Iterable[Mapping[str, Tensor]] = LmActivationStream(
            model, chunks.train,  # lazy: one forward per batch, stopped at the budget
            eval_data.hookpoints, batch_chunks=step, special_ids=special,
            hook_input=cfg.lm.hook_input, progress=progress, desc="LM forward (analysis tokens)",
        )
        note = "LM forward over the training chunks"
    else:
        stream = train_stream
        note = "the training stream's batches, replayed from memory"
    special_t = torch.tensor(list(special), dtype=chunks.train.dtype)
    out: list[EvalBatch] = []
    got, start = 0, 0
    for acts in tqdm(stream, desc="analysis tokens", disable=not progress or train_stream is None, leave=False):
        if got >= need or start >= limit:
            break
        ids = chunks.train[start : min(start + step, limit)]
        keep = ~torch.isin(ids, special_t)
        grid = torch.arange(start * ctx_len, (start + ids.shape[0]) * ctx_len).reshape(ids.shape) + offset
        batch = EvalBatch({h: acts[h].float().cpu() for h in eval_data.hookpoints}, ids[keep], grid[keep])
        rows = batch.acts[eval_data.hookpoints[0]].shape[0]
        if rows != int(keep.sum()):
            raise DataError(f"training stream: {rows} activation rows for {int(keep.sum())} text tokens of chunks "
                            f"{start}..{start + ids.shape[0]}; the stream is not this run's")
        take = min(rows, need - got)
        if take < rows:
            batch = EvalBatch({h: a[:take] for h, a in batch.acts.items()}, batch.token_ids[:take],  # type: ignore[index]
                              batch.positions[:take])  # type: ignore[index]
        out.append(batch)
        got += take
        start += ids.shape[0]
    return out, chunks.train[:start], note


def _source_rows(cfg: Any, eval_data: EvalData, need: int,
                 train_stream: Iterable[Mapping[str, Tensor]] | None) -> list[EvalBatch]:
    from saeseeds.data.types import as_mapping

    if train_stream is None:
        from saeseeds.data.sources import build_source

        train_stream = (as_mapping(b, cfg.data.hookpoint) for b in build_source(cfg).train)
    out, got = [], 0
    for acts in train_stream:
        if got >= need:
            break
        acts = as_mapping(acts, cfg.data.hookpoint) if not isinstance(acts, Mapping) else acts
        rows = next(iter(acts.values())).shape[0]
        take = min(rows, need - got)
        out.append(EvalBatch({h: acts[h][:take].float().cpu() for h in eval_data.hookpoints}))
        got += take
    return out
