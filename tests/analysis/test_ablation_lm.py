"""Ablation through the LM splice: a perfect reconstruction gives the clean loss, ablating all gives b_dec's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from saeseeds.analysis.ablation import ablation_lm_loss, build_ablation_sets
from saeseeds.config import SaeConfig
from saeseeds.sae.model import SparseAutoencoder

D = 32
HOOK = "transformer.h.1.mlp"


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoModelForCausalLM

    from helpers.tiny_lm import build_tiny_causal_lm

    docs = [f"the cat {w} sat on the mat number {i} while dogs {w} ran" for i, w in enumerate("abcdefghij" * 3)]
    path = build_tiny_causal_lm(Path(tmp_path_factory.mktemp("lm")), docs, d_model=D, n_layer=2)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    vocab = model.config.vocab_size
    chunks = torch.randint(3, vocab, (6, 12), generator=torch.Generator().manual_seed(0))
    return model, chunks


def _identity_sae(b_dec: torch.Tensor | None = None) -> SparseAutoencoder:
    """ReLU SAE with latents ±e_i: relu(x) − relu(−x) = x, a perfect reconstruction (b_dec added to both ends)."""
    sae = SparseAutoencoder(SaeConfig(architecture="relu", num_latents=2 * D), D)
    eye = torch.eye(D)
    with torch.no_grad():
        sae.encoder.weight.copy_(torch.cat([eye, -eye]))
        sae.encoder.bias.zero_()
        sae.W_dec.copy_(torch.cat([eye, -eye]))
        sae.b_dec.copy_(torch.zeros(D) if b_dec is None else b_dec)
    return sae.eval()


def test_perfect_reconstruction_gives_clean_loss_and_full_ablation_gives_b_dec_loss(tiny_lm) -> None:
    model, chunks = tiny_lm
    stable = torch.zeros(2 * D, dtype=torch.bool)
    stable[:D] = True  # the positive halves
    sets = build_ablation_sets(stable, ~stable, n_random=1, generator=torch.Generator().manual_seed(0))
    res = ablation_lm_loss(_identity_sae(), model, chunks, HOOK, sets, batch_size=4)
    none, full, half = res["none"], res["all"], res["stable"]
    assert none["ce"] == pytest.approx(none["ce_clean"], abs=1e-5)
    assert none["kl"] == pytest.approx(0.0, abs=1e-6)
    assert none["loss_recovered"] == pytest.approx(1.0, abs=1e-4)
    # with b_dec = 0, ablating every latent is exactly the zero-ablation
    assert full["ce"] == pytest.approx(full["ce_zero"], abs=1e-5)
    assert full["loss_recovered"] == pytest.approx(0.0, abs=1e-4)
    assert abs(full["ce_zero"] - full["ce_clean"]) > 1e-3  # the splice really changes the model
    assert abs(half["ce"] - none["ce"]) > 1e-4


def test_full_ablation_with_a_decoder_bias_splices_the_bias(tiny_lm) -> None:
    model, chunks = tiny_lm
    sae = _identity_sae(b_dec=torch.randn(D, generator=torch.Generator().manual_seed(1)))
    sets = build_ablation_sets(torch.zeros(2 * D, dtype=torch.bool), torch.zeros(2 * D, dtype=torch.bool), n_random=1)
    res = ablation_lm_loss(sae, model, chunks, HOOK, sets, batch_size=4)
    assert res["none"]["ce"] == pytest.approx(res["none"]["ce_clean"], abs=1e-5)  # b_dec cancels
    assert res["all"]["ce"] != pytest.approx(res["all"]["ce_zero"], abs=1e-4)  # the constant b_dec, not zeros
