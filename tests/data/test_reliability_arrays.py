"""Activation files from the third reliability campaign (defects D7, D13, D14, D17): valid big-endian data is read,
arrays that are not real numbers or have no columns are refused in one line, a directory is named as one, an
array file's identity (size, mtime, sha256) is recorded and checked, and an LM context longer than the model's
positions is refused naming the model's limit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from saeseeds.cli import main
from saeseeds.config import RunConfig
from saeseeds.data.sources import build_source
from saeseeds.errors import ConfigError, DataError


def _cfg(path: Path) -> RunConfig:
    cfg = RunConfig()
    cfg.data.source, cfg.data.path = "npy", str(path)
    cfg.train.batch_size, cfg.train.num_tokens, cfg.train.progress = 64, 256, False
    return cfg


def _rows(rows: int = 400, d: int = 8) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((rows, d)).astype(np.float32)


def test_d13_big_endian_npy_gives_the_same_batches_as_native(tmp_path: Path) -> None:
    x = _rows()
    np.save(tmp_path / "le.npy", x.astype("<f4"))
    np.save(tmp_path / "be.npy", x.astype(">f4"))
    native, big = build_source(_cfg(tmp_path / "le.npy")), build_source(_cfg(tmp_path / "be.npy"))
    for a, b, _ in zip(native.train, big.train, range(3)):
        assert torch.equal(a, b) and b.dtype == torch.float32
    assert all(torch.equal(a, b) for a, b in zip(native.eval, big.eval))


@pytest.mark.parametrize("kind, array", [
    ("structured", np.zeros((400, 2), dtype=[("a", "<f4"), ("b", "<f4")])),
    ("complex", (_rows() + 1j * _rows()).astype(np.complex64)),
])
def test_d13_d14_arrays_that_are_not_real_numbers_are_refused(tmp_path: Path, kind: str, array: np.ndarray) -> None:
    np.save(tmp_path / f"{kind}.npy", array)
    with pytest.raises(DataError, match=rf"{kind}\.npy: activations have dtype .*\({kind}.*allowed: real numbers"):
        build_source(_cfg(tmp_path / f"{kind}.npy"))


def test_d13_no_columns_refused_with_normalisation_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "empty_cols.npy", np.zeros((2000, 0), dtype=np.float32))
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'[data]\nsource = "npy"\npath = "{tmp_path / "empty_cols.npy"}"\n[train]\nbatch_size = 64\n'
                   'num_tokens = 256\nnormalize_activations = false\nprogress = false\n[[sae]]\nnum_latents = 8\nk = 2\n')
    assert main(["train", str(cfg), "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "empty_cols.npy" in lines[0] and "d_in 0" in lines[0], lines


def test_d17_data_path_that_is_a_directory_says_so(tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    with pytest.raises(DataError, match="shards is a directory; data.path names one .npy or .safetensors file"):
        build_source(_cfg(tmp_path / "shards"))


def test_d7_array_file_identity_recorded_and_checked(tmp_path: Path) -> None:
    from saeseeds.data.arrays import check_same_file

    path = tmp_path / "acts.npy"
    np.save(path, _rows())
    info = build_source(_cfg(path)).info
    assert info["file_bytes"] == path.stat().st_size and len(info["file_sha256"]) == 64
    check_same_file(path, info)  # unchanged: size and mtime match, nothing is read
    os.utime(path, ns=(1, 1))  # a copy without its mtime: the contents are hashed, and match
    check_same_file(path, info)
    changed = _rows()
    changed[399, 0] += 1.0  # a held-out row, same size
    np.save(path, changed)
    with pytest.raises(DataError, match=r"acts\.npy: not the data file the run was trained on: sha256 .* records"):
        check_same_file(path, info, "run/run.json")
    np.save(path, _rows(401))
    with pytest.raises(DataError, match=r"acts\.npy: not the data file .*: [\d,]+ bytes, run\.json records"):
        check_same_file(path, info)


def test_d13_ctx_len_longer_than_the_models_positions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers.tiny_lm import build_tiny_causal_lm

    docs = [f"sentence {i} : the cat sat on the mat" for i in range(40)]
    model = build_tiny_causal_lm(tmp_path / "model", docs, n_layer=1, d_model=16, max_positions=32)
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    cfg = RunConfig()
    cfg.data.source = "lm"
    cfg.lm.model, cfg.lm.dataset, cfg.lm.hookpoints = str(model), str(tmp_path / "corpus.jsonl"), ["transformer.h.0"]
    cfg.lm.ctx_len, cfg.lm.eval_chunks, cfg.train.progress = 64, 2, False
    with pytest.raises(ConfigError, match=r"lm\.ctx_len = 64 is longer than .* can read; allowed: at most 32"):
        build_source(cfg)
    import transformers

    from saeseeds.data.lm_source import load_language_model

    def no_weights(*args, **kwargs):
        raise AssertionError("the model's weights were loaded before ctx_len was checked")

    with monkeypatch.context() as m:
        m.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_weights)
        with pytest.raises(ConfigError, match=r"lm\.ctx_len = 64 .* at most 32"):
            load_language_model(cfg.lm)  # refused from the model's config alone
    cfg.lm.ctx_len = 32
    assert load_language_model(cfg.lm).model is not None  # the model's own limit is allowed
