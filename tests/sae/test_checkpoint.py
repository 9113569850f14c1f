"""Checkpoint round trips: our format, sparsify's own loader, SAELens and dictionary_learning readers, bad files."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from saeseeds.config import SaeConfig
from saeseeds.errors import CheckpointError
from saeseeds.sae import (
    SparseAutoencoder,
    detect_format,
    fold_input_scale,
    load_any,
    load_sae,
    save_sae,
)
from saeseeds.sae.checkpoint import CFG_FILE, EXTRA_FILE, SPARSIFY_KEYS, read_checkpoint_cfg

ARCHS = ["topk", "batchtopk", "relu", "jumprelu"]


def trained_like(arch: str, d: int = 12, n: int = 40, k: int = 5) -> SparseAutoencoder:
    """An SAE with non-trivial biases and thresholds, as after training."""
    g = torch.Generator().manual_seed(7)
    sae = SparseAutoencoder(SaeConfig(architecture=arch, num_latents=n, k=k), d, generator=g)
    with torch.no_grad():
        sae.encoder.bias.copy_(torch.randn(n, generator=g) * 0.1)
        sae.b_dec.copy_(torch.randn(d, generator=g))
        if arch == "jumprelu":
            sae.log_threshold.copy_(torch.rand(n, generator=g).log() - 1)
        if arch == "batchtopk":
            sae.threshold.fill_(0.3)
    return sae.eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_round_trip_gives_identical_outputs(arch: str, tmp_path: Path) -> None:
    sae = trained_like(arch)
    save_sae(sae, tmp_path / "ck", hookpoint="layers.3.mlp", model="m", seed=4)
    loaded = load_sae(tmp_path / "ck").eval()
    x = torch.randn(30, 12)
    assert loaded.architecture == arch and loaded.num_latents == 40
    assert torch.equal(loaded.decode(loaded.encode(x)), sae.decode(sae.encode(x)))
    cfg = read_checkpoint_cfg(tmp_path / "ck")
    assert cfg["seed"] == 4 and cfg["hookpoint"] == "layers.3.mlp" and cfg["architecture"] == arch
    assert {"d_in", "num_latents", "activation", "saeseeds_version", "schema"} <= set(cfg)
    assert ("k" in cfg) == (arch == "topk")  # sparsify's k only where sparsify's TopK computes the same thing


def test_save_replaces_an_existing_checkpoint_whole(tmp_path: Path) -> None:
    save_sae(trained_like("topk"), tmp_path / "ck")
    save_sae(trained_like("relu"), tmp_path / "ck")
    assert load_sae(tmp_path / "ck").architecture == "relu"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_sparsify_loads_our_topk_checkpoint_and_agrees(tmp_path: Path) -> None:
    sparsify = pytest.importorskip("sparsify")
    sae = trained_like("topk")
    save_sae(sae, tmp_path / "ck")
    theirs = sparsify.SparseCoder.load_from_disk(tmp_path / "ck")
    x = torch.randn(25, 12)
    out = theirs(x)
    ours = sae.decode(sae.encode(x))
    assert torch.allclose(out.sae_out, ours, atol=1e-5)
    enc = theirs.encode(x)
    ours_dense = sae.encode_dense(x)
    theirs_dense = torch.zeros_like(ours_dense).scatter(-1, enc.top_indices, enc.top_acts)
    assert torch.allclose(theirs_dense, ours_dense, atol=1e-5)


def test_we_load_a_checkpoint_written_by_sparsify(tmp_path: Path) -> None:
    sparsify = pytest.importorskip("sparsify")
    torch.manual_seed(0)
    theirs = sparsify.SparseCoder(12, sparsify.SparseCoderConfig(num_latents=48, k=6))
    with torch.no_grad():
        theirs.b_dec.normal_()
        theirs.encoder.bias.normal_(std=0.1)
    theirs.save_to_disk(tmp_path / "sp")
    ours = load_any(tmp_path / "sp")
    x = torch.randn(20, 12)
    assert ours.architecture == "topk" and ours.cfg.k == 6
    assert torch.allclose(ours.decode(ours.encode(x)), theirs(x).sae_out, atol=1e-5)


def test_folding_the_input_scale_preserves_the_function() -> None:
    sae = trained_like("relu")
    s = 3.7
    folded = fold_input_scale(sae, s)
    x = torch.randn(10, 12)
    expected = sae.decode(sae.encode(x * s)) / s
    assert torch.allclose(folded.decode(folded.encode(x)), expected, atol=1e-5)


# --------------------------------------------------------------------------- SAELens


def saelens_checkpoint(path: Path, arch: str, *, apply_b_dec_to_input: bool, rescale: bool = False) -> dict:
    """A checkpoint in SAELens's layout: W_enc [d_in, d_sae], W_dec [d_sae, d_in], cfg.json."""
    g = torch.Generator().manual_seed(3)
    d, n = 10, 30
    t = {
        "W_enc": torch.randn(d, n, generator=g) * 0.3,
        "b_enc": torch.randn(n, generator=g) * 0.1,
        "W_dec": torch.randn(n, d, generator=g) * 0.5,
        "b_dec": torch.randn(d, generator=g),
    }
    if arch == "jumprelu":
        t["threshold"] = torch.rand(n, generator=g) * 0.2
    path.mkdir(parents=True)
    save_file(t, str(path / "sae_weights.safetensors"))
    cfg = {"architecture": arch, "d_in": d, "d_sae": n, "apply_b_dec_to_input": apply_b_dec_to_input,
           "normalize_activations": "none", "metadata": {"hook_name": "blocks.0.hook_resid_post"}}
    if arch == "topk":
        cfg["k"] = 4
        cfg["rescale_acts_by_decoder_norm"] = rescale
    (path / "cfg.json").write_text(json.dumps(cfg))
    return t


