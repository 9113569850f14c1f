"""Checkpoint format 2: unit-norm decoders with the input scale folded into biases and thresholds, what cfg.json
records, format-1 checkpoints still loading identically, and what foreign loaders (real sparsify) do with each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from saeseeds.config import SaeConfig
from saeseeds.errors import CheckpointError
from saeseeds.sae import SparseAutoencoder, fold_input_scale, load_any, load_sae, save_sae
from saeseeds.sae.checkpoint import _fold, read_checkpoint_cfg

ARCHS = ["topk", "batchtopk", "relu", "jumprelu"]
SCALE = 2.0794  # 1 / 0.481, the demo's measured input scale
DATA = {"model": "sentence-transformers/all-MiniLM-L6-v2", "revision": "abc", "hook_input": False,
        "exclude_special_tokens": True, "special_token_ids": [0, 101, 102]}


def trained(arch: str, d: int = 12, n: int = 40, k: int = 5) -> SparseAutoencoder:
    """An SAE as the trainer leaves it: unit decoder rows, non-trivial biases and thresholds (scaled space)."""
    g = torch.Generator().manual_seed(11)
    sae = SparseAutoencoder(SaeConfig(architecture=arch, num_latents=n, k=k), d, generator=g)
    with torch.no_grad():
        sae.encoder.weight.add_(torch.randn(n, d, generator=g) * 0.2)
        sae.encoder.bias.copy_(torch.randn(n, generator=g) * 0.3)
        sae.b_dec.copy_(torch.randn(d, generator=g))
        if arch == "jumprelu":
            sae.log_threshold.copy_((torch.rand(n, generator=g) * 0.5 + 0.05).log())
        if arch == "batchtopk":
            sae.threshold.fill_(0.4)
    return sae.eval()


def raw_batch(d: int = 12, rows: int = 200) -> torch.Tensor:
    """Raw activations (the trained SAE saw them multiplied by SCALE)."""
    return torch.randn(rows, d, generator=torch.Generator().manual_seed(5)) * 0.5 + 0.2


@pytest.mark.parametrize("arch", ARCHS)
def test_saved_decoder_is_unit_norm_and_the_sae_matches_the_trained_one(arch: str, tmp_path: Path) -> None:
    sae = trained(arch)
    save_sae(sae, tmp_path / "ck", hookpoint="encoder.layer.3", model=DATA["model"], seed=2, input_scale=SCALE,
             data=DATA)
    loaded = load_sae(tmp_path / "ck").eval()
    norms = loaded.W_dec.detach().norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-6)
    x = raw_batch()
    with torch.no_grad():
        ref_latents = sae.encode_dense(x * SCALE)
        ref_out = sae.decode_dense(ref_latents) / SCALE
        latents = loaded.encode_dense(x)
        out = loaded.decode_dense(latents)
    assert torch.equal(latents > 0, ref_latents > 0)  # the same latents fire on every token
    assert 0 < int((latents > 0).sum()) < latents.numel()
    assert torch.allclose(latents, ref_latents / SCALE, atol=1e-5)  # values 1/s of the trained SAE's
    assert torch.allclose(out, ref_out, atol=1e-5)  # reconstruction of raw activations unchanged
    assert torch.allclose(loaded.decode(loaded.encode(x)), ref_out, atol=1e-5)


def test_cfg_records_hookpoint_model_special_tokens_and_scale(tmp_path: Path) -> None:
    save_sae(trained("jumprelu"), tmp_path / "ck", hookpoint="encoder.layer.3", model=DATA["model"], seed=2,
             input_scale=SCALE, data=DATA)
    cfg = read_checkpoint_cfg(tmp_path / "ck")
    assert cfg["schema"] == "saeseeds.checkpoint/2"
    assert cfg["normalize_decoder"] is True
    assert cfg["hookpoint"] == "encoder.layer.3" and cfg["model"] == DATA["model"] and cfg["model_revision"] == "abc"
    assert cfg["exclude_special_tokens"] is True and cfg["special_token_ids"] == [0, 101, 102]
    assert cfg["hook_input"] is False
    assert cfg["input_scale"] == SCALE and cfg["input_scale_folded_into"] == "encoder.bias, b_dec, threshold"
    assert "k" not in cfg and cfg["activation"] == "jumprelu"


def test_an_architecture_without_declared_thresholds_folds_into_the_weights(tmp_path: Path) -> None:
    sae = trained("relu")
    sae.spec = type(sae.spec)()  # a spec with an extra tensor it does not declare as a threshold
    sae.spec.latent_unit_tensors = ()
    sae.spec.checkpoint_tensors = lambda s: {"cap": torch.ones(s.num_latents)}  # type: ignore[method-assign]
    folded, took_scale = _fold(sae, SCALE)
    assert took_scale == ("encoder.weight", "W_dec", "b_dec")  # exact for any activation: pre-activations unchanged
    assert torch.allclose(folded.W_dec.norm(dim=1), torch.full((40,), 1 / SCALE), atol=1e-6)
    x = raw_batch()
    with torch.no_grad():
        assert torch.allclose(folded.encode_dense(x), sae.encode_dense(x * SCALE), atol=1e-5)


def old_format_checkpoint(sae: SparseAutoencoder, path: Path, scale: float) -> None:
    """A checkpoint exactly as saeseeds wrote it before format 2: encoder × s, decoder and b_dec ÷ s, k always."""
    tensors = {"encoder.weight": sae.encoder.weight.detach() * scale, "encoder.bias": sae.encoder.bias.detach(),
               "W_dec": sae.W_dec.detach() / scale, "b_dec": sae.b_dec.detach() / scale}
    tensors |= {name: t.detach() for name, t in sae.spec.checkpoint_tensors(sae).items()}
    path.mkdir()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "sae.safetensors"))
    cfg = {"activation": sae.architecture, "expansion_factor": 8, "normalize_decoder": True,
           "num_latents": sae.num_latents, "k": sae.cfg.k, "multi_topk": False, "skip_connection": False,
           "transcode": False, "d_in": sae.d_in, "architecture": sae.architecture, "seed": 0, "hookpoint": "h",
           "model": "m", "saeseeds_version": "0.1.0",
           "saeseeds_config": {"architecture": sae.architecture, "num_latents": sae.num_latents, "k": sae.cfg.k}}
    (path / "cfg.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("arch", ARCHS)
def test_old_format_checkpoints_still_load_identically(arch: str, tmp_path: Path) -> None:
    sae = trained(arch)
    old_format_checkpoint(sae, tmp_path / "old", SCALE)
    loaded = load_any(tmp_path / "old").eval()
    x = raw_batch()
    with torch.no_grad():
        ref_latents = sae.encode_dense(x * SCALE)
        latents = loaded.encode_dense(x)
        out = loaded.decode_dense(latents)
    assert torch.allclose(latents, ref_latents, atol=1e-5)  # format 1 kept the trained latent values
    assert torch.allclose(out, sae.decode_dense(ref_latents) / SCALE, atol=1e-5)
    assert torch.allclose(loaded.W_dec.norm(dim=1), torch.full((40,), 1 / SCALE), atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_fold_then_unfold_is_the_identity(arch: str) -> None:
    sae = trained(arch)
    back = fold_input_scale(fold_input_scale(sae, SCALE), 1 / SCALE).eval()
    x = raw_batch()
    with torch.no_grad():
        assert torch.allclose(back.encode_dense(x), sae.encode_dense(x), atol=1e-5)
    for name, t in sae.state_dict().items():
        assert torch.allclose(back.state_dict()[name], t, atol=1e-5), name


def test_sparsify_loads_a_scaled_topk_checkpoint_bit_for_bit(tmp_path: Path) -> None:
    sparsify = pytest.importorskip("sparsify")
    save_sae(trained("topk"), tmp_path / "ck", input_scale=SCALE, data=DATA)
    ours = load_sae(tmp_path / "ck").eval()
    theirs = sparsify.SparseCoder.load_from_disk(tmp_path / "ck")
    x = raw_batch()
    with torch.no_grad():
        enc = theirs.encode(x)
        code = ours.encode(x)
        out = theirs(x).sae_out
    dense_theirs = torch.zeros(200, 40).scatter(-1, enc.top_indices, enc.top_acts)
    dense_ours = torch.zeros(200, 40).scatter(-1, code.indices, code.values)
    assert torch.equal(dense_theirs, dense_ours)
    assert torch.allclose(out, ours.decode(code), atol=1e-6)
    assert theirs.cfg.normalize_decoder and torch.allclose(theirs.W_dec.norm(dim=1), torch.ones(40), atol=1e-6)


@pytest.mark.parametrize("arch", ["relu", "jumprelu", "batchtopk"])
def test_sparsify_refuses_other_architectures_loudly(arch: str, tmp_path: Path) -> None:
    sparsify = pytest.importorskip("sparsify")
    save_sae(trained(arch), tmp_path / "ck", input_scale=SCALE)
    with pytest.raises(TypeError, match=arch):  # sparsify's `activation` Literal
        sparsify.SparseCoder.load_from_disk(tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "cfg.json").read_text())
    assert "k" not in cfg  # SAELens's sparsify loader needs cfg["k"]: KeyError instead of a silent TopK


@pytest.mark.parametrize("flag", ["transcode", "skip_connection"])
def test_sparsify_transcoders_and_skip_connections_are_refused_in_one_line(flag: str, tmp_path: Path) -> None:
    sparsify = pytest.importorskip("sparsify")
    torch.manual_seed(0)
    coder = sparsify.SparseCoder(12, sparsify.SparseCoderConfig(num_latents=24, k=3, **{flag: True}))
    coder.save_to_disk(tmp_path / "sp")
    with pytest.raises(CheckpointError) as err:
        load_any(tmp_path / "sp")
    text = str(err.value)
    assert "\n" not in text and "cfg.json" in text
    assert ("transcoder" in text) if flag == "transcode" else ("W_skip" in text)


def test_a_newer_checkpoint_schema_is_refused(tmp_path: Path) -> None:
    save_sae(trained("topk"), tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "cfg.json").read_text())
    (tmp_path / "ck" / "cfg.json").write_text(json.dumps(cfg | {"schema": "saeseeds.checkpoint/9"}))
    with pytest.raises(CheckpointError, match="newer"):
        load_sae(tmp_path / "ck")


def test_saelens_gated_is_named_as_unsupported(tmp_path: Path) -> None:
    (tmp_path / "g").mkdir()
    save_file({"W_enc": torch.zeros(4, 8), "b_gate": torch.zeros(8), "W_dec": torch.zeros(8, 4),
               "b_dec": torch.zeros(4)}, str(tmp_path / "g" / "sae_weights.safetensors"))
    (tmp_path / "g" / "cfg.json").write_text(json.dumps({"architecture": "gated", "d_in": 4, "d_sae": 8}))
    with pytest.raises(CheckpointError, match="architecture 'gated' is not supported"):
        load_any(tmp_path / "g")
