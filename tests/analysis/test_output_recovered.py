"""Output recovered (docs/definitions.md) on any model: a perfect reconstruction gives 1 and MSE 0, zeros give 0,
a partial one lies between; encoders use their (sentence-transformers) pooled output, causal LMs the mean of
the final hidden state; special-token positions keep their clean activation."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel, GPT2Config, GPT2LMHeadModel

from helpers.tiny_encoder import build_tiny_bert, save_sentence_transformer
from saeseeds.analysis.ablation import AblationSet
from saeseeds.analysis.lm_loss import sae_replace_fn, zero_replace_fn
from saeseeds.analysis.output_recovered import (
    OutputPooling,
    ablation_output_recovered,
    evaluate_output_recovered,
    output_pooling,
    read_pooling_config,
)
from saeseeds.config import SaeConfig
from saeseeds.errors import DataError
from saeseeds.sae import SparseAutoencoder

D = 16
BERT_HOOK = "encoder.layer.1.output.dense"
GPT_HOOK = "transformer.h.1.mlp"


@pytest.fixture(scope="module")
def bert():
    return build_tiny_bert(d_model=D)


@pytest.fixture(scope="module")
def gpt():
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


def half_mask() -> torch.Tensor:
    """Removes both signs of the first D/2 coordinates: a partial reconstruction."""
    mask = torch.zeros(2 * D, dtype=torch.bool)
    mask[: D // 2] = True
    mask[D : D + D // 2] = True
    return mask


@pytest.mark.parametrize("which", ["bert", "gpt"])
def test_perfect_zero_and_partial_replacements(which, bert, gpt, chunks):
    model, hook = (bert, BERT_HOOK) if which == "bert" else (gpt, GPT_HOOK)
    sae = identity_sae()
    fns = {"perfect": sae_replace_fn(sae), "zero": zero_replace_fn, "partial": sae_replace_fn(sae, half_mask())}
    reports = evaluate_output_recovered(model, chunks, hook, fns, batch_size=4)
    perfect, zero, partial = reports["perfect"], reports["zero"], reports["partial"]
    assert perfect.output_mse_zero > 1e-4  # the ablation changes the output here
    assert perfect.output_mse == pytest.approx(0.0, abs=1e-9)
    assert perfect.output_recovered == pytest.approx(1.0, abs=1e-5)
    assert zero.output_mse == pytest.approx(zero.output_mse_zero, rel=1e-6)
    assert zero.output_recovered == pytest.approx(0.0, abs=1e-5)
    assert 0.0 < partial.output_recovered < 1.0
    assert perfect.sequences == chunks.shape[0]
    assert "mean pooling of the last hidden state" in perfect.pooling  # no sentence-transformers config here


def test_output_is_the_mean_pooled_final_hidden_state(gpt, chunks):
    """The causal-LM output is mean(hidden_states[-1]) over positions (after ln_f), not the logits."""
    fn = lambda a: a * 0.5  # noqa: E731
    report = evaluate_output_recovered(gpt, chunks, GPT_HOOK, {"half": fn})["half"]
    with torch.no_grad():
        clean = gpt(input_ids=chunks, output_hidden_states=True).hidden_states[-1].mean(1)
        handle = gpt.get_submodule(GPT_HOOK).register_forward_hook(lambda _m, _i, out: fn(out))
        try:
            halved = gpt(input_ids=chunks, output_hidden_states=True).hidden_states[-1].mean(1)
        finally:
            handle.remove()
    expected = float(((halved - clean) ** 2).sum(-1).mean())
    assert report.output_mse == pytest.approx(expected, rel=1e-5)
    assert report.clean_norm_sq == pytest.approx(float((clean**2).sum(-1).mean()), rel=1e-5)


def test_sentence_transformers_pooling_is_read_from_the_model_directory(bert, chunks, tmp_path):
    path = save_sentence_transformer(bert, tmp_path / "st", pooling="mean", normalize=True)
    loaded = AutoModel.from_pretrained(path).eval()
    pooling = output_pooling(loaded)
    assert pooling.modes == ("mean",) and pooling.normalize
    reports = evaluate_output_recovered(
        loaded, chunks, BERT_HOOK, {"perfect": sae_replace_fn(identity_sae()), "zero": zero_replace_fn}
    )
    assert reports["perfect"].clean_norm_sq == pytest.approx(1.0, abs=1e-5)  # L2-normalised embeddings
    assert reports["perfect"].output_recovered == pytest.approx(1.0, abs=1e-5)
    assert reports["zero"].output_recovered == pytest.approx(0.0, abs=1e-5)
    assert "L2-normalise" in reports["perfect"].pooling
    cls_dir = save_sentence_transformer(bert, tmp_path / "cls", pooling="cls", normalize=False)
    assert read_pooling_config(cls_dir) == OutputPooling(("cls",), False, "cls/modules.json")
    assert read_pooling_config(tmp_path) is None  # no modules.json
    assert output_pooling(bert) == OutputPooling()  # built in memory: mean, no normalisation


def test_unsupported_pooling_is_refused(bert, tmp_path):
    path = save_sentence_transformer(bert, tmp_path / "w", pooling="mean")
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_weightedmean_tokens": True}))
    with pytest.raises(DataError, match="unsupported pooling"):
        read_pooling_config(path)


def test_special_token_positions_keep_their_activation(bert, gpt):
    special = 3
    chunks = torch.tensor([[special, 5, 6, 7, special, 8, 9, 10], [special, 11, 12, 13, 14, 15, 16, 17]])
    # encoder: what the module after the hookpoint receives is clean at special positions, zero elsewhere
    seen = []
    after = bert.get_submodule("encoder.layer.1.output.dropout")
    handle = after.register_forward_hook(lambda _m, args, _o: seen.append(args[0].clone()))
    try:
        evaluate_output_recovered(bert, chunks, BERT_HOOK, {"zero": zero_replace_fn}, special_ids=[special])
    finally:
        handle.remove()
    clean, zeroed, replaced = seen  # clean pass, the __zero__ reference, then "zero"
    is_special = chunks == special
    assert torch.equal(replaced[is_special], clean[is_special]) and clean[is_special].abs().sum() > 0
    assert torch.equal(replaced[~is_special], torch.zeros_like(replaced[~is_special]))
    assert torch.equal(zeroed, replaced)
    # causal LM: position 0's output depends on position 0 alone, so it stays clean when position 0 is special
    first = OutputPooling(("cls",))
    kept = evaluate_output_recovered(gpt, chunks, GPT_HOOK, {"z": zero_replace_fn}, special_ids=[special],
                                     pooling=first)["z"]
    assert kept.output_mse_zero == pytest.approx(0.0, abs=1e-12)
    changed = evaluate_output_recovered(gpt, chunks, GPT_HOOK, {"z": zero_replace_fn}, pooling=first)["z"]
    assert changed.output_mse_zero > 1e-4


def test_ablation_output_recovered(bert, chunks):
    sae = identity_sae()
    n = sae.num_latents
    sets = [
        AblationSet("none", "control", torch.zeros(n, dtype=torch.bool)),
        AblationSet("half", "stable", half_mask()),
        AblationSet("all", "control", torch.ones(n, dtype=torch.bool)),
    ]
    out = ablation_output_recovered(sae, bert, chunks, BERT_HOOK, sets, batch_size=4)
    assert set(out) == {"none", "half", "all"}
    assert out["none"]["output_mse"] == pytest.approx(0.0, abs=1e-9)
    assert out["none"]["output_recovered"] == pytest.approx(1.0, abs=1e-5)
    assert out["all"]["output_recovered"] == pytest.approx(0.0, abs=1e-5)  # b_dec = 0: the zero ablation
    assert 0.0 < out["half"]["output_recovered"] < 1.0
    assert out["half"]["output_mse"] > 0


def test_reserved_name_and_bad_chunks_are_refused(bert):
    with pytest.raises(DataError, match="reserved"):
        evaluate_output_recovered(bert, torch.ones(2, 4, dtype=torch.int64), BERT_HOOK, {"__zero__": zero_replace_fn})
    with pytest.raises(DataError, match="chunks"):
        evaluate_output_recovered(bert, torch.ones(4, dtype=torch.int64), BERT_HOOK, {"x": zero_replace_fn})