def saelens_reference(t: dict, arch: str, x: torch.Tensor, apply_b_dec: bool, rescale: bool = False) -> torch.Tensor:
    """SAELens's encode/decode equations, written out."""
    sae_in = x - t["b_dec"] * apply_b_dec
    pre = sae_in @ t["W_enc"] + t["b_enc"]
    if arch == "standard":
        acts = pre.relu()
    elif arch == "jumprelu":
        acts = pre.relu() * (pre > t["threshold"])
    else:
        if rescale:
            pre = pre * t["W_dec"].norm(dim=-1)
        top = pre.topk(4, dim=-1)
        acts = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
        if rescale:
            acts = acts / t["W_dec"].norm(dim=-1)
    return acts @ t["W_dec"] + t["b_dec"]


@pytest.mark.parametrize(
    "arch,apply_b_dec,rescale",
    [("standard", True, False), ("standard", False, False), ("jumprelu", False, False),
     ("topk", True, False), ("topk", True, True)],
)
def test_saelens_reader_reproduces_saelens_outputs(arch, apply_b_dec, rescale, tmp_path: Path) -> None:
    t = saelens_checkpoint(tmp_path / "sl", arch, apply_b_dec_to_input=apply_b_dec, rescale=rescale)
    assert detect_format(tmp_path / "sl") == "saelens"
    sae = load_any(tmp_path / "sl").eval()
    x = torch.randn(16, 10) * 2
    expected = saelens_reference(t, arch, x, apply_b_dec, rescale)
    assert torch.allclose(sae.decode(sae.encode(x)), expected, atol=1e-4)


# --------------------------------------------------------------------------- dictionary_learning


def dictlearn_checkpoint(path: Path, dict_class: str) -> dict:
    g = torch.Generator().manual_seed(5)
    d, n = 10, 24
    if dict_class == "AutoEncoder":
        state = {"encoder.weight": torch.randn(n, d, generator=g) * 0.3, "encoder.bias": torch.randn(n, generator=g) * 0.1,
                 "decoder.weight": torch.randn(d, n, generator=g) * 0.3, "bias": torch.randn(d, generator=g)}
    elif dict_class == "JumpReluAutoEncoder":
        state = {"W_enc": torch.randn(d, n, generator=g) * 0.3, "b_enc": torch.randn(n, generator=g) * 0.1,
                 "W_dec": torch.randn(n, d, generator=g) * 0.3, "b_dec": torch.randn(d, generator=g),
                 "threshold": torch.rand(n, generator=g) * 0.2}
    else:
        state = {"encoder.weight": torch.randn(n, d, generator=g) * 0.3, "encoder.bias": torch.randn(n, generator=g) * 0.1,
                 "decoder.weight": torch.randn(d, n, generator=g) * 0.3, "b_dec": torch.randn(d, generator=g),
                 "k": torch.tensor(3, dtype=torch.int), "threshold": torch.tensor(-1.0)}
    path.mkdir(parents=True)
    torch.save(state, path / "ae.pt")
    trainer = {"dict_class": dict_class, "activation_dim": d, "dict_size": n}
    if dict_class == "AutoEncoderTopK":
        trainer["k"] = 3
    (path / "config.json").write_text(json.dumps({"trainer": trainer}))
    return state


def dictlearn_reference(s: dict, dict_class: str, x: torch.Tensor) -> torch.Tensor:
    """dictionary_learning's encode/decode equations, written out."""
    if dict_class == "AutoEncoder":
        f = (( x - s["bias"]) @ s["encoder.weight"].T + s["encoder.bias"]).relu()
        return f @ s["decoder.weight"].T + s["bias"]
    if dict_class == "JumpReluAutoEncoder":
        pre = x @ s["W_enc"] + s["b_enc"]  # no b_dec subtraction in dictionary_learning's JumpReLU
        f = (pre * (pre > s["threshold"])).relu()
        return f @ s["W_dec"] + s["b_dec"]
    post = ((x - s["b_dec"]) @ s["encoder.weight"].T + s["encoder.bias"]).relu()
    top = post.topk(3, dim=-1)
    f = torch.zeros_like(post).scatter(-1, top.indices, top.values)
    return f @ s["decoder.weight"].T + s["b_dec"]


