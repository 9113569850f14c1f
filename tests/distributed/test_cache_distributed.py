"""Training from an activation cache under torchrun: each rank reads its share of the shards, the checkpoints
are bit-identical to one process's."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from tests.distributed.conftest import torchrun_script
from tests.distributed.test_train_distributed import DOCS, weights

JOB = textwrap.dedent(
    """
    import sys
    import saeseeds as ss
    from saeseeds.config import RunConfig, SaeConfig, TrainConfig

    cache, out = sys.argv[1], sys.argv[2]
    cfg = RunConfig()
    cfg.data.source, cfg.data.path = "cache", cache
    cfg.train = TrainConfig(seeds=[0, 1], batch_size=40, num_tokens=40 * 6, progress=False, device="cpu",
                            lr_warmup_steps=2)
    cfg.saes = [SaeConfig(architecture="topk", num_latents=24, k=3)]
    ss.train(cfg, out)   # joins the torchrun group itself
    """
)


@pytest.mark.slow
def test_cache_shards_split_over_ranks_give_identical_checkpoints(tmp_path) -> None:
    from helpers.tiny_lm import build_tiny_causal_lm
    from saeseeds.config import RunConfig
    from saeseeds.data.cache import write_cache

    build_tiny_causal_lm(tmp_path / "model", DOCS, architecture="gpt_neox")
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    cfg = RunConfig()
    cfg.data.source = "lm"
    cfg.lm.model, cfg.lm.dataset = str(tmp_path / "model"), str(tmp_path / "corpus.jsonl")
    cfg.lm.hookpoints = ["gpt_neox.layers.0.mlp", "gpt_neox.layers.1.mlp"]
    cfg.lm.ctx_len, cfg.lm.eval_chunks, cfg.lm.lm_batch_size, cfg.lm.device = 16, 4, 3, "cpu"
    cfg.train.progress = False
    manifest = write_cache(cfg, tmp_path / "cache", batches_per_shard=2, progress=False)
    assert len(manifest["splits"]["train"]["shards"]) >= 3  # enough shards for both ranks to own some
    script = tmp_path / "job.py"
    script.write_text(JOB)
    single = subprocess.run([sys.executable, str(script), str(tmp_path / "cache"), str(tmp_path / "one")],
                            capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr[-2000:]
    spread = torchrun_script(script, [str(tmp_path / "cache"), str(tmp_path / "two")], 2)
    assert spread.returncode == 0, spread.stderr[-2000:]
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert len(one) == 4 and one.keys() == two.keys()
    for key in one:
        for name in one[key]:
            assert one[key][name].equal(two[key][name]), f"{key}:{name}"
    run_one = json.loads((tmp_path / "one" / "run.json").read_text())
    run_two = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run_one["fingerprint"] == run_two["fingerprint"] and run_two["world_size"] == 2
