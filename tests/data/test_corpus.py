"""Corpus reading (text, JSONL, HF datasets), packing with separators, and the deterministic shuffled split."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.tiny_lm import build_tiny_tokenizer
from saeseeds.config import LmConfig
from saeseeds.data.corpus import (
    build_token_chunks,
    load_corpus,
    pack_documents,
    special_tokens,
    split_chunks,
)
from saeseeds.errors import DataError

DOCS = [f"document number {i} says the quick brown fox jumps over the lazy dog {i % 7} times" for i in range(60)]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer(DOCS)


def test_pack_inserts_prefix_and_separators_and_drops_the_tail():
    chunks = pack_documents([[1, 2, 3], [4, 5], [6, 7, 8, 9]], 4, prefix=100, separator=99)
    # stream: 1 2 3 99 4 5 99 6 7 8 9 99 -> bodies of 3 tokens, each led by 100
    assert chunks.tolist() == [[100, 1, 2, 3], [100, 99, 4, 5], [100, 99, 6, 7], [100, 8, 9, 99]]
    no_prefix = pack_documents([[1, 2, 3], [4, 5]], 3, prefix=None, separator=0)
    assert no_prefix.tolist() == [[1, 2, 3], [0, 4, 5]]  # the trailing separator alone is dropped


def test_pack_rejects_a_context_without_room():
    with pytest.raises(DataError, match="ctx_len"):
        pack_documents([[1, 2]], 1, prefix=5, separator=None)


def test_split_is_deterministic_disjoint_and_complete():
    chunks = torch.arange(50).view(25, 2)
    train_a, eval_a = split_chunks(chunks, eval_chunks=5, max_chunks=0, shuffle=True, seed=3)
    train_b, eval_b = split_chunks(chunks, eval_chunks=5, max_chunks=0, shuffle=True, seed=3)
    train_c, _ = split_chunks(chunks, eval_chunks=5, max_chunks=0, shuffle=True, seed=4)
    assert torch.equal(train_a, train_b) and torch.equal(eval_a, eval_b)
    assert not torch.equal(train_a, train_c)
    rows = sorted(map(tuple, torch.cat([train_a, eval_a]).tolist()))
    assert rows == sorted(map(tuple, chunks.tolist()))
    capped, held = split_chunks(chunks, eval_chunks=5, max_chunks=7, shuffle=True, seed=3)
    assert torch.equal(capped, train_a[:7]) and torch.equal(held, eval_a)
    unshuffled, _ = split_chunks(chunks, eval_chunks=5, max_chunks=0, shuffle=False, seed=3)
    assert torch.equal(unshuffled, chunks[:20])


def test_split_needs_more_chunks_than_held_out():
    with pytest.raises(DataError, match="eval_chunks"):
        split_chunks(torch.zeros(4, 3, dtype=torch.int64), eval_chunks=4, max_chunks=0, shuffle=True, seed=0)


def test_special_tokens_of_a_gpt2_style_tokenizer(tokenizer):
    special = special_tokens(tokenizer)
    eos = tokenizer.eos_token_id
    assert special.prefix == eos and special.separator == eos
    assert eos in special.all_ids and tokenizer.pad_token_id in special.all_ids
    assert tokenizer.unk_token_id not in special.all_ids  # unknown words are still text


def test_text_and_jsonl_files_and_directories(tmp_path, tokenizer):
    (tmp_path / "b.txt").write_text("second file text")
    (tmp_path / "a.jsonl").write_text(json.dumps({"body": "first doc"}) + "\n\n" + json.dumps({"body": "second doc"}) + "\n")
    corpus = load_corpus(LmConfig(dataset=str(tmp_path), text_column="body"))
    assert corpus.documents == ["first doc", "second doc", "second file text"]  # sorted file order
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x"}) + "\n")
    with pytest.raises(DataError, match="bad.jsonl:1"):
        load_corpus(LmConfig(dataset=str(bad), text_column="body"))
    with pytest.raises(DataError, match="not found"):
        load_corpus(LmConfig(dataset=f"{tmp_path / 'b.txt'},{tmp_path / 'missing.txt'}"))


def test_hf_dataset_saved_to_disk(tmp_path, tokenizer):
    import datasets

    datasets.Dataset.from_dict({"content": DOCS[:10]}).save_to_disk(str(tmp_path / "ds"))
    corpus = load_corpus(LmConfig(dataset=str(tmp_path / "ds"), text_column="content", max_documents=4))
    assert corpus.documents == DOCS[:4]
    with pytest.raises(DataError, match="no column 'text'"):
        load_corpus(LmConfig(dataset=str(tmp_path / "ds")))


def test_build_token_chunks_is_deterministic(tmp_path, tokenizer):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    cfg = LmConfig(dataset=str(path), ctx_len=16, eval_chunks=4)
    a = build_token_chunks(cfg, tokenizer, shuffle_seed=1)
    b = build_token_chunks(cfg, tokenizer, shuffle_seed=1)
    c = build_token_chunks(cfg, tokenizer, shuffle_seed=2)
    assert torch.equal(a.train, b.train) and a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint
    assert a.train.shape[1] == 16 and a.eval.shape == (4, 16)
    assert (a.train[:, 0] == tokenizer.bos_token_id).all()
    # every document contributes its tokens and one separator: the packed stream is that long (minus the tail)
    n_tokens = sum(len(tokenizer(d, add_special_tokens=False)["input_ids"]) + 1 for d in DOCS)
    assert a.train.shape[0] + a.eval.shape[0] == n_tokens // 15