@pytest.mark.parametrize("dict_class", ["AutoEncoder", "JumpReluAutoEncoder", "AutoEncoderTopK"])
def test_dictionary_learning_reader_reproduces_outputs(dict_class: str, tmp_path: Path) -> None:
    state = dictlearn_checkpoint(tmp_path / "dl", dict_class)
    sae = load_any(tmp_path / "dl").eval()
    x = torch.randn(16, 10) * 2
    assert torch.allclose(sae.decode(sae.encode(x)), dictlearn_reference(state, dict_class, x), atol=1e-4)


# --------------------------------------------------------------------------- bad input


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_sae(tmp_path / "nope")


def test_missing_weights_file(tmp_path: Path) -> None:
    save_sae(trained_like("topk"), tmp_path / "ck")
    (tmp_path / "ck" / "sae.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"sae\.safetensors is missing"):
        load_sae(tmp_path / "ck")


def test_corrupt_weights_file(tmp_path: Path) -> None:
    save_sae(trained_like("topk"), tmp_path / "ck")
    (tmp_path / "ck" / "sae.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_sae(tmp_path / "ck")


def test_corrupt_cfg(tmp_path: Path) -> None:
    save_sae(trained_like("topk"), tmp_path / "ck")
    (tmp_path / "ck" / "cfg.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"cfg\.json is not valid JSON"):
        load_sae(tmp_path / "ck")


def test_shape_mismatch_names_the_tensor(tmp_path: Path) -> None:
    sae = trained_like("topk")
    save_sae(sae, tmp_path / "ck")
    tensors = {"encoder.weight": sae.encoder.weight.detach(), "encoder.bias": sae.encoder.bias.detach(),
               "W_dec": sae.W_dec.detach()[:, :5].contiguous(), "b_dec": sae.b_dec.detach()}
    save_file(tensors, str(tmp_path / "ck" / "sae.safetensors"))
    with pytest.raises(CheckpointError, match="W_dec"):
        load_sae(tmp_path / "ck")


def test_unknown_directory_contents(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(CheckpointError, match="holds no SAE checkpoint"):
        load_any(tmp_path / "x")


def test_cfg_json_holds_only_sparsify_keys_and_ours_lie_beside_it(tmp_path: Path) -> None:
    save_sae(trained_like("topk"), tmp_path / "ck", hookpoint="h.1.mlp", model="m", seed=3)
    plain = json.loads((tmp_path / "ck" / CFG_FILE).read_text())
    ours = json.loads((tmp_path / "ck" / EXTRA_FILE).read_text())
    assert set(plain) <= set(SPARSIFY_KEYS) and {"d_in", "k", "activation"} <= set(plain)
    assert list(ours)[:1] == ["schema"] and ours["seed"] == 3 and not set(ours) & set(plain)
    assert read_checkpoint_cfg(tmp_path / "ck") == plain | ours


def test_a_checkpoint_with_every_key_in_cfg_json_still_loads(tmp_path: Path) -> None:
    sae = trained_like("jumprelu")
    save_sae(sae, tmp_path / "ck", seed=1)
    merged = read_checkpoint_cfg(tmp_path / "ck")
    (tmp_path / "ck" / EXTRA_FILE).unlink()  # the layout before the split: one cfg.json with our keys too
    (tmp_path / "ck" / CFG_FILE).write_text(json.dumps(merged))
    loaded = load_sae(tmp_path / "ck")
    x = torch.randn(20, 12)
    assert loaded.architecture == "jumprelu" and torch.equal(loaded.decode(loaded.encode(x)), sae.decode(sae.encode(x)))


def test_sparsify_loads_a_run_config_folder_without_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    sparsify = pytest.importorskip("sparsify")
    config_dir = tmp_path / "run" / "h.1.mlp" / "topk-40"
    for seed in (0, 1):
        save_sae(trained_like("topk"), config_dir / f"seed{seed}", hookpoint="h.1.mlp", model="m", seed=seed,
                 input_scale=1.5, data={"revision": "main", "exclude_special_tokens": True, "special_token_ids": [0]})
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sparsify's "Dropping extra args" is a warning
        coders = sparsify.SparseCoder.load_many(str(config_dir), local=True)
    assert sorted(coders) == ["seed0", "seed1"]
    captured = capfd.readouterr()
    assert "Dropping" not in captured.out + captured.err + caplog.text
