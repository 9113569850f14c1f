"""Held-out evaluation data of a run for analysis: activations per hookpoint, aligned with their token ids.

The rows come from the run (`Run.held_out`: the stored held-out set, read without running the LM, or, for a run
that stored none, built again by `training.eval_store.rebuild_held_out`); `with_model` adds what only some
analyses need: the tokenizer (decoding contexts) and, on request, the model (the LM-loss ablation). Other
sources give activations only (no tokens: trigger concentration and LM loss are then unavailable).
`EvalBatch` and `EvalData` live in `saeseeds.data.types`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from saeseeds.data.types import EvalBatch, EvalData
from saeseeds.errors import DataError
from saeseeds.training.run_dir import Run

__all__ = ["EvalBatch", "EvalData", "load_eval_data", "with_model"]


def load_eval_data(
    run: Run | str | Path,
    *,
    need_model: bool = False,
    any_model: bool = False,
    need_tokenizer: bool = True,
    max_chunks: int = 0,
    progress: bool = False,
) -> EvalData:
    """The run's evaluation data from its stored held-out set (`Run.held_out`), with its tokenizer and, for
    `need_model`, its model (`with_model`). `max_chunks` > 0 caps the LM chunks. Runs trained without a stored
    held-out set are rebuilt (runs the LM)."""
    run = Run.open(run)
    data = run.held_out(max_chunks=max_chunks, progress=progress)
    return with_model(data, run, need_model=need_model, any_model=any_model, need_tokenizer=need_tokenizer)


def with_model(data: EvalData, run: Run, *, need_model: bool = False, any_model: bool = False,
               need_tokenizer: bool = True) -> EvalData:
    """`data` with the run's tokenizer and, for `need_model`, its model: loaded when the run's LM is causal
    (LM-loss ablation), or whatever it is with `any_model` (encoders too: output recovered,
    `saeseeds.analysis.output_recovered`); `need_tokenizer` loads only the tokenizer (None when it cannot be
    found). Data without token ids, or already holding its model (rebuilt through the LM), is returned as is."""
    if data.chunks is None or data.loaded is not None:
        return data
    cfg = run.config
    if not (need_model and (any_model or run.data.get("is_causal", False))):
        tokenizer = _load_tokenizer(cfg) if need_tokenizer else None
        loaded = None
    else:
        from saeseeds.data.lm_source import load_language_model

        loaded = load_language_model(cfg.lm)
        tokenizer = loaded.tokenizer
    vocab = max(len(tokenizer) if tokenizer is not None else 0, data.vocab_size)
    return dataclasses.replace(data, tokenizer=tokenizer, vocab_size=vocab, loaded=loaded)


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
