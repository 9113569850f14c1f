"""The recipe comparison end to end (`saeseeds study` with `design = "recipes"`): every [[sae]] table one recipe at
matched L0, recipes.csv / recipes.json with the yardstick and the verdicts, the Pareto figure, the pool of the
reference's seeds, the long single seed, and the report's recipe section; the recipe config's one-line errors;
and the packaged configs/recipes.toml under --quick."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.synthetic_config import tiny_synthetic_toml
from saeseeds.api.study import run_study
from saeseeds.cli import main
from saeseeds.config.study import load_study_config
from saeseeds.errors import ConfigError
from saeseeds.study.grid import pass_configs
from saeseeds.study.recipes import COLUMNS

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[data]
source = "npy"
path = "{path}"
[train]
seeds = [0, 1, 2]
batch_size = 64
num_tokens = 640
lr = 0.01
lr_warmup_steps = 2
eval_tokens = 256
dead_tokens_threshold = 640
checkpoint_every = 1000
progress = false
[[sae]]
name = "topk"
architecture = "topk"
{extra}
[[sae]]
name = "relu"
architecture = "relu"
l1_coefficient = 0.5
[study]
design = "recipes"
num_latents = [16]
k = [2]
{study}
"""


def _config(tmp_path: Path, extra: str = "", study: str = "pooling = true\nlong_seed = true") -> Path:
    rng = np.random.default_rng(0)
    dictionary = rng.standard_normal((24, 8))
    codes = (rng.random((1600, 24)) < 0.1) * rng.random((1600, 24)) * 3
    np.save(tmp_path / "acts.npy", (codes @ dictionary + 0.3).astype(np.float32))
    path = tmp_path / "recipes.toml"
    path.write_text(CONFIG.format(path=tmp_path / "acts.npy", extra=extra, study=study))
    return path


def test_recipe_study_writes_the_yardstick_verdicts_figure_pool_long_seed_and_report(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["study", str(_config(tmp_path)), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "verdict vs topk" in printed
    table = pd.read_csv(out / "recipes.csv")
    assert list(table.columns) == list(COLUMNS)
    assert list(table["recipe"]) == ["relu", "topk", "topk-long", "topk-pooled"]
    by = table.set_index("recipe")
    assert by.loc["topk", "verdict"] == "reference" and by.loc["relu", "target_l0"] == 2.0
    assert (table.loc[table["kind"] == "recipe", "n_seeds"] == 3).all()
    assert by.loc["topk-long", "tokens_per_sae"] == 3 * 640 and by.loc["topk-long", "n_seeds"] == 1
    assert 0 < by.loc["topk-long", "fvu_mean"] < 1.5 and 0 < by.loc["topk-pooled", "fvu_mean"] < 1.5
    for column in ("pw_mcc_mean", "stability_reappears_mean", "fc_matched_dfvu_mean", "train_seconds_per_sae"):
        assert table.loc[table["kind"] == "recipe", column].notna().all(), column
    record = json.loads((out / "recipes.json").read_text())
    assert record["schema"] == "saeseeds.recipes/1" and record["reference"] == "topk"
    assert set(record["verdicts"]) == {"relu"}
    assert all(v["holds"] is not True for v in record["verdicts"].values())  # 3 seeds can never pass α = 0.05
    assert record["per_seed"]["topk"]["seeds"] == [0, 1, 2]
    assert len(record["functional"]["relu"]["pairs"]) == 6
    assert (out / "runs" / "long" / "run.json").is_file() and (out / "pool" / "pool.json").is_file()
    numbers = json.loads((out / "figures" / "recipes_pareto.json").read_text())
    assert set(numbers["points"]) == {"topk", "relu"}
    assert set(numbers["lines"]) == {"topk-long", "topk-pooled"}
    study = json.loads((out / "study.json").read_text())
    assert study["recipes"] == "recipes.json" and "figures/recipes_pareto.png" in study["figures"]
    assert "pw_mcc_mean" in pd.read_csv(out / "table.csv").columns
    summary = json.loads(next((out / "compare").glob("step*/summary.json")).read_text())
    assert all(0 < p["pw_mcc"] <= p["mmcs"] + 1e-12 for p in summary["pairs"])  # equal sizes: PW-MCC ≤ MMCS
    assert "pw_mcc" in summary["sets"][0]
    page = (out / "report.html").read_text()
    for text in ("Recipe comparison at matched L0", "Verdicts: more stable than the reference", "recipes_pareto.png",
                 "PW-MCC", "topk-pooled"):
        assert text in page, text
    findings = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "recipes_findings.py"), str(out)],
                              capture_output=True, text=True, check=True).stdout
    relu = next(line for line in findings.splitlines() if line.startswith("| relu | recipe |"))
    assert f"{by.loc['relu', 'fvu_mean']:.3f} ± {by.loc['relu', 'fvu_sd']:.3f}" in relu  # read from the files
    assert "- **relu**: " in findings and record["verdicts"]["relu"]["reason"] in findings


