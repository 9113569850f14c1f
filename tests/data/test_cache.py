"""Activation cache: round trip, hashes, resume after interruption, and cache-vs-live fingerprint identity."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.records import unstamped
from helpers.tiny_lm import build_tiny_causal_lm
from saeseeds.atomic import TEMP_SUFFIX
from saeseeds.config import RunConfig, SaeConfig
from saeseeds.data import cache as cache_mod
from saeseeds.data.cache import build_cache_source, open_cache, read_manifest, write_cache
from saeseeds.data.lm_source import LmActivationStream, build_lm_source
from saeseeds.errors import DataError

DOCS = [f"line {i} of the test corpus : {i % 9} apples and {i % 4} pears" for i in range(100)]
HOOKS = ["transformer.h.0.mlp", "transformer.h.1"]


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    build_tiny_causal_lm(root / "model", DOCS, architecture="gpt2", n_layer=2)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    return root


def _cfg(lm_dir, hookpoints=HOOKS):
    cfg = RunConfig()
    cfg.data.source = "lm"
    cfg.lm.model = str(lm_dir / "model")
    cfg.lm.dataset = str(lm_dir / "corpus.jsonl")
    cfg.lm.hookpoints = list(hookpoints)
    cfg.lm.ctx_len, cfg.lm.eval_chunks, cfg.lm.lm_batch_size = 16, 6, 4
    cfg.train.progress = False
    return cfg


def _equal_streams(a, b) -> bool:
    a, b = list(a), list(b)
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
    )


def test_round_trip_matches_the_live_source(lm_dir, tmp_path):
    cfg = _cfg(lm_dir)
    manifest = write_cache(cfg, tmp_path / "c", batches_per_shard=3, progress=False)
    live = build_lm_source(cfg)
    train, held_out, on_disk = open_cache(tmp_path / "c")
    assert _equal_streams(live.train, train) and _equal_streams(live.eval, held_out)
    assert on_disk == manifest and manifest["complete"] and manifest["schema"] == "saeseeds.cache/1"
    assert unstamped(tmp_path / "c") == []
    assert manifest["hookpoints"] == HOOKS and manifest["token_fingerprint"] == live.info["token_fingerprint"]
    assert manifest["stored_dtype"] == "float32" and manifest["model"] == cfg.lm.model
    shards = manifest["splits"]["train"]["shards"]
    assert len(shards) == -(-live.info["train_chunks"] // 12)
    assert manifest["train_tokens"] == sum(b[HOOKS[0]].shape[0] for b in live.train)
    # a hookpoint subset reads only that entry
    sub = _cfg(lm_dir, [HOOKS[1]])
    sub.data.source, sub.data.path = "cache", str(tmp_path / "c")
    pair = build_cache_source(sub)
    assert all(set(b) == {HOOKS[1]} for b in pair.eval) and pair.info["source"] == "cache"


def test_interrupted_job_resumes_without_redoing_finished_shards(lm_dir, tmp_path, monkeypatch):
    cfg = _cfg(lm_dir)
    reference = write_cache(cfg, tmp_path / "ref", batches_per_shard=2, progress=False)
    real = LmActivationStream.forward_batch
    calls = {"n": 0}

    def flaky(self, start, end):
        calls["n"] += 1
        if calls["n"] == 6:  # 1 probe + 2 shards of 2 batches, then die inside shard 3
            raise KeyboardInterrupt
        return real(self, start, end)

    monkeypatch.setattr(LmActivationStream, "forward_batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        write_cache(cfg, tmp_path / "c", batches_per_shard=2, progress=False)
    partial = read_manifest(tmp_path / "c")
    done = [s for s in partial["splits"]["train"]["shards"] if s["sha256"]]
    assert not partial["complete"] and len(done) == 2
    assert not list((tmp_path / "c").glob(f".*{TEMP_SUFFIX}"))  # no half-written file left behind
    with pytest.raises(DataError, match="incomplete"):
        open_cache(tmp_path / "c")

    stale = tmp_path / "c" / f".train-00002.safetensors.0123456789ab{TEMP_SUFFIX}"
    stale.write_bytes(b"half a shard of a killed job")
    calls["n"] = -10**9  # never fail again; count the forwards of the resumed job
    write_cache(cfg, tmp_path / "c", batches_per_shard=2, progress=False)
    total_batches = sum(s["batches"] for sp in ("train", "eval") for s in reference["splits"][sp]["shards"])
    assert calls["n"] + 10**9 == 1 + total_batches - 4  # the probe, and everything but the 4 cached batches
    resumed = read_manifest(tmp_path / "c")
    assert not stale.exists()
    for split in ("train", "eval"):
        assert [s["sha256"] for s in resumed["splits"][split]["shards"]] == [
            s["sha256"] for s in reference["splits"][split]["shards"]
        ]


def test_corrupt_shard_is_detected_and_repaired(lm_dir, tmp_path):
    cfg = _cfg(lm_dir)
    manifest = write_cache(cfg, tmp_path / "c", batches_per_shard=3, progress=False)
    shard = tmp_path / "c" / manifest["splits"]["train"]["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF
    shard.write_bytes(bytes(data))
    train, _, _ = open_cache(tmp_path / "c")
    with pytest.raises(DataError, match="sha256"):
        list(train)
    repaired = write_cache(cfg, tmp_path / "c", batches_per_shard=3, progress=False)
    assert repaired["splits"] == manifest["splits"]
    list(open_cache(tmp_path / "c")[0])


def test_resume_refuses_a_different_cache(lm_dir, tmp_path):
    write_cache(_cfg(lm_dir), tmp_path / "c", batches_per_shard=3, progress=False)
    with pytest.raises(DataError, match="hookpoints"):
        write_cache(_cfg(lm_dir, ["transformer.h.1"]), tmp_path / "c", batches_per_shard=3, progress=False)


def test_training_from_cache_and_live_gives_the_same_fingerprint(lm_dir, tmp_path):
    from saeseeds.training import train_run

    cfg = _cfg(lm_dir, ["transformer.h.0.mlp"])
    cfg.saes = [SaeConfig(architecture="topk", expansion_factor=2, k=4)]
    cfg.train.seeds = [0, 1]
    cfg.train.batch_size, cfg.train.num_tokens = 64, 64 * 6
    cfg.train.eval_tokens, cfg.train.lr_warmup_steps = 256, 1
    live = train_run(cfg, build_lm_source(cfg), tmp_path / "live")
    write_cache(cfg, tmp_path / "cache", batches_per_shard=2, progress=False)
    cfg.data.source, cfg.data.path = "cache", str(tmp_path / "cache")
    cached = train_run(cfg, cache_mod.build_cache_source(cfg), tmp_path / "cached")
    assert live.steps == cached.steps == 6
    assert live.fingerprint == cached.fingerprint
    run_live = json.loads((tmp_path / "live" / "run.json").read_text())
    run_cached = json.loads((tmp_path / "cached" / "run.json").read_text())
    assert run_live["fingerprint"] == run_cached["fingerprint"]
    for key, metrics in live.metrics.items():
        assert metrics["fvu"] == pytest.approx(cached.metrics[key]["fvu"], abs=0)
