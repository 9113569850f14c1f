"""Hookpoint resolution (exact, wildcards, close-match errors), input vs output capture, and early exit."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from saeseeds.data.hookpoints import capture_activations, hook_module, resolve_hookpoints
from saeseeds.errors import DataError


@pytest.fixture(scope="module")
def model() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=4, n_head=2)
    return GPT2LMHeadModel(config).eval()


def test_exact_names_resolve_in_module_order(model):
    got = resolve_hookpoints(model, ["transformer.h.2.mlp", "transformer.h.0"])
    assert got == ["transformer.h.0", "transformer.h.2.mlp"]


def test_wildcard_expands_to_every_layer_within_one_segment(model):
    assert resolve_hookpoints(model, ["transformer.h.*.mlp"]) == [f"transformer.h.{i}.mlp" for i in range(4)]
    assert resolve_hookpoints(model, ["transformer.h.[1-2]"]) == ["transformer.h.1", "transformer.h.2"]
    # '*' never crosses a dot: 'transformer.*' is only the direct children
    assert "transformer.h.0" not in resolve_hookpoints(model, ["transformer.*"])


def test_duplicates_are_merged(model):
    assert resolve_hookpoints(model, ["transformer.h.1.mlp", "transformer.h.*.mlp"]).count("transformer.h.1.mlp") == 1


def test_unknown_name_lists_close_matches(model):
    with pytest.raises(DataError) as err:
        resolve_hookpoints(model, ["transformer.h.1.mpl"])
    message = str(err.value)
    assert "transformer.h.1.mpl" in message and "transformer.h.1.mlp" in message


def test_wildcard_matching_nothing_is_an_error(model):
    with pytest.raises(DataError, match="matches no module"):
        resolve_hookpoints(model, ["gpt_neox.layers.*.mlp"])


def test_output_and_input_capture_match_the_modules(model):
    ids = torch.randint(0, 64, (2, 8))
    out = capture_activations(model, ["transformer.h.1.mlp", "transformer.h.1.ln_2"], lambda: model(input_ids=ids))
    inp = capture_activations(model, ["transformer.h.1.mlp"], lambda: model(input_ids=ids), hook_input=True)
    # the MLP's input is the LayerNorm's output, and its output is the MLP applied to that input
    torch.testing.assert_close(inp["transformer.h.1.mlp"], out["transformer.h.1.ln_2"])
    with torch.no_grad():
        expected = model.transformer.h[1].mlp(inp["transformer.h.1.mlp"])
    torch.testing.assert_close(out["transformer.h.1.mlp"], expected)
    assert out["transformer.h.1.mlp"].shape == (2, 8, 16)


def _count_calls(model, names):
    calls = dict.fromkeys(names, 0)
    handles = []
    for name in names:
        def hook(*_args, _name=name):
            calls[_name] += 1
        handles.append(model.get_submodule(name).register_forward_hook(hook))
    return calls, handles


def test_modules_past_the_deepest_hookpoint_do_not_run(model):
    later = ["transformer.h.1.attn", "transformer.h.2", "transformer.h.3", "transformer.ln_f", "lm_head"]
    calls, handles = _count_calls(model, later + ["transformer.h.0.mlp"])
    ids = torch.randint(0, 64, (1, 8))
    try:
        acts = capture_activations(model, ["transformer.h.0.attn", "transformer.h.1.mlp"], lambda: model(input_ids=ids))
        assert set(acts) == {"transformer.h.0.attn", "transformer.h.1.mlp"}
        assert calls["transformer.h.0.mlp"] == 1 and calls["transformer.h.1.attn"] == 1
        assert all(calls[n] == 0 for n in later[1:]), calls
        # without early exit the whole model runs
        capture_activations(model, ["transformer.h.1.mlp"], lambda: model(input_ids=ids), stop_early=False)
        assert all(calls[n] == 1 for n in later[1:]), calls
    finally:
        for handle in handles:
            handle.remove()


def test_hooks_are_removed_after_capture(model):
    ids = torch.randint(0, 64, (1, 8))
    capture_activations(model, ["transformer.h.0.mlp"], lambda: model(input_ids=ids))
    assert not model.transformer.h[0].mlp._forward_hooks
    # a full forward still works (no leftover stopping hook)
    assert model(input_ids=ids).logits.shape == (1, 8, 64)


def test_hook_module_replaces_the_output(model):
    ids = torch.randint(0, 64, (1, 8))
    with torch.no_grad():
        clean = model(input_ids=ids).logits
        with hook_module(model, "transformer.h.3", lambda a: torch.zeros_like(a)):
            zeroed = model(input_ids=ids).logits
    assert not torch.allclose(clean, zeroed)
    # everything after block 3 sees zeros: logits are ln_f(0) @ W_U, the same at every position
    torch.testing.assert_close(zeroed[0, 0], zeroed[0, 5])


def test_sparsify_base_model_names_resolve_to_the_lm_head_models_module(model, caplog):
    with caplog.at_level("INFO", logger="saeseeds"):
        assert resolve_hookpoints(model, ["h.1.mlp", "h.2"]) == ["transformer.h.1.mlp", "transformer.h.2"]
    assert "module 'transformer.h.1.mlp'" in caplog.text  # says which module it used


def test_transformer_lens_names_resolve_where_one_module_is_that_activation(model):
    got = resolve_hookpoints(model, ["blocks.1.hook_mlp_out", "blocks.0.hook_attn_out", "blocks.3.hook_resid_post"])
    assert got == ["transformer.h.0.attn", "transformer.h.1.mlp", "transformer.h.3"]


def test_transformer_lens_hook_with_no_single_module_suggests_the_layers_modules(model):
    with pytest.raises(DataError, match=r"hook_resid_pre.*closest module names: transformer\.h\.2, transformer\.h\.2\.ln_1"):
        resolve_hookpoints(model, ["blocks.2.hook_resid_pre"])
    with pytest.raises(DataError, match="matches no module"):
        resolve_hookpoints(model, ["blocks.9.hook_mlp_out"])  # no layer 9


def test_a_short_name_that_ends_several_modules_is_not_guessed(model):
    with pytest.raises(DataError, match="matches no module"):
        resolve_hookpoints(model, ["mlp"])
