"""End to end: `saeseeds pool` on tiny real runs (a synthetic one with ground truth, 4 seeds; an LM one through its
compare output) writes pool.json with its verdicts, loadable checkpoints with provenance, and figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import saeseeds as ss
from helpers.synthetic_config import tiny_synthetic_toml
from saeseeds.cli import main
from saeseeds.records import resolve_path
from saeseeds.sae.checkpoint import read_checkpoint_cfg

TINY = tiny_synthetic_toml(seeds=[0, 1, 2, 3], num_tokens=5120, eval_tokens=1024, num_latents=48)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny SAEs: conftest.one_thread


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from saeseeds.config import load_config
    from saeseeds.data.synthetic import SyntheticModel, build_synthetic_source, save_ground_truth
    from saeseeds.training import train_run

    root = tmp_path_factory.mktemp("pool")
    (root / "tiny.toml").write_text(TINY)
    cfg = load_config(root / "tiny.toml", [])
    train_run(cfg, build_synthetic_source(cfg), root / "run")
    save_ground_truth(SyntheticModel(cfg.synthetic).truth, root / "run")
    return root / "run"


def test_pool_cli_on_a_synthetic_run(synthetic_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "pool"
    argv = ["pool", str(synthetic_run), "--out", str(out), "--fit-tokens", "1280", "--splits", "2",
            "--baseline-seeds", "2", "--select-tokens", "2048"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "pooling raises stability" in printed
    record = json.loads((out / "pool.json").read_text())
    assert record["schema"] == "saeseeds.pooling/1" and resolve_path(record["run_dir"], out) == synthetic_run
    summary = record["summary"]
    assert summary["pooled_latents"] == 48 and summary["seeds"] == ["seed0", "seed1", "seed2", "seed3"]
    for verdict in summary["verdicts"].values():
        assert verdict["holds"] in (False, None) and 0.25 <= verdict["p_value"] <= 1  # 2 splits: p ≥ 1/4
    assert len(record["splits"]) == 2
    for row in record["splits"]:
        assert not set(row["a"]) & set(row["b"]) and len(row["sf_single_pairs"]) == 8
        assert 0 <= row["sf_pooled"] <= 1 and 0 <= row["reappears_pooled"] <= 1
    assert record["compute"]["baseline"] == 2 * 5120 + 1280 == record["baseline"]["tokens"]
    assert record["compute"]["split_pooled"] == record["compute"]["baseline"]
    assert record["fit"]["tokens"] == 1280 and record["fit"]["steps"] == 5
    # the pooled SAE fits the data about as well as a seed, and better than before its fit
    ev = summary["explained_variance"]
    assert ev["pooled_all"] > ev["single_seeds"]["mean"] - 0.1
    assert ev["pooled_all"] >= record["heldout"]["pooled_all_before_fit"]["explained_variance"] - 0.02
    recovery = record["recovery"]
    assert recovery["num_features"] == 40 and set(recovery["features"]) == {"single", "identifiable", "ambiguous",
                                                                            "control"}
    assert 0 <= recovery["pooled_all"]["recovered"] <= 40 and len(recovery["single_seeds"]) == 4
    pooled = ss.load(out / "pooled")
    assert pooled.num_latents == 48 and pooled.cfg.k == 4
    cfg = read_checkpoint_cfg(out / "pooled")  # provenance in saeseeds.json, beside sparsify's cfg.json
    assert cfg["pooling"]["seeds"] == summary["seeds"] and cfg["pooling"]["options"]["edges"] == "sharing"
    assert resolve_path(cfg["pooling"]["run_dir"], out / "pooled") == synthetic_run  # relative to cfg.json
    assert cfg["schema"] == "saeseeds.checkpoint/2"
    x = torch.randn(32, 16)
    assert torch.isfinite(pooled(x).sae_out).all()
    for k in range(2):
        for half in ("a", "b"):
            assert ss.load(out / "splits" / str(k) / half).num_latents == 48
    assert {p.name for p in (out / "baseline").iterdir()} == {"seed10000", "seed10001"}
    for fig in record["figures"]:
        assert (out / fig).read_bytes()[:4] == b"\x89PNG" and (out / fig).with_suffix(".json").is_file()
    # an earlier pool output is replaced only with --overwrite
    assert main(argv + ["--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_pool_api_encoder_only_fit_keeps_the_pooled_decoder(synthetic_run: Path) -> None:
    from saeseeds.pooling.options import PoolOptions

    common = dict(edges="decoder", size=32, splits=0, baseline_seeds=0, select_tokens=1024)
    init = ss.pool(synthetic_run, options=PoolOptions(fit_tokens=0, **common))
    fitted = ss.pool(synthetic_run, options=PoolOptions(fit="encoder", fit_tokens=1024, **common))
    assert init.sae.num_latents == fitted.sae.num_latents == 32 and fitted.out is None
    assert (init.chosen == fitted.chosen).all()
    support = init.clusters.support[init.chosen]
    assert support.min() >= init.clusters.support[~np.isin(np.arange(init.clusters.num_clusters), init.chosen)].max()
    assert torch.allclose(init.sae.W_dec, fitted.sae.W_dec, atol=1e-6)
    assert torch.allclose(init.sae.b_dec, fitted.sae.b_dec, atol=1e-6)
    assert not torch.allclose(init.sae.encoder.weight, fitted.sae.encoder.weight)
    assert fitted.record["fit"]["steps"] == 4 and init.record["fit"]["steps"] == 0
    assert fitted.record["summary"]["verdicts"]["vs_single_seeds"]["holds"] is None  # no splits asked for


def test_pool_cli_on_a_compare_output_of_an_lm_run(tmp_path: Path) -> None:
    """A compare output names its run through the checkpoint paths; the LM stream is rebuilt from the run."""
    from helpers.tiny_lm import build_tiny_causal_lm
    from saeseeds.config import DataConfig, LmConfig, RunConfig, SaeConfig, TrainConfig
    from saeseeds.data.sources import build_source
    from saeseeds.training import train_run

    g = torch.Generator().manual_seed(0)
    words = [f"w{i}" for i in range(40)]
    docs = [" ".join(words[i] for i in torch.randint(0, 40, (20,), generator=g).tolist()) for _ in range(120)]
    (tmp_path / "corpus.txt").write_text("\n".join(docs))
    lm = build_tiny_causal_lm(tmp_path / "lm", docs, d_model=16, n_layer=1)
    hook = "transformer.h.0.mlp"
    cfg = RunConfig(
        data=DataConfig(source="lm"),
        lm=LmConfig(model=str(lm), hookpoints=[hook], dataset=str(tmp_path / "corpus.txt"), ctx_len=16,
                    eval_chunks=8, lm_batch_size=16, epochs=2),
        train=TrainConfig(seeds=[0, 1], batch_size=64, num_tokens=1280, eval_tokens=128, progress=False,
                          lr_warmup_steps=2),
        saes=[SaeConfig(architecture="topk", num_latents=32, k=4)],
    )
    train_run(cfg, build_source(cfg), tmp_path / "run")
    ss.save_comparison(ss.compare_all(tmp_path / "run"), tmp_path / "compare")
    out = tmp_path / "pool"
    assert main(["pool", str(tmp_path / "compare"), "--out", str(out), "--fit-tokens", "1920", "--splits", "0",
                 "--baseline-seeds", "0", "--select-tokens", "256", "--quiet"]) == 0
    record = json.loads((out / "pool.json").read_text())
    assert record["run_dir"] == "../run" and record["hookpoint"] == hook  # relative to pool.json
    assert record["fit"]["steps"] == 30  # 1920 tokens: more than the run's 1280, the LM pass replayed
    assert record["summary"]["verdicts"]["vs_single_seeds"]["holds"] is None  # two seeds: no disjoint halves
    assert set(record["heldout"]["single_seeds"]) == {"seed0", "seed1"}
    assert ss.load(out / "pooled").num_latents == 32
