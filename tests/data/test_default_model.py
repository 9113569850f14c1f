"""The embedded default: the packaged all-MiniLM-L6-v2 and the packaged English corpus, loaded offline."""

from __future__ import annotations

import os

import torch

from saeseeds.config import RunConfig
from saeseeds.data.default_model import (
    DEFAULT_HOOKPOINT,
    default_corpus_documents,
    default_model_path,
)
from saeseeds.data.lm_source import build_lm_source


def test_the_default_model_and_corpus_are_installed_files():
    path = default_model_path()
    assert (path / "model.safetensors").stat().st_size > 80_000_000  # real pretrained weights
    docs = default_corpus_documents()
    assert len(docs) > 2000
    text = " ".join(docs[:50]).lower()
    assert sum(text.count(w) for w in (" the ", " you ", " is ")) > 20  # English prose
    assert docs == default_corpus_documents()  # fixed order


def test_default_source_runs_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = RunConfig()
    cfg.lm.max_chunks, cfg.lm.eval_chunks, cfg.lm.ctx_len, cfg.lm.lm_batch_size = 4, 2, 64, 4
    cfg.train.progress = False
    pair = build_lm_source(cfg)
    assert pair.info["hookpoints"] == [DEFAULT_HOOKPOINT] and not pair.info["is_causal"]
    assert pair.info["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    (batch,) = list(pair.train)
    acts = batch[DEFAULT_HOOKPOINT]
    # 4 chunks of 64 tokens, minus the [CLS] at each start and the [SEP]s between documents
    assert acts.shape[1] == 384 and 4 * 50 < acts.shape[0] < 4 * 64
    assert torch.isfinite(acts).all() and acts.std() > 0.01
    assert os.environ["HF_HUB_OFFLINE"] == "1"
