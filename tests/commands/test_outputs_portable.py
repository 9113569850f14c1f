"""Outputs travel: every JSON a small real pipeline writes (synthetic run with milestones, compare, analyze, pool,
both exports) names its schema and the saeseeds version, locates files relative to itself, and the whole folder
still reads after it is moved elsewhere (docs/formats.md, "Records")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import saeseeds as ss
from helpers.records import absolute_paths, schemas, unstamped
from helpers.synthetic_config import tiny_synthetic_toml
from saeseeds.align.cross_seed import CrossSeedResult
from saeseeds.cli import main
from saeseeds.config import SaeConfig
from saeseeds.records import resolve_path
from saeseeds.sae import SparseAutoencoder
from saeseeds.sae.checkpoint import read_checkpoint_cfg, save_sae
from saeseeds.training import list_checkpoints

TINY = tiny_synthetic_toml(seeds=[0, 1, 2, 3], num_tokens=2560, eval_tokens=512, num_latents=32, milestones=[0.5])
SET = "synthetic/topk-32"
EXPECTED = {  # at least these schemas appear (the walk really covers every kind of record)
    "saeseeds.output/1", "saeseeds.run/1", "saeseeds.trainer_state/1", "saeseeds.checkpoint/2",
    "saeseeds.ground_truth/1", "saeseeds.synthetic/1", "saeseeds.cross_seed/1", "saeseeds.compare/1",
    "saeseeds.figure/1", "saeseeds.analyze/1", "saeseeds.stability/1", "saeseeds.triggers/1", "saeseeds.ablation/1",
    "saeseeds.subspaces/1", "saeseeds.claims/1", "saeseeds.latents/1", "saeseeds.pooling/1", "saeseeds.export/1",
    "saeseeds.saelens_cfg/1",
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny SAEs: conftest.one_thread


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """run (saeseeds synthetic), cmp, an (analyze --compare), pool (of cmp), exp (SAELens), imported (export --format
    run) side by side in one folder."""
    root = tmp_path_factory.mktemp("portable") / "outputs"
    config = root.parent / "tiny.toml"
    config.write_text(TINY)
    run, cmp = root / "run", root / "cmp"
    foreign = root / "foreign"  # SAEs of the default model's width, wrapped by export --format run
    for seed in (0, 1):
        sae = SparseAutoencoder(SaeConfig(architecture="topk", num_latents=32, k=4), 384,
                                generator=torch.Generator().manual_seed(seed))
        save_sae(sae, foreign / f"seed{seed}")
    commands = [
        ["synthetic", str(config), "--out", str(run), "--quiet"],
        ["compare", str(run), "--out", str(cmp), "--quiet"],
        ["analyze", str(run), "--compare", str(cmp), "--out", str(root / "an"), "--quiet", "--n-random", "2",
         "--n-show", "2"],
        ["pool", str(cmp), "--out", str(root / "pool"), "--fit-tokens", "256", "--select-tokens", "512",
         "--splits", "1", "--baseline-seeds", "0", "--quiet"],
        ["export", str(run), "--out", str(root / "exp"), "--quiet"],
        ["export", str(foreign / "seed0"), str(foreign / "seed1"), "--format", "run", "--hookpoint",
         "encoder.layer.3.output.dense", "--out", str(root / "imported"), "--quiet"],
    ]
    for argv in commands:
        assert main(argv) == 0, argv
    return root


def test_every_json_names_its_schema_and_saeseeds_version(outputs: Path) -> None:
    assert unstamped(outputs) == []
    found = schemas(outputs)
    assert EXPECTED <= set(found.values()), EXPECTED - set(found.values())
    assert found["imported/run.json"] == "saeseeds.run/1" and found["exp/export.json"] == "saeseeds.export/1"


def test_paths_inside_are_relative_to_the_file_holding_them(outputs: Path) -> None:
    assert absolute_paths(outputs) == []

    def record(rel: str) -> dict:
        return json.loads((outputs / rel).read_text())

    (entry,) = record("cmp/summary.json")["sets"]
    assert entry["paths"][0] == "../run/synthetic/topk-32/seed0"
    assert all((resolve_path(p, outputs / "cmp") / "cfg.json").is_file() for p in entry["paths"])
    cross = record(f"cmp/{entry['dir']}/cross_seed.json")
    assert cross["paths"][0] == "../../../run/synthetic/topk-32/seed0"
    assert record("an/analysis.json")["run_dir"] == "../run"
    assert record("run/synthetic_report/recovery.json")["run_dir"] == ".."
    pool = record("pool/pool.json")
    assert pool["run_dir"] == "../run" and pool["cross_seed"]["paths"][0] == "../run/synthetic/topk-32/seed0"
    assert record("pool/pooled/saeseeds.json")["pooling"]["run_dir"] == "../../run"  # beside sparsify's cfg.json
    assert record("exp/export.json")["source"] == "../run"
    assert record("imported/run.json")["saes"][0]["source"] == "../foreign/seed0"
    assert record("run/run.json")["milestones"][0]["path"] == "milestones/step00000005"


def test_a_moved_folder_still_reads(outputs: Path, tmp_path: Path) -> None:
    moved = tmp_path / "another" / "machine" / "outputs"
    shutil.copytree(outputs, moved)
    away = outputs.with_name("away")
    outputs.rename(away)  # nothing may still point at the old place
    try:
        (result,) = ss.load_comparison(moved / "cmp")
        assert [Path(p) for p in result.paths] == [moved / "run" / "synthetic" / "topk-32" / f"seed{i}"
                                                   for i in range(4)]
        own = CrossSeedResult.load(moved / "run" / "synthetic_report" / "cross_seed" / "topk-32")
        assert all(Path(p).is_dir() and Path(p).is_relative_to(moved) for p in own.paths)

        from saeseeds.api.pooling import resolve_source

        _, run, paths = resolve_source(moved / "cmp", config=None, rule=result.rule, run_dir=None,
                                       say=lambda msg: None)
        assert run.path == moved / "run" and paths[0] == moved / "run" / "synthetic" / "topk-32" / "seed0"
        provenance = read_checkpoint_cfg(moved / "pool" / "pooled")["pooling"]
        assert resolve_path(provenance["run_dir"], moved / "pool" / "pooled") == moved / "run"

        assert main(["analyze", str(moved / "run"), "--compare", str(moved / "cmp"), "--out", str(moved / "an2"),
                     "--quiet", "--n-random", "2", "--n-show", "2", "--config", "topk-32"]) == 0
        assert json.loads((moved / "an2" / "analysis.json").read_text())["run_dir"] == "../run"
        assert len(list_checkpoints(moved / "imported")) == 2

        assert main(["report", str(moved), "--quiet"]) == 0
        html = (moved / "report.html").read_text()
        assert "moved or deleted" not in html and str(away) not in html and str(outputs) not in html
        assert unstamped(moved) == [] and absolute_paths(moved) == []
    finally:
        away.rename(outputs)
