"""A run's inputs after training, from the third reliability campaign: `analyze` and `pool` read the data the run
was trained on or refuse in one line (D7: a changed data file, a relative data.path from another directory, an
edited eval/ store), damaged compare and eval files give one line naming them (D13), a checkpoint whose cfg.json
disagrees with its weights is refused (D14), and `pool --fit-tokens` is bounded (D15).

One tiny npy run (2 seeds, trained with a relative data.path from its own directory) and one compare output are
built per module; a test that damages something works on its own copy.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from helpers.synthetic_config import tiny_npy_toml
from saeseeds.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

ANALYZE = ("--quiet", "--n-random", "2", "--max-tokens", "1024")


@contextmanager
def _cwd(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _data(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((4096, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<root>/data.npy, <root>/run.toml (data.path relative), <root>/run (trained from <root>), <root>/cmp."""
    root = tmp_path_factory.mktemp("rundata")
    np.save(root / "data.npy", _data())
    (root / "run.toml").write_text(tiny_npy_toml("data.npy", checkpoint_every=1000))
    with _cwd(root):
        assert main(["train", "run.toml", "--out", "run", "--quiet"]) == 0
        assert main(["compare", "run", "--out", "cmp", "--quiet"]) == 0
    return root


@pytest.fixture
def copy(built: Path, tmp_path: Path) -> Path:
    """A private copy of the whole tree (run, its data, the compare output) to damage."""
    shutil.copytree(built, tmp_path / "tree")
    return tmp_path / "tree"


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], *keys: str, cwd: Path) -> str:
    """The command, run in `cwd` (the run's own directory, so that nothing but the damage under test differs),
    exits 2 with one stderr line that names every key."""
    capsys.readouterr()
    with _cwd(cwd):
        assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    for key in keys:
        assert key in lines[0], (key, lines[0])
    return lines[0]


def _change_one_row(path: Path) -> None:
    x = np.load(path)
    x[4000, 0] += 1.0  # same size, other contents
    np.save(path, x)


def test_d7_analyze_refuses_a_changed_data_file(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _change_one_row(copy / "data.npy")
    _refused(capsys, ["analyze", str(copy / "run"), "--out", str(copy / "an"), *ANALYZE],
             "data.npy", "not the data file the run was trained on", "sha256", cwd=copy)
    assert not (copy / "an").exists()


def test_d7_pool_refuses_a_changed_data_file(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(copy / "data.npy", _data(1)[:4000])  # another size: refused without reading it
    _refused(capsys, ["pool", str(copy / "cmp"), "--out", str(copy / "pool"), "--quiet"],
             "data.npy", "bytes", "run.json records", cwd=copy)


def test_d7_relative_data_path_is_read_against_the_run(copy: Path, tmp_path: Path) -> None:
    from saeseeds.training.run_dir import load_run_config

    other = tmp_path / "elsewhere"
    other.mkdir()
    np.save(other / "data.npy", _data(7))  # what a cwd-relative "data.npy" would read from here
    with _cwd(copy):
        assert main(["pool", "run", "--out", "pool_here", "--quiet", "--baseline-seeds", "0"]) == 0
    with _cwd(other):
        assert Path(load_run_config(copy / "run").data.path).resolve() == (copy / "data.npy").resolve()
        assert main(["pool", str(copy / "run"), "--out", "pool_there", "--quiet", "--baseline-seeds", "0"]) == 0
    here = json.loads((copy / "pool_here" / "pool.json").read_text())
    there = json.loads((other / "pool_there" / "pool.json").read_text())
    drop = {"seconds"}
    assert {k: v for k, v in here["summary"].items() if k not in drop} == \
        {k: v for k, v in there["summary"].items() if k not in drop}


@pytest.mark.parametrize("verb", ["analyze", "pool"])
def test_d7_edited_eval_store_is_refused(copy: Path, capsys: pytest.CaptureFixture[str], verb: str) -> None:
    path = copy / "run" / "eval" / "acts" / "activations.safetensors"
    tensors = load_file(path)
    save_file({"acts": tensors["acts"] * 3}, path)  # a valid file, other values
    extra = ANALYZE if verb == "analyze" else ("--quiet",)
    _refused(capsys, [verb, str(copy / "run"), "--out", str(copy / "out"), *extra], "eval/acts", "sha256_acts",
             cwd=copy)


def test_d13_eval_store_with_fewer_rows_is_one_line(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = copy / "run" / "eval" / "acts" / "activations.safetensors"
    save_file({"acts": load_file(path)["acts"][:100].clone()}, path)
    _refused(capsys, ["analyze", str(copy / "run"), "--out", str(copy / "an"), *ANALYZE],
             "activations.safetensors", "(100, 16)", cwd=copy)


def test_d13_corrupt_pairs_npz_is_one_line(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = sorted((copy / "cmp").rglob("pairs/0-1.npz"))
    assert pairs
    data = bytearray(pairs[0].read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # zip data damaged, size unchanged
    pairs[0].write_bytes(bytes(data))
    _refused(capsys, ["analyze", str(copy / "run"), "--compare", str(copy / "cmp"), "--out", str(copy / "an"),
                      *ANALYZE], "0-1.npz", cwd=copy)
    pairs[0].write_bytes(bytes(data[:200]))  # cut short
    _refused(capsys, ["pool", str(copy / "cmp"), "--out", str(copy / "pool"), "--quiet"], "0-1.npz",
             "not a readable .npz file", cwd=copy)


@pytest.mark.parametrize("key", ["num_latents", "saeseeds_config"])
def test_d14_checkpoint_cfg_disagreeing_with_its_weights_is_refused(copy: Path, capsys: pytest.CaptureFixture[str],
                                                                   key: str) -> None:
    seed1 = copy / "run" / "activations" / "topk-32" / "seed1"
    from saeseeds.sae.checkpoint import read_checkpoint_cfg, write_checkpoint_cfg

    cfg = read_checkpoint_cfg(seed1)  # cfg.json and saeseeds.json beside it
    if key == "num_latents":
        cfg["num_latents"] = 99
    else:
        cfg["saeseeds_config"]["num_latents"] = 99
    write_checkpoint_cfg(seed1, cfg)
    _refused(capsys, ["compare", str(copy / "run"), "--out", str(copy / "c2"), "--quiet"],
             f"{seed1}/cfg.json", "num_latents=99", "32 latents", cwd=copy)


def test_d15_pool_fit_tokens_bounded_by_the_run(built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _refused(capsys, ["pool", str(built / "cmp"), "--out", str(tmp_path / "pool"), "--quiet",
                             "--fit-tokens", str(10**21)], "--fit-tokens", "allowed: at most 32,768", cwd=built)
    assert "2 seeds" in line and "1,024 training tokens" in line
    assert not (tmp_path / "pool").exists()
