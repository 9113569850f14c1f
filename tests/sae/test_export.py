"""`saeseeds export --format saelens`: SAELens 6's on-disk layout for every architecture, computing the same SAE."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from saeseeds.api.exporting import export
from saeseeds.cli import main
from saeseeds.config import SaeConfig
from saeseeds.errors import CheckpointError
from saeseeds.sae import SparseAutoencoder, load_any, save_sae

ARCHS = {"topk": "topk", "relu": "standard", "jumprelu": "jumprelu", "batchtopk": "jumprelu"}
DATA = {"exclude_special_tokens": True, "special_token_ids": [101, 102]}


def make(arch: str, d: int = 10, n: int = 32) -> SparseAutoencoder:
    g = torch.Generator().manual_seed(3)
    sae = SparseAutoencoder(SaeConfig(architecture=arch, num_latents=n, k=4), d, generator=g)
    with torch.no_grad():
        sae.encoder.bias.copy_(torch.randn(n, generator=g) * 0.2)
        sae.b_dec.copy_(torch.randn(d, generator=g))
        if arch == "jumprelu":
            sae.log_threshold.copy_((torch.rand(n, generator=g) * 0.3 + 0.05).log())
        if arch == "batchtopk":
            sae.threshold.fill_(0.25)
    return sae.eval()


def saelens_forward(t: dict[str, torch.Tensor], cfg: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SAELens 6's encode/decode for standard, topk and jumprelu, written out from its source."""
    sae_in = x - t["b_dec"] * cfg["apply_b_dec_to_input"]
    pre = sae_in @ t["W_enc"] + t["b_enc"]
    if cfg["architecture"] == "standard":
        acts = pre.relu()
    elif cfg["architecture"] == "jumprelu":
        acts = pre.relu() * (pre > t["threshold"])
    else:
        top = pre.topk(cfg["k"], dim=-1)
        acts = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    return acts, acts @ t["W_dec"] + t["b_dec"]


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    """One checkpoint of each architecture under <root>/<hook>/<arch>/seed0, written as the trainer writes them."""
    root = tmp_path / "src"
    for arch in ARCHS:
        save_sae(make(arch), root / "blocks.2" / arch / "seed0", hookpoint="blocks.2", model="tiny", seed=0,
                 input_scale=1.7, data=DATA)
    return root


def test_export_writes_saelens_layout_that_computes_the_same_sae(run_folder: Path, tmp_path: Path) -> None:
    manifest = export(run_folder, tmp_path / "out")
    record = json.loads(manifest.read_text())
    assert record["schema"] == "saeseeds.export/1" and record["source"] == "../src"  # relative to export.json
    assert sorted(e["path"] for e in record["saes"]) == sorted(f"blocks.2/{a}/seed0" for a in ARCHS)
    x = torch.randn(64, 10, generator=torch.Generator().manual_seed(1)) * 2
    for arch, saelens_arch in ARCHS.items():
        folder = tmp_path / "out" / "blocks.2" / arch / "seed0"
        assert sorted(p.name for p in folder.iterdir()) == ["cfg.json", "sae_weights.safetensors"]
        cfg = json.loads((folder / "cfg.json").read_text())
        tensors = load_file(str(folder / "sae_weights.safetensors"))
        assert cfg["architecture"] == saelens_arch and cfg["d_in"] == 10 and cfg["d_sae"] == 32
        assert cfg["dtype"] == "float32" and cfg["normalize_activations"] == "none"
        assert cfg["apply_b_dec_to_input"] is True
        assert cfg["metadata"]["hook_name"] == "blocks.2" and cfg["metadata"]["model_name"] == "tiny"
        assert cfg["metadata"]["exclude_special_tokens"] == [101, 102]
        assert cfg["metadata"]["sae_lens_version"].startswith("6.")
        expected = {"W_enc": (10, 32), "b_enc": (32,), "W_dec": (32, 10), "b_dec": (10,)}
        if saelens_arch == "jumprelu":
            expected["threshold"] = (32,)
        assert {k: tuple(v.shape) for k, v in tensors.items()} == expected
        assert ("k" in cfg) == (saelens_arch == "topk")
        ours = load_any(run_folder / "blocks.2" / arch / "seed0").eval()
        with torch.no_grad():
            acts, out = saelens_forward(tensors, cfg, x)
            assert torch.allclose(acts, ours.encode_dense(x), atol=1e-5), arch
            assert torch.allclose(out, ours.decode_dense(ours.encode_dense(x)), atol=1e-5), arch
        # our own SAELens reader reads the export back to the same SAE
        again = load_any(folder).eval()
        assert torch.allclose(again.encode_dense(x), ours.encode_dense(x), atol=1e-5)


SAELENS_CLASSES = {"topk": "TopKSAE", "relu": "StandardSAE", "jumprelu": "JumpReLUSAE", "batchtopk": "JumpReLUSAE"}


