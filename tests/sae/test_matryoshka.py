"""Matryoshka BatchTopK (issue 27): each nested prefix reconstructs as the loss claims, defaults, checkpoints, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from saeseeds.config import SaeConfig, TrainConfig
from saeseeds.sae import SparseAutoencoder, load_sae, save_sae
from saeseeds.sae.export import saelens_architecture, saelens_tensors
from saeseeds.sae.matryoshka import prefix_fvus, resolved_prefixes
from saeseeds.training.batched import SingleMember, make_groups
from saeseeds.training.member import Member

pytestmark = pytest.mark.usefixtures("one_thread")
D_IN, LATENTS, K = 12, 48, 4


def batch(rows: int = 128, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, D_IN, generator=g) + 0.5


def sae(prefixes: list[int], seed: int = 0) -> SparseAutoencoder:
    cfg = SaeConfig(architecture="matryoshka", num_latents=LATENTS, k=K, matryoshka_prefixes=prefixes)
    return SparseAutoencoder(cfg, D_IN, generator=torch.Generator().manual_seed(seed))


def fvu(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    return (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()


def test_the_loss_is_the_sum_of_each_prefix_reconstructing_alone() -> None:
    """By hand: the code once over all latents, then x̂_m = z[:, :m] W_dec[:m] + b_dec for every prefix m."""
    model, x = sae([6, 12, 24]), batch()
    with torch.no_grad():
        model.b_dec.copy_(x.mean(0))
    model.train()
    out = model(x)
    z = model.encode_dense(x)  # the same batch-level code (training mode)
    by_hand = [fvu(x, z[:, :m] @ model.W_dec[:m] + model.b_dec) for m in (6, 12, 24, LATENTS)]
    assert torch.allclose(out.recon_loss, torch.stack(by_hand).sum(), rtol=1e-5)
    assert torch.allclose(out.fvu, by_hand[-1], rtol=1e-5)  # the reported FVU is the whole dictionary's
    assert [m for m, _ in prefix_fvus(model, x)] == [6, 12, 24, LATENTS]
    assert torch.allclose(torch.stack([f for _, f in prefix_fvus(model, x)]), torch.stack(by_hand), rtol=1e-5)


def test_a_prefix_without_the_needed_latents_costs_its_whole_variance() -> None:
    """Planted: latents < 16 have zero encoder and decoder rows, so every inner prefix reconstructs only b_dec (the
    mean: FVU exactly 1); the loss is 3 + the full FVU. Ignoring the prefixes would give the full FVU alone."""
    model, x = sae([4, 8, 16]), batch()
    with torch.no_grad():
        model.b_dec.copy_(x.mean(0))
        model.encoder.weight[:16] = 0
        model.W_dec[:16] = 0
    model.train()
    out = model(x)
    assert torch.allclose(out.recon_loss - out.fvu, torch.tensor(3.0), atol=1e-5)


def test_prefix_training_changes_what_the_first_latents_learn() -> None:
    """The same seed and batches with and without inner prefixes: the loss differs, so do the first latents."""
    cfg = TrainConfig(batch_size=128, num_tokens=128 * 6, lr=1e-2, lr_warmup_steps=0)
    members = [Member.create("h", SaeConfig(architecture=a, num_latents=LATENTS, k=K, matryoshka_prefixes=p), 0,
                             D_IN, cfg, 6, torch.device("cpu")) for a, p in (("matryoshka", [6]), ("batchtopk", []))]
    for t in range(6):
        stats = [m.step(batch(seed=t), t) for m in members]
    assert stats[0].loss > stats[1].loss
    assert not torch.allclose(members[0].sae.W_dec[:6], members[1].sae.W_dec[:6])


def test_default_prefixes_halve_and_num_latents_is_always_last() -> None:
    assert resolved_prefixes(SaeConfig(matryoshka_prefixes=[]), 64) == (4, 8, 16, 32, 64)
    assert resolved_prefixes(SaeConfig(matryoshka_prefixes=[8, 32]), 64) == (8, 32, 64)
    assert resolved_prefixes(SaeConfig(matryoshka_prefixes=[8, 64]), 64) == (8, 64)
    assert resolved_prefixes(SaeConfig(matryoshka_prefixes=[]), 8) == (1, 2, 4, 8)


def test_checkpoint_is_an_ordinary_batchtopk_one_plus_its_prefixes(tmp_path: Path) -> None:
    model, x = sae([6, 24]), batch()
    model.train()
    model(x)  # estimates the inference threshold
    model.eval()
    save_sae(model, tmp_path / "ck", input_scale=2.0)
    cfg_json = json.loads((tmp_path / "ck" / "cfg.json").read_text())
    extra = json.loads((tmp_path / "ck" / "saeseeds.json").read_text())
    assert cfg_json["activation"] == "batchtopk" and "k" not in cfg_json
    assert extra["architecture"] == "matryoshka" and extra["saeseeds_config"]["matryoshka_prefixes"] == [6, 24]
    loaded = load_sae(tmp_path / "ck").eval()
    assert loaded.architecture == "matryoshka" and loaded.cfg.matryoshka_prefixes == [6, 24]
    with torch.no_grad():  # raw activations x / 2 in, the trained SAE's reconstruction / 2 out
        assert torch.allclose(loaded.decode_dense(loaded.encode_dense(x / 2)),
                              model.decode_dense(model.encode_dense(x)) / 2, atol=1e-5)
    assert saelens_architecture(loaded) == "jumprelu"
    assert set(saelens_tensors(loaded)) == {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"}


def test_seeds_without_a_batched_path_train_one_by_one() -> None:
    cfg = TrainConfig(batch_size=64, num_tokens=64, batched_seeds=True)
    members = [Member.create("h", SaeConfig(architecture="matryoshka", num_latents=LATENTS, k=K), seed, D_IN, cfg, 1,
                             torch.device("cpu")) for seed in (0, 1)]
    groups = make_groups(members, batched=True)
    assert [type(g) for g in groups] == [SingleMember, SingleMember]


def test_export_writes_it_as_saelens_jumprelu(tmp_path: Path) -> None:
    """`saeseeds export --format saelens` of a matryoshka checkpoint (its manifest named the architecture by
    our name, which has no SAELens entry of its own: KeyError before)."""
    from saeseeds.api.exporting import export

    model, x = sae([6, 24]), batch()
    model.train()
    model(x)
    save_sae(model.eval(), tmp_path / "ck")
    manifest = json.loads(export(tmp_path / "ck", tmp_path / "out").read_text())
    assert [(e["architecture"], e["saelens_architecture"]) for e in manifest["saes"]] == [("matryoshka", "jumprelu")]
    sae_lens = pytest.importorskip("sae_lens")
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "out"))
    ours = load_sae(tmp_path / "ck").eval()
    with torch.no_grad():
        assert torch.allclose(theirs(x), ours.decode_dense(ours.encode_dense(x)), atol=1e-5)