@pytest.mark.parametrize(("extra", "study", "message"), [
    ("", 'reference = "nope"', "study.reference = 'nope' is not a [[sae]] name"),
    ('num_latents = 32', "num_latents = []", "saes: the recipes differ in size"),
    ("unnamed", "", "saes[1].name: empty; a recipe comparison names every [[sae]] table"),
])
def test_recipe_configs_fail_in_one_line(tmp_path, extra: str, study: str, message: str) -> None:
    path = _config(tmp_path, "", study)
    text = path.read_text()
    if extra == "unnamed":
        text = text.replace('name = "relu"\n', "")
    elif extra:
        text = text.replace('name = "topk"\n', f'name = "topk"\n{extra}\n', 1)
    if study.startswith("num_latents"):
        text = text.replace("num_latents = [16]\n", "")
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        pass_configs(*load_study_config(path))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_packaged_recipes_config_runs_quick_end_to_end(tmp_path, capsys) -> None:
    config = ROOT / "configs" / "recipes.toml"
    study, base = load_study_config(config, quick=True)
    assert study.seeds == [0, 1, 2] and study.num_latents == [64] and base.train.num_tokens == 16 * 128
    out = tmp_path / "quick"
    assert main(["study", str(config), "--quick", "--out", str(out), "--quiet"]) == 0
    table = pd.read_csv(out / "recipes.csv")
    assert {"topk", "topk-long", "topk-pooled"} <= set(table["recipe"])
    assert (out / "figures" / "recipes_pareto.png").is_file()
    assert "Recipe comparison at matched L0" in (out / "report.html").read_text()


def test_recipes_on_synthetic_data_report_recovered_true_features_by_kind(tmp_path) -> None:
    text = tiny_synthetic_toml(seeds=[0, 1, 2], num_tokens=2560, eval_tokens=512, num_latents=48)
    text = text.replace('[[sae]]\narchitecture = "topk"', '[[sae]]\nname = "topk"\narchitecture = "topk"')
    text += '\n[[sae]]\nname = "topk-kmeans"\narchitecture = "topk"\nnum_latents = 48\nk = 4\n' \
            'init_decoder = "kmeans"\n\n[study]\ndesign = "recipes"\n'
    text = text.replace("progress = false", "progress = false\ninit_sample_tokens = 512")
    path = tmp_path / "syn.toml"
    path.write_text(text)
    run_study(path, tmp_path / "out", say=lambda _msg: None)
    table = pd.read_csv(tmp_path / "out" / "recipes.csv").set_index("recipe")
    record = json.loads((tmp_path / "out" / "recipes.json").read_text())
    counts = record["recovery"]["topk"]
    assert [c["seed"] for c in counts] == ["seed0", "seed1", "seed2"] and counts[0]["of"]["identifiable"] == 3
    assert table.loc["topk", "recovered_mean"] == pytest.approx(np.mean([c["recovered"] for c in counts]))
    assert table.loc["topk", "recovered_identifiable_mean"] == pytest.approx(
        np.mean([c["by_kind"]["identifiable"] for c in counts]))
    assert table[["recovered_mean", "recovered_ambiguous_mean"]].notna().all().all()
