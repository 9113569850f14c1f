"""`saeseeds study` from the command line on a tiny array dataset: the table printed, the outputs written, axes
overridable with --study.*, and the HTML report of the study when that verb is present."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from saeseeds.cli import main

CONFIG = """
[data]
source = "npy"
path = "{path}"
[train]
seeds = [0, 1, 2]
batch_size = 64
num_tokens = 1280
lr = 0.01
lr_warmup_steps = 2
eval_tokens = 256
checkpoint_every = 1000                # only the final checkpoint: keeps the test fast
[[sae]]
architecture = "topk"
num_latents = 16
k = 2
[study]
k = [2, 3]
milestones = [0.5]
"""


def test_study_cli_writes_table_figures_and_study_json(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "acts.npy", (rng.standard_normal((1600, 8)) * (rng.random((1600, 8)) < 0.3)).astype(np.float32))
    config = tmp_path / "study.toml"
    config.write_text(CONFIG.format(path=tmp_path / "acts.npy"))
    out = tmp_path / "out"
    assert main(["study", str(config), "--out", str(out), "--quiet", "--study.seeds", "0,1",
                 "--study.k", "2", "--threshold", "0.6"]) == 0
    printed = capsys.readouterr().out
    assert "activations/topk-n16-k2" in printed and str(out / "study.json") in printed
    record = json.loads((out / "study.json").read_text())
    assert record["seeds"] == [0, 1] and record["rule"]["threshold"] == 0.6
    assert [g["name"] for g in record["grid"]] == ["topk-n16-k2"]
    table = pd.read_csv(out / "table.csv")
    assert list(table["step"]) == [10, 20] and (table["n_pairs"] == 2).all()
    assert len(list((out / "figures").glob("*.png"))) == 4
    report = out / "report.html"
    assert ("report:" in printed) == report.is_file()
