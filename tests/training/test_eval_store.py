"""The run directory holds the held-out set and per-latent frequencies; analyses read them without the LM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from saeseeds.analysis.eval_data import load_eval_data
from saeseeds.config import DataConfig, RunConfig, SaeConfig, TrainConfig
from saeseeds.data.types import SourcePair
from saeseeds.sae import load_sae
from saeseeds.training import list_checkpoints, load_latent_frequencies, read_manifest, train_run
from saeseeds.training.eval_store import rebuild_held_out
from saeseeds.training.evaluate import evaluate_sae
from saeseeds.training.run_dir import Run

try:
    from helpers.tiny_lm import build_tiny_causal_lm
except ImportError:  # before the helper moved out of the package
    from saeseeds.data.tiny_lm import build_tiny_causal_lm  # type: ignore[no-redef]


def small(store: int = 262_144) -> RunConfig:
    train = TrainConfig(seeds=[0, 1], batch_size=64, num_tokens=64 * 4, progress=False, store_eval_tokens=store)
    return RunConfig(data=DataConfig(source="npy"), train=train, saes=[SaeConfig(architecture="topk", num_latents=16, k=3)])


def test_frequencies_and_rows_are_stored(tmp_path: Path) -> None:
    x = torch.randn(64 * 4 + 150, 8, generator=torch.Generator().manual_seed(2)) * 5
    evals = [x[-150:-50], x[-50:]]
    train_run(small(), SourcePair(list(x[:-150].split(64)), evals, {"source": "test"}), tmp_path / "run")
    manifest = read_manifest(tmp_path / "run")
    assert manifest["eval"]["stored"]["rows"] == 150 and manifest["eval"]["stored"]["complete"]
    assert manifest["eval"]["latents"]["path"] == "eval/latents.safetensors"
    assert manifest["eval"]["fingerprint"] == manifest["fingerprint"]["eval"]
    batches = Run.open(tmp_path / "run").held_out_batches()
    assert [b["activations"].shape[0] for b in batches] == [100, 50]
    assert torch.equal(torch.cat([b["activations"] for b in batches]), x[-150:])  # raw, unscaled
    for ref in list_checkpoints(tmp_path / "run"):
        stored = load_latent_frequencies(tmp_path / "run", ref.hookpoint, ref.sae_name, ref.seed)
        assert stored is not None and stored.dtype == np.float64
        _, expected = evaluate_sae(load_sae(ref.path), evals)
        np.testing.assert_allclose(stored, expected.double().numpy(), atol=1e-12)
    assert load_latent_frequencies(tmp_path / "run", "activations", "topk-16", 7) is None
    data = load_eval_data(tmp_path / "run")
    assert not data.has_tokens and torch.equal(torch.cat(data.acts("activations")), x[-150:])


def test_cap_and_disable(tmp_path: Path) -> None:
    x = torch.randn(64 * 4 + 150, 8)
    source = SourcePair(list(x[:-150].split(64)), [x[-150:-50], x[-50:]], {})
    train_run(small(store=120), source, tmp_path / "capped")
    batches = Run.open(tmp_path / "capped").held_out_batches()
    assert [b["activations"].shape[0] for b in batches] == [100, 20]
    assert not read_manifest(tmp_path / "capped")["eval"]["stored"]["complete"]
    train_run(small(store=0), source, tmp_path / "none")
    assert read_manifest(tmp_path / "none")["eval"]["stored"] is None
    assert not (tmp_path / "none" / "eval" / "acts").exists()


DOCS = [f"sentence {i} : the cat sat on the mat while {i % 5} birds sang" for i in range(60)]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunConfig]:
    from saeseeds.data.sources import build_source

    root = tmp_path_factory.mktemp("lm")
    build_tiny_causal_lm(root / "model", DOCS, architecture="gpt_neox")
    (root / "corpus.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    cfg = RunConfig()
    cfg.data.source = "lm"
    cfg.lm.model, cfg.lm.dataset = str(root / "model"), str(root / "corpus.jsonl")
    cfg.lm.hookpoints = ["gpt_neox.layers.0.mlp", "gpt_neox.layers.1.mlp"]
    cfg.lm.ctx_len, cfg.lm.eval_chunks, cfg.lm.lm_batch_size = 16, 5, 2
    cfg.train = TrainConfig(seeds=[0], batch_size=32, num_tokens=32 * 3, progress=False, device="cpu")
    cfg.lm.device = "cpu"
    cfg.saes = [SaeConfig(architecture="topk", num_latents=16, k=2)]
    train_run(cfg, build_source(cfg), root / "run")
    return root / "run", cfg


def test_lm_rows_equal_build_eval_data(lm_run: tuple[Path, RunConfig], monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir, cfg = lm_run
    rebuilt = rebuild_held_out(cfg)
    import saeseeds.data.lm_source as lm_source

    def no_model(*args, **kwargs):
        raise AssertionError("load_eval_data ran the language model")

    monkeypatch.setattr(lm_source, "load_language_model", no_model)
    stored = load_eval_data(run_dir)
    assert stored.hookpoints == rebuilt.hookpoints and stored.special_ids == rebuilt.special_ids
    assert torch.equal(stored.chunks, rebuilt.chunks) and len(stored.batches) == len(rebuilt.batches) == 3
    for a, b in zip(stored.batches, rebuilt.batches):
        assert torch.equal(a.token_ids, b.token_ids) and torch.equal(a.positions, b.positions)
        for h in rebuilt.hookpoints:
            assert torch.equal(a.acts[h], b.acts[h]), h
    assert stored.tokenizer is not None and stored.vocab_size == rebuilt.vocab_size and stored.loaded is None
    capped = load_eval_data(run_dir, max_chunks=2)
    assert capped.chunks.shape[0] == 2 and len(capped.batches) == 1


def test_lm_model_loaded_only_on_request(lm_run: tuple[Path, RunConfig]) -> None:
    run_dir, _ = lm_run
    data = load_eval_data(run_dir, need_model=True, need_tokenizer=False)
    assert data.loaded is not None and data.loaded.is_causal and data.tokenizer is data.loaded.tokenizer


def test_older_runs_fall_back_to_rebuilding(lm_run: tuple[Path, RunConfig], tmp_path: Path) -> None:
    import shutil

    from saeseeds.atomic import atomic_write_json

    run_dir, cfg = lm_run
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    manifest = read_manifest(old)
    manifest["eval"] = {}
    atomic_write_json(old / "run.json", manifest)
    shutil.rmtree(old / "eval")
    data = load_eval_data(old)
    assert data.loaded is not None and torch.equal(data.chunks, load_eval_data(run_dir).chunks)
