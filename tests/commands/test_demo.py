"""`saeseeds demo` end to end on the embedded default (shrunk by overrides to stay fast): a small study with
milestones and ReLU at matched L0, its table, the analysis, checkpoints readable by eai-sparsify."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import saeseeds as ss
from helpers.records import absolute_paths, unstamped
from saeseeds.cli import main


@pytest.mark.slow
def test_demo_runs_offline_and_its_checkpoints_load_in_sparsify(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "demo"
    status = main([
        "demo", "--out", str(out), "--no-progress",
        "--train.num_tokens", "2048", "--train.batch_size", "512", "--train.eval_tokens", "1024",
        "--lm.max_chunks", "24", "--lm.eval_chunks", "8", "--study.num_latents", "384",
    ])
    assert status == 0
    printed = capsys.readouterr().out
    assert "FVU" in printed and str(out / "summary.json") in printed
    summary = json.loads((out / "summary.json").read_text())
    keys = sorted(summary["metrics"])
    assert len(keys) == 6 and sum("topk" in k for k in keys) == 3 and sum("relu" in k for k in keys) == 3
    assert all(0 <= summary["metrics"][k]["fvu"] < 1.5 for k in keys)
    assert summary["lm_loss"] is None  # the default is an encoder
    assert (out / "demo.toml").is_file()
    # the study: one row per set and milestone (4 steps: 25%, 50%, 100% -> steps 1, 2, 4), ReLU with its L0 target
    table = pd.read_csv(out / "study" / "table.csv")
    assert sorted(set(table["step"])) == [1, 2, 4] and len(table) == 6
    assert set(table["sae_name"]) == {"topk-n384-k16", "relu-n384-l016"}
    assert table.loc[table["architecture"] == "relu", "target_l0"].eq(16.0).all()
    assert len(list((out / "study" / "figures").glob("*.png"))) == 4
    # the alignment is stored once per milestone, in the compare format, and the analysis read the final one
    assert summary["outputs"]["compare"] == "study/compare/step00000004"  # relative to summary.json
    compare = json.loads((out / "study" / "compare" / "step00000004" / "summary.json").read_text())
    assert compare["rule"] == ss.SharingRule().to_dict() and summary["rule"] == compare["rule"]
    assert len(compare["pairs"]) == 12  # ordered pairs, 2 configurations × 3 seeds
    assert len(ss.load_comparison(out / summary["outputs"]["compare"])) == 2
    assert not (out / "analysis" / "cross_seed").exists()
    assert {"a", "b", "num_latents_a", "num_latents_b", "n_shared", "shared_fraction", "mmcs"} <= set(compare["pairs"][0])
    assert len(list((out / "study" / "compare" / "step00000004" / "figures").glob("*.png"))) >= 4
    assert set(summary["alignment"]) == {k.rsplit("/", 1)[0] for k in keys}
    analysis = json.loads((out / "analysis" / "analysis.json").read_text())
    assert len(analysis["configs"]) == 2
    tokens = analysis["analysis_tokens"]  # the demo asks for the training rows (replayed, each once) ...
    assert tokens["train_rows"] > 0 and tokens["distinct"] is True and tokens["lm_forward"] is False
    for conf in analysis["configs"].values():  # ... and for the model-based ablation, which analyze skips by default
        assert json.loads((out / "analysis" / conf["dir"] / "ablation.json").read_text())["lm_loss"] == "ok"
    assert unstamped(out) == [] and absolute_paths(out) == []  # every JSON stamped; paths relative to their file

    sparsify = pytest.importorskip("sparsify")
    topk_paths = [p for k, p in summary["checkpoints"].items() if "topk" in k]
    assert len(topk_paths) == 3
    for path in topk_paths:
        coder = sparsify.SparseCoder.load_from_disk(out / path, device="cpu")
        assert coder.num_latents == 384 and coder.d_in == 384
    # a second demo into the same directory is refused instead of overwriting, and changes nothing
    before = (out / "demo.toml").read_bytes(), (out / "summary.json").read_bytes()
    assert main(["demo", "--out", str(out), "--no-progress"]) == 2
    assert ((out / "demo.toml").read_bytes(), (out / "summary.json").read_bytes()) == before
