"""End to end: `saeseeds synthetic` trains a tiny config and writes the ground truth, numbers and figures."""

from __future__ import annotations

import json

import numpy as np
import torch

import saeseeds as ss
from saeseeds.cli import main
from saeseeds.data.synthetic import load_ground_truth

TINY = """
[data]
source = "synthetic"
hookpoint = "synthetic"

[synthetic]
d_in = 16
num_features = 40
num_ambiguous_groups = 1
num_identifiable_groups = 1
group_rank = 3
group_firing_prob = 0.2
max_firing_prob = 0.3

[train]
seeds = [0, 1]
batch_size = 256
num_tokens = 7680
eval_tokens = 512
lr = 3e-3
lr_warmup_steps = 2
progress = false

[[sae]]
architecture = "topk"
num_latents = 64
k = 4
"""


def test_synthetic_command_end_to_end(tmp_path, capsys) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = tmp_path / "run"
    assert main(["synthetic", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ambiguous" in printed and "identifiable" in printed
    truth = load_ground_truth(out)
    assert truth.num_features == 40
    report = out / "synthetic_report"
    results = json.loads((report / "recovery.json").read_text())
    summary = results["saes"]["synthetic/topk-64"]
    assert summary["seeds"] == [0, 1]
    assert set(summary["by_kind"]) == {"single", "identifiable", "ambiguous"}
    assert len(summary["groups"]) == 2 and "usage_max_angle_deg_per_seed" in summary["groups"][0]
    for name in ("feature_recovery", "subspace_recovery", "sharing_vs_frequency", "latent_stability"):
        assert (report / f"topk-64_{name}.png").stat().st_size > 1000
    # analysing again without training gives the same numbers
    assert main(["synthetic", str(config), "--out", str(out), "--report-only"]) == 0
    again = json.loads((report / "recovery.json").read_text())["saes"]["synthetic/topk-64"]
    assert again["by_kind"] == summary["by_kind"]
    # the cross-seed result behind the sharing numbers is stored, and its stability is the report's
    cross = ss.CrossSeedResult.load(report / "cross_seed" / "topk-64")
    assert cross.rule == ss.SharingRule() and cross.names == ["seed0", "seed1"]
    stored = torch.load(report / "topk-64_recovery.pt", weights_only=True)
    for i in range(2):
        np.testing.assert_array_equal(stored["latent_stability"][i].numpy(), cross.stability(i))


def test_report_only_refuses_a_run_that_is_not_synthetic(tmp_path, capsys) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "run.json").write_text(json.dumps({"config": {}, "data": {"source": "npy"}, "saes": []}))
    assert main(["synthetic", str(config), "--out", str(tmp_path / "other"), "--report-only"]) == 2
    assert "not a synthetic run" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["run.json"]