def test_sae_lens_loads_the_export(run_folder: Path, tmp_path: Path) -> None:
    """SAELens itself (`SAE.load_from_disk`) loads every architecture's export and computes the same latents and
    reconstructions. sae-lens is in the `test` extra, so this runs in CI; it skips only where sae-lens is missing."""
    sae_lens = pytest.importorskip("sae_lens")
    export(run_folder, tmp_path / "out")
    x = torch.randn(64, 10, generator=torch.Generator().manual_seed(2))
    for arch, cls in SAELENS_CLASSES.items():
        theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "out" / "blocks.2" / arch / "seed0"))
        ours = load_any(run_folder / "blocks.2" / arch / "seed0").eval()
        assert type(theirs).__name__ == cls and theirs.W_enc.dtype == torch.float32, arch
        with torch.no_grad():
            acts, expected = theirs.encode(x), ours.encode_dense(x)
            assert torch.allclose(acts, expected, atol=1e-5), arch
            assert torch.equal(acts > 0, expected > 0), arch  # the same active latents
            recon = ours.decode_dense(expected)
            assert torch.allclose(theirs.decode(acts), recon, atol=1e-5), arch
            assert torch.allclose(theirs(x), recon, atol=1e-5), arch
            # not trivially equal: some latents fire, and TopK / the JumpReLU thresholds switch some positive ones off
            pre = (x - theirs.b_dec) @ theirs.W_enc + theirs.b_enc
            assert 0 < int((acts > 0).sum()) <= int((pre > 0).sum()), arch
            if arch != "relu":
                assert int((acts > 0).sum()) < int((pre > 0).sum()), arch


def test_cli_exports_one_checkpoint_into_out_itself(tmp_path: Path, capsys) -> None:
    save_sae(make("relu"), tmp_path / "ck")
    assert main(["export", str(tmp_path / "ck"), "--format", "saelens", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "cfg.json").is_file() and (tmp_path / "out" / "sae_weights.safetensors").is_file()
    assert "relu -> SAELens standard" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "ck"), "--out", str(tmp_path / "out")]) == 2  # no silent overwrite
    assert main(["export", str(tmp_path / "ck"), "--out", str(tmp_path / "out"), "--overwrite", "--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_batchtopk_without_a_threshold_is_not_exported(tmp_path: Path) -> None:
    sae = make("batchtopk")
    with torch.no_grad():
        sae.threshold.fill_(-1.0)
    save_sae(sae, tmp_path / "ck")
    with pytest.raises(CheckpointError, match="no inference threshold"):
        export(tmp_path / "ck", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_run_wraps_foreign_seeds_for_analyze(tmp_path: Path, capsys) -> None:
    """SAELens-format seeds of a tiny GPT-2 → `export --format run` → `analyze` finds the stability compare finds."""
    from helpers.tiny_lm import build_tiny_causal_lm
    from saeseeds.sae.export import write_saelens

    hook = "transformer.h.1.mlp"
    g = torch.Generator().manual_seed(0)
    words = [f"w{i}" for i in range(40)]
    docs = [" ".join(words[i] for i in torch.randint(0, 40, (30,), generator=g).tolist()) for _ in range(120)]
    (tmp_path / "corpus.txt").write_text("\n".join(docs))
    lm = build_tiny_causal_lm(tmp_path / "lm", docs, d_model=16, n_layer=2)
    base = make("topk", d=16, n=24)
    other = make("topk", d=16, n=24)
    with torch.no_grad():  # seed 1: half of seed 0's latents (permuted), half new ones
        perm = torch.randperm(24, generator=g)
        other.encoder.weight[:12] = base.encoder.weight[perm[:12]]
        other.encoder.bias[:12] = base.encoder.bias[perm[:12]]
        other.W_dec[:12] = base.W_dec[perm[:12]]
        other.W_dec[12:] = torch.nn.functional.normalize(torch.randn(12, 16, generator=g), dim=1)
        other.encoder.weight[12:] = other.W_dec[12:]
    for i, sae in enumerate((base, other)):
        write_saelens(sae, tmp_path / "foreign" / f"seed{i}", {"hookpoint": hook})
    seeds = [str(tmp_path / "foreign" / f"seed{i}") for i in (0, 1)]
    run = tmp_path / "run"
    assert main(["export", *seeds, "--format", "run", "--hookpoint", hook, "--model", str(lm), "--dataset",
                 str(tmp_path / "corpus.txt"), "--ctx-len", "24", "--out", str(run), "--quiet"]) == 0
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["status"] == "imported" and [e["seed"] for e in manifest["saes"]] == [0, 1]
    capsys.readouterr()  # the tiny model's own save messages
    for wrong, says in ((["--hookpoint", "transformer.h.1.mlp.c_fc"], "64 wide, but the SAEs read d_in 16"),
                        (["--hookpoint", "h.7.mlp"], "matches no module")):
        assert main(["export", *seeds, "--format", "run", *wrong, "--model", str(lm), "--dataset",
                     str(tmp_path / "corpus.txt"), "--out", str(tmp_path / "wrong")]) == 2  # checked when it runs
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0] and not (tmp_path / "wrong").exists()
    assert main(["export", *seeds, "--format", "run", "--hookpoint", "h.1.mlp", "--model", str(lm), "--dataset",
                 str(tmp_path / "corpus.txt"), "--out", str(tmp_path / "sparsify-name"), "--quiet"]) == 0
    assert json.loads((tmp_path / "sparsify-name" / "run.json").read_text())["saes"][0]["hookpoint"] == hook
    assert main(["export", seeds[0], str(tmp_path / "ck_d8"), "--format", "run", "--hookpoint", hook,
                 "--out", str(tmp_path / "bad")]) == 2  # a missing checkpoint: one line, nothing written
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "ana"
    assert main(["analyze", str(run), "--out", str(out), "--quiet", "--n-random", "2", "--n-random-lm", "1",
                 "--max-tokens", "0", "--no-lm-loss", "--n-show", "2"]) == 0
    latents = json.loads((out / hook / "topk-24" / "latents.json").read_text())
    assert main(["compare", *seeds, "--out", str(tmp_path / "cmp"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    shared = {(p["a"], p["b"]): p["n_shared"] for p in summary["pairs"]}
    assert shared[("seed0", "seed1")] >= 10  # the copied half
    assert sum(latents["stability"]) == shared[("seed0", "seed1")]  # seed 0's stability, one other seed
