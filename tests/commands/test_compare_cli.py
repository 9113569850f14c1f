"""`saeseeds compare` on a real (tiny, synthetic) multi-seed run and on loose checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import saeseeds as ss
from saeseeds.cli import main
from saeseeds.config import RunConfig, SaeConfig, TrainConfig
from saeseeds.sae import SparseAutoencoder, save_sae

FIGURES = ("fig_a_dec_vs_enc", "fig_b_only_in_base", "fig_c_similarity_vs_frequency", "fig_d_stability_hist")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from saeseeds.data.sources import build_source
    from saeseeds.training import train_run

    cfg = RunConfig()
    cfg.data.source = "synthetic"
    cfg.synthetic.d_in = 32
    cfg.synthetic.num_features = 96
    cfg.saes = [SaeConfig(num_latents=128, k=8)]
    cfg.train = TrainConfig(seeds=[0, 1, 2], batch_size=256, num_tokens=40_000, eval_tokens=4096,
                            lr_warmup_steps=10, progress=False, device="cpu")
    out = tmp_path_factory.mktemp("run")
    train_run(cfg, build_source(cfg), out)
    return out


def test_compare_run_directory(tiny_run, tmp_path, capsys) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", str(tiny_run), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rule"]["threshold"] == 0.7 and summary["schema"] == "saeseeds.compare/1"
    assert len(summary["pairs"]) == 6  # 3 seeds, ordered pairs
    for pair in summary["pairs"]:
        for key in ("a", "b", "num_latents_a", "num_latents_b", "n_shared", "shared_fraction", "mmcs"):
            assert key in pair
        assert 0.0 <= pair["shared_fraction"] <= 1.0
    pngs = {p.stem.split("__")[0] for p in (out / "figures").glob("*.png")}
    assert set(FIGURES) <= pngs
    for name in FIGURES:
        assert any((out / "figures").glob(f"{name}*.json"))
    assert len(list((out / "sets").rglob("pairs/*.npz"))) == 3  # each unordered pair stored once
    assert "shared" in capsys.readouterr().out
    # the stored result is the computed one
    (result,) = ss.load_comparison(out)
    again = ss.compare(tiny_run)
    for i in range(3):
        np.testing.assert_array_equal(result.stability(i), again.stability(i))
    assert result.shared_fraction_stats() == again.shared_fraction_stats()
    # a second compare into the same directory is refused, --overwrite replaces it whole
    stale = out / "sets" / "stale.txt"
    stale.write_text("x")
    assert main(["compare", str(tiny_run), "--out", str(out), "--quiet"]) == 2
    assert main(["compare", str(tiny_run), "--out", str(out), "--quiet", "--overwrite"]) == 0
    assert not stale.exists()


def test_compare_checkpoints_self_and_random(tmp_path, capsys) -> None:
    gen = torch.Generator().manual_seed(0)
    sae = SparseAutoencoder(SaeConfig(num_latents=64, k=4), 64, generator=gen)
    other = SparseAutoencoder(SaeConfig(num_latents=64, k=4), 64, generator=torch.Generator().manual_seed(9))
    save_sae(sae, tmp_path / "a")
    save_sae(sae, tmp_path / "a_copy")
    save_sae(other, tmp_path / "r")
    acts = tmp_path / "acts.npy"
    np.save(acts, np.random.default_rng(0).standard_normal((500, 64)).astype(np.float32))
    out = tmp_path / "cmp"
    code = main(["compare", str(tmp_path / "a"), str(tmp_path / "a_copy"), str(tmp_path / "r"),
                 "--out", str(out), "--activations", str(acts), "--threshold", "0.6"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rule"]["threshold"] == 0.6
    by = {(p["a"], p["b"]): p for p in summary["pairs"]}
    assert by[("a", "a_copy")]["shared_fraction"] == 1.0
    assert by[("a", "r")]["shared_fraction"] < 0.05
    assert (out / "figures" / "fig_c_similarity_vs_frequency__checkpoints.png").is_file()


def test_compare_rejects_missing(tmp_path) -> None:
    assert main(["compare", str(tmp_path / "nope"), str(tmp_path / "nope2"), "--out", str(tmp_path / "o")]) == 2
