"""The layer axis and passes: a study over two hookpoints of a tiny causal LM, split into two training passes
that share one activation cache (the LM runs once, in `write_cache`), aggregated into one table."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from helpers.tiny_lm import build_tiny_causal_lm
from saeseeds.api.study import run_study
from saeseeds.config import RunConfig, SaeConfig
from saeseeds.config.study import StudyConfig
from saeseeds.data.cache import write_cache
from saeseeds.errors import ConfigError

DOCS = [f"line {i} of the test corpus : {i % 9} apples and {i % 4} pears" for i in range(100)]
HOOKS = ["transformer.h.0.mlp", "transformer.h.1.mlp"]


def test_two_layers_in_two_passes_from_one_cache(tmp_path) -> None:
    build_tiny_causal_lm(tmp_path / "model", DOCS, architecture="gpt2", n_layer=2)
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    base = RunConfig()
    base.data.source = "lm"
    base.lm.model, base.lm.dataset = str(tmp_path / "model"), str(tmp_path / "corpus.jsonl")
    base.lm.hookpoints = list(HOOKS)
    base.lm.ctx_len, base.lm.eval_chunks, base.lm.lm_batch_size = 16, 6, 4
    base.saes = [SaeConfig(architecture="topk", num_latents=32, k=4)]
    base.train.seeds, base.train.batch_size, base.train.num_tokens = [0, 1], 64, 64 * 6
    base.train.eval_tokens, base.train.lr_warmup_steps, base.train.progress = 256, 1, False
    base.train.checkpoint_every = 100
    study = StudyConfig(k=[2, 4], hookpoints=HOOKS, milestones=[0.5], configs_per_pass=1)
    with pytest.raises(ConfigError, match="saeseeds cache"):  # two passes would run the LM twice
        run_study((study, base), tmp_path / "refused", say=lambda m: None)
    write_cache(base, tmp_path / "cache", batches_per_shard=2, progress=False)
    base.data.source, base.data.path = "cache", str(tmp_path / "cache")
    result = run_study((study, base), tmp_path / "out", say=lambda m: None)
    assert [p["saes"] for p in result.record["passes"]] == [["topk-n32-k2"], ["topk-n32-k4"]]
    table = pd.read_csv(tmp_path / "out" / "table.csv")
    assert sorted(set(table["hookpoint"])) == HOOKS
    assert len(table) == 2 * 2 * 2  # hookpoints x grid points x milestones
    assert set(table["step"]) == {3, 6} and (table["n_pairs"] == 2).all()
    layers = json.loads((tmp_path / "out" / "figures" / "fig5_layer_size_architecture.json").read_text())
    assert all(line["x"] == [0, 1] for line in layers["layer_size"].values())
