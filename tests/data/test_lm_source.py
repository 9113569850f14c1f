"""The live LM activation source: model loading from a local directory, flattening, special-token exclusion."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.tiny_lm import build_tiny_causal_lm
from saeseeds.config import RunConfig
from saeseeds.data.lm_source import build_lm_source, load_language_model, resolve_dtype
from saeseeds.data.sources import build_source
from saeseeds.errors import DataError

DOCS = [f"sentence {i} : the cat sat on the mat while {i % 5} birds sang" for i in range(90)]


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    build_tiny_causal_lm(root / "model", DOCS, architecture="gpt_neox")
    (root / "corpus.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    return root


def _cfg(lm_dir, hookpoints):
    cfg = RunConfig()
    cfg.data.source = "lm"
    cfg.lm.model = str(lm_dir / "model")
    cfg.lm.dataset = str(lm_dir / "corpus.jsonl")
    cfg.lm.hookpoints = hookpoints
    cfg.lm.ctx_len, cfg.lm.eval_chunks, cfg.lm.lm_batch_size = 16, 4, 5
    cfg.train.progress = False
    return cfg


def test_one_hookpoint_yields_one_entry_mappings_of_text_tokens(lm_dir):
    cfg = _cfg(lm_dir, ["gpt_neox.layers.1.mlp"])
    pair = build_source(cfg)  # through the lead's dispatcher
    loaded = load_language_model(cfg.lm)
    batches = list(pair.train)
    assert pair.info["hookpoints"] == ["gpt_neox.layers.1.mlp"] and pair.info["is_causal"]
    assert pair.info["d_in"] == {"gpt_neox.layers.1.mlp": 32}
    assert all(set(b) == {"gpt_neox.layers.1.mlp"} for b in batches)
    assert len(batches) == -(-pair.info["train_chunks"] // 5)
    # the first forward batch: activations at exactly the non-special positions, in row-major order
    from saeseeds.data.corpus import build_token_chunks

    chunks = build_token_chunks(cfg.lm, loaded.tokenizer).train[:5]
    keep = ~torch.isin(chunks, torch.tensor(pair.info["special_token_ids"]))
    assert keep.sum() < chunks.numel()  # BOS and separators were there to drop
    seen = {}
    handle = loaded.model.gpt_neox.layers[1].mlp.register_forward_hook(lambda m, i, o: seen.setdefault("o", o))
    with torch.no_grad():
        loaded.model(input_ids=chunks)
    handle.remove()
    first = batches[0]["gpt_neox.layers.1.mlp"]
    assert first.dtype == torch.float32
    torch.testing.assert_close(first, seen["o"][keep])


def test_several_hookpoints_share_one_forward_and_rows(lm_dir):
    pair = build_lm_source(_cfg(lm_dir, ["gpt_neox.layers.*.mlp"]))
    assert pair.info["hookpoints"] == [f"gpt_neox.layers.{i}.mlp" for i in range(3)]
    for batch in pair.eval:
        rows = {t.shape for t in batch.values()}
        assert len(rows) == 1
    assert pair.info["output"] == "mapping"


def test_stream_is_reiterable_and_identical(lm_dir):
    pair = build_lm_source(_cfg(lm_dir, ["gpt_neox.layers.0"]))
    first = [b["gpt_neox.layers.0"] for b in pair.train]
    second = [b["gpt_neox.layers.0"] for b in pair.train]
    assert all(torch.equal(a, b) for a, b in zip(first, second)) and len(first) == len(second)


def test_hook_input_takes_the_module_input(lm_dir):
    cfg = _cfg(lm_dir, ["gpt_neox.layers.1.mlp"])
    cfg.lm.hook_input = True
    inp = build_lm_source(cfg).eval[0]["gpt_neox.layers.1.mlp"]
    out = build_lm_source(_cfg(lm_dir, ["gpt_neox.layers.1.post_attention_layernorm"])).eval[0]
    torch.testing.assert_close(inp, out["gpt_neox.layers.1.post_attention_layernorm"])


def test_unknown_hookpoint_and_model_errors(lm_dir, tmp_path):
    with pytest.raises(DataError, match="gpt_neox.layers.1.mlp"):
        build_lm_source(_cfg(lm_dir, ["gpt_neox.layer.1.mlp"]))
    cfg = _cfg(lm_dir, ["x"])
    cfg.lm.model = str(tmp_path / "nothing")
    with pytest.raises(DataError, match="cannot load"):
        build_lm_source(cfg)


def test_auto_dtype_is_bf16_on_cuda_only():
    assert resolve_dtype("auto", torch.device("cuda")) is torch.bfloat16
    assert resolve_dtype("auto", torch.device("cpu")) is torch.float32
    with pytest.raises(DataError, match="model_dtype"):
        resolve_dtype("int8", torch.device("cpu"))
