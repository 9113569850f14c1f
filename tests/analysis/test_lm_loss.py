"""The splice: a perfect reconstruction leaves the loss unchanged, the hook really replaces the activation,
and loss recovered follows the docs/definitions.md definition."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

from saeseeds.analysis.lm_loss import (
    evaluate_lm_loss,
    lm_loss_with_replacement,
    sae_replace_fn,
    zero_replace_fn,
)
from saeseeds.config import SaeConfig
from saeseeds.errors import DataError
from saeseeds.sae import SparseAutoencoder

HOOK = "transformer.h.1.mlp"
D = 16


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50, n_positions=16, n_embd=D, n_layer=3, n_head=2, initializer_range=0.5)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def chunks():
    return torch.randint(1, 50, (6, 12), generator=torch.Generator().manual_seed(1))


def identity_sae() -> SparseAutoencoder:
    """A topk SAE that reconstructs exactly: latents [x]+ and [−x]+, decoder rows ±e_i, k = d."""
    sae = SparseAutoencoder(SaeConfig(architecture="topk", num_latents=2 * D, k=D), D)
    eye = torch.eye(D)
    with torch.no_grad():
        sae.encoder.weight.copy_(torch.cat([eye, -eye]))
        sae.encoder.bias.zero_()
        sae.W_dec.copy_(torch.cat([eye, -eye]))
        sae.b_dec.zero_()
    return sae


def test_identity_replacement_leaves_the_loss_unchanged(model, chunks):
    result = lm_loss_with_replacement(model, chunks, HOOK, lambda a: a.clone())
    assert result.ce == pytest.approx(result.ce_clean, abs=1e-6)
    assert result.kl == pytest.approx(0.0, abs=1e-6)
    assert result.tokens == chunks.numel() - chunks.shape[0]


def test_perfect_sae_reconstruction_recovers_all_the_loss(model, chunks):
    report = evaluate_lm_loss(model, chunks, HOOK, {"sae": sae_replace_fn(identity_sae())})["sae"]
    assert abs(report.ce_zero - report.ce_clean) > 0.01 and report.kl_zero > 0.1  # ablation matters here
    assert report.ce_replaced == pytest.approx(report.ce_clean, abs=1e-5)
    assert report.loss_recovered == pytest.approx(1.0, abs=1e-3)
    assert report.kl_recovered == pytest.approx(1.0, abs=1e-3)


def test_the_hook_really_replaces_the_activation(model, chunks):
    seen = []

    def zero_and_record(activation):
        seen.append(activation.shape)
        return torch.zeros_like(activation)

    zeroed = lm_loss_with_replacement(model, chunks, HOOK, zero_and_record, batch_size=4)
    assert seen == [(4, 12, D), (2, 12, D)]
    assert zeroed.ce != pytest.approx(zeroed.ce_clean) and zeroed.kl > 0
    # replacing by zeros by hand gives the same loss as the zero-ablation reference
    report = evaluate_lm_loss(model, chunks, HOOK, {"manual": zero_replace_fn})["manual"]
    assert report.ce_replaced == pytest.approx(report.ce_zero) and report.loss_recovered == pytest.approx(0.0)
    assert not model.transformer.h[1].mlp._forward_hooks  # removed after use


def test_ablating_every_latent_equals_replacing_by_the_decoder_bias(model, chunks):
    sae = identity_sae()
    every = torch.ones(sae.num_latents, dtype=torch.bool)
    ablated = evaluate_lm_loss(model, chunks, HOOK, {"all": sae_replace_fn(sae, every)})["all"]
    assert ablated.ce_replaced == pytest.approx(ablated.ce_zero, abs=1e-5)  # b_dec = 0 here
    half = torch.zeros(sae.num_latents, dtype=torch.bool)
    half[:D] = True  # removes the positive parts only
    partial = evaluate_lm_loss(model, chunks, HOOK, {"half": sae_replace_fn(sae, half)})["half"]
    assert partial.ce_replaced != pytest.approx(partial.ce_clean, abs=1e-4)


def test_special_token_positions_keep_their_activation(model):
    chunks = torch.tensor([[0, 5, 6, 7, 0, 8, 9, 10]])
    seen = {}

    def record(activation):
        seen["a"] = activation
        return torch.zeros_like(activation)

    with_special = lm_loss_with_replacement(model, chunks, HOOK, record, special_ids=[0])
    assert with_special.tokens == 6  # targets equal to the special token 0 are not scored
    without = lm_loss_with_replacement(model, chunks, HOOK, zero_replace_fn)
    assert with_special.ce != pytest.approx(without.ce)


def test_a_model_without_a_next_token_head_is_refused(chunks):
    encoder = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=32)).eval()
    with pytest.raises(DataError, match="causal"):
        lm_loss_with_replacement(encoder, chunks, "encoder.layer.0.output", zero_replace_fn)


def test_bad_replacement_shape_is_reported(model, chunks):
    with pytest.raises(DataError, match="shape"):
        lm_loss_with_replacement(model, chunks, HOOK, lambda a: a[..., :3])
