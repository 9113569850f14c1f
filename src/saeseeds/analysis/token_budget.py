"""The analysis tokens: the run's stored held-out rows, then distinct rows of the training stream, up to a budget.

Firing frequency, trigger and ablation statistics need far more tokens than the small held-out split the trainer
keeps for FVU. `analysis_tokens` returns an `EvalData` whose batches are the held-out rows first, then the first
rows of the training stream (in training order) until `max_tokens` rows. Every row is used at most once: the
training rows stop at the end of one pass over the source (a run trained for several epochs, or an array source
that training cycled, gives each of its rows once), so the count reported is the count of distinct rows.

Where the training rows come from: a stored source (`npy`, `safetensors`, `cache`) or a synthetic generator is
read again; an LM run has no stored training rows, so they are added only when asked (`lm_train_rows`,
`saeseeds analyze --analysis-tokens N`): the training chunks are re-tokenised exactly as in training (the token
fingerprint must match run.json) and run through the LM, or read from `train_stream`, an in-memory replay of the
same stream. Without that request an LM run's analysis uses its held-out rows only and runs no LM forward.
Token positions index one grid: held-out chunks first, then the training chunks used.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from saeseeds.analysis.eval_data import EvalBatch, EvalData
from saeseeds.errors import DataError
from saeseeds.training.run_dir import Run


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


LM_ROWS_HINT = "an LM run's training rows need an LM forward: ask with `saeseeds analyze --analysis-tokens N`"
"""Said wherever an LM run's analysis used its held-out rows only because nobody asked for more."""


def analysis_tokens(
    run: Run,
    eval_data: EvalData,
    *,
    max_tokens: int,
    lm_train_rows: bool = False,
    train_stream: Iterable[Mapping[str, Tensor]] | None = None,
    progress: bool = False,
) -> tuple[EvalData, dict[str, Any]]:
    """Held-out rows, then distinct training rows, up to `max_tokens` (0: held-out rows only); and what was used.

    An LM run's training rows are added only with `lm_train_rows` (they cost an LM forward unless `train_stream`
    replays them); other sources' stored or generated rows are read without asking. No row is used twice."""
    n_eval = _rows(eval_data)
    if max_tokens <= 0 or max_tokens <= n_eval:
        data = _truncate(eval_data, max_tokens) if max_tokens > 0 else eval_data
        return data, _held_out_only(max_tokens, _rows(data), "held-out rows only (the budget is not above them)")
    cfg = run.config
    need = max_tokens - n_eval
    lm_run = eval_data.has_tokens and cfg.data.source == "lm"
    if lm_run and not lm_train_rows:
        return eval_data, _held_out_only(max_tokens, n_eval, f"held-out rows only, no LM forward ({LM_ROWS_HINT})")
    available: int | None
    if lm_run:
        extra, chunks_used, note, available = _lm_rows(run, eval_data, need, train_stream, progress)
    else:
        (extra, available), chunks_used, note = _source_rows(run, eval_data, need, train_stream), None, \
            "the source's training rows, each once"
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
        "max_tokens": max_tokens, "tokens": n_eval + train_rows, "distinct": True, "held_out_rows": n_eval,
        "train_rows": train_rows, "train_rows_available": available,
        "train_chunks": 0 if chunks_used is None else int(chunks_used.shape[0]), "lm_forward": note == LM_FORWARD,
        "note": f"held-out rows, then the first training rows in training order ({note}); every row at most once; "
                "training rows were seen in training, so ablation FVU on them is in-sample",
    }


def _held_out_only(max_tokens: int, rows: int, note: str) -> dict[str, Any]:
    """What `analysis_tokens` records when only the held-out rows are used."""
    return {"max_tokens": max_tokens, "tokens": rows, "distinct": True, "held_out_rows": rows, "train_rows": 0,
            "train_rows_available": None, "train_chunks": 0, "lm_forward": False, "note": note}


LM_FORWARD = "LM forward over the training chunks"


def describe(info: Mapping[str, Any]) -> str:
    """One status line: how many distinct analysis tokens, from where, and whether the LM ran."""
    line = (f"analysis tokens: {info['tokens']:,} distinct rows ({info['held_out_rows']:,} held-out + "
            f"{info['train_rows']:,} training)")
    if info.get("lm_forward"):
        return line + "; the LM was run over training chunks (asked with --analysis-tokens)"
    if LM_ROWS_HINT in str(info.get("note", "")):
        return line + f"; no LM forward ({LM_ROWS_HINT})"
    return line


def _lm_rows(run: Run, eval_data: EvalData, need: int, train_stream: Iterable[Mapping[str, Tensor]] | None,
             progress: bool) -> tuple[list[EvalBatch], Tensor, str, int]:
    """Rows of the training chunks (one pass, each chunk once), the chunks used, where from, rows available."""
    from saeseeds.progress import tqdm

    cfg = run.config
    tokenizer = eval_data.loaded.tokenizer if eval_data.loaded is not None else eval_data.tokenizer
    if tokenizer is None:
        raise DataError("more analysis tokens need the run's tokenizer, which could not be loaded; "
                        "leave out --analysis-tokens to use the held-out rows only")
    chunks = run.train_chunks(tokenizer, hint="; leave out --analysis-tokens to use the stored held-out rows only")
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
        note = LM_FORWARD
    else:
        stream = train_stream
        note = "the training stream's batches, replayed from memory"
    special_t = torch.tensor(list(special), dtype=chunks.train.dtype)
    available = int((~torch.isin(chunks.train, special_t)).sum())
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
    return out, chunks.train[:start], note, available


def _source_rows(run: Run, eval_data: EvalData, need: int,
                 train_stream: Iterable[Mapping[str, Tensor]] | None) -> tuple[list[EvalBatch], int | None]:
    """The first distinct training rows of a stored or generated source, at most `need`; and how many exist.

    The stream stops after one pass over the source's rows (`distinct_rows`), however often training cycled them."""
    from saeseeds.data.types import as_mapping

    cfg = run.config
    source = run.rebuild_source().train
    available = distinct_rows(source)
    if train_stream is None:
        train_stream = (as_mapping(b, cfg.data.hookpoint) for b in one_pass(source))
    if available is not None:
        need = min(need, available)
    out, got = [], 0
    for acts in train_stream:
        if got >= need:
            break
        acts = as_mapping(acts, cfg.data.hookpoint) if not isinstance(acts, Mapping) else acts
        rows = next(iter(acts.values())).shape[0]
        take = min(rows, need - got)
        out.append(EvalBatch({h: acts[h][:take].float().cpu() for h in eval_data.hookpoints}))
        got += take
    return out, available


def distinct_rows(train: Any) -> int | None:
    """Rows in one pass over a training source (arrays: its training rows; synthetic: its batches; cache: its
    stored tokens); None when the source does not say (then its iteration is taken as one pass)."""
    from saeseeds.data.arrays import ArraySource
    from saeseeds.data.synthetic import SyntheticStream

    if isinstance(train, ArraySource):
        return len(train.order)
    if isinstance(train, SyntheticStream):
        return len(train) * train.batch_size
    shards = getattr(train, "shards", None)
    if shards and all(s.get("tokens") is not None for s in shards):
        return sum(int(s["tokens"]) for s in shards)
    return None


def one_pass(train: Any) -> Any:
    """The source iterated once: an array source that repeats its rows forever is read without repeating."""
    from saeseeds.data.arrays import ArraySource

    if isinstance(train, ArraySource) and train.repeat:
        once = copy.copy(train)
        once.repeat = False
        return once
    return train
