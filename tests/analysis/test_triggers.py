"""Tests of trigger statistics and top-activating contexts on constructed activations."""

from __future__ import annotations

import math

import pytest
import torch

from saeseeds.analysis.triggers import (
    TopActivations,
    TriggerAccumulator,
    compare_groups,
    sparse_from_code,
    sparse_from_dense,
    token_pieces,
    top_contexts,
)
from saeseeds.errors import DataError


def _random_sparse_acts(n_tokens: int, n_latents: int, density: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    acts = torch.rand(n_tokens, n_latents, generator=g)
    acts[torch.rand(n_tokens, n_latents, generator=g) > density] = 0
    return acts


def test_sparse_from_code_matches_dense() -> None:
    values = torch.tensor([[2.0, 0.0], [1.0, 3.0]])
    indices = torch.tensor([[4, 1], [0, 4]])
    sp = sparse_from_code(values, indices)
    dense = torch.zeros(2, 5)
    dense[sp.rows, sp.latents] = sp.values
    assert torch.equal(dense, torch.tensor([[0, 0, 0, 0, 2.0], [1.0, 0, 0, 0, 3.0]]))
    sp2 = sparse_from_dense(dense)
    assert sorted(zip(sp2.rows.tolist(), sp2.latents.tolist())) == [(0, 4), (1, 0), (1, 4)]


def test_top_activations_are_the_true_top_across_batches() -> None:
    acts = _random_sparse_acts(300, 7, 0.3, 0)
    acts[:, 6] = 0
    acts[17, 6] = 5.0  # a latent firing once: fewer than n_top entries
    top = TopActivations(7, n_top=5)
    for start in range(0, 300, 64):
        top.update(sparse_from_dense(acts[start : start + 64]))
    assert top.tokens_seen == 300
    for latent in range(6):
        want_v, want_p = torch.sort(acts[:, latent], descending=True)
        got_v, got_p = top.top(latent)
        assert torch.allclose(got_v, want_v[:5])
        assert got_p.tolist() == want_p[:5].tolist()
    v, p = top.top(6)
    assert v.tolist() == [5.0] and p.tolist() == [17]


def test_top_contexts_windows_and_marked_token() -> None:
    token_ids = torch.arange(20).reshape(2, 10)  # token id == global position
    acts = torch.zeros(20, 2)
    acts[12, 0] = 3.0  # chunk 1, position 2
    acts[9, 0] = 1.0  # chunk 0, last position
    top = TopActivations(2, n_top=3)
    top.update(sparse_from_dense(acts))
    ctx = top_contexts(top, [0, 1], token_ids, lambda ids: "".join(f"<{i}>" for i in ids), window_before=3, window_after=2)
    first, second = ctx[0]
    assert (first.chunk, first.position, first.activation, first.token_id) == (1, 2, 3.0, 12)
    assert first.tokens == ["<10>", "<11>", "<12>", "<13>", "<14>"]  # never crosses into chunk 0
    assert first.tokens[first.marked] == "<12>"
    assert second.tokens == ["<6>", "<7>", "<8>", "<9>"] and second.tokens[second.marked] == "<9>"
    assert ctx[1] == []
    with pytest.raises(DataError, match="aligned"):
        top_contexts(top, [0], token_ids[:1], str)


def test_token_pieces_join_word_pieces_like_the_tokenizer() -> None:
    vocab = {0: "play", 1: "##ing", 2: "now"}

    def decode(ids: list[int]) -> str:  # a WordPiece-style decoder: '##' glues, otherwise a space
        out = ""
        for i in ids:
            tok = vocab[i]
            out += tok[2:] if tok.startswith("##") else (" " + tok if out else tok)
        return out

    assert token_pieces([0, 1, 2], decode) == ["play", "ing", " now"]


def test_trigger_entropy_zero_for_single_token_and_log2_for_two() -> None:
    # tokens: 0 1 0 1 2 ...; latent 0 fires only on token 2, latent 1 equally on tokens 0 and 1
    token_ids = torch.tensor([0, 1, 0, 1, 2, 2, 3])
    acts = torch.zeros(7, 3)
    acts[[4, 5], 0] = torch.tensor([1.0, 3.0])
    acts[[0, 1], 1] = 2.0
    acts[[2, 3], 1] = 1.0
    acc = TriggerAccumulator(3, vocab_size=5)
    acc.update(sparse_from_dense(acts), token_ids)
    st = acc.stats()
    assert st.entropy[0] == pytest.approx(0.0, abs=1e-12)
    assert st.top_token_share[0] == pytest.approx(1.0)
    assert st.top_token_id[0] == 2 and st.distinct_tokens[0] == 1
    assert st.entropy[1] == pytest.approx(math.log(2))
    assert st.top_token_share[1] == pytest.approx(0.5)
    assert st.frequency[0] == pytest.approx(2 / 7) and st.mean_activation[0] == pytest.approx(2.0)
    assert st.fire_count[2] == 0 and math.isnan(st.entropy[2]) and st.top_token_id[2] == -1


def test_trigger_stats_match_dense_bruteforce_with_coalescing() -> None:
    n_tok, n_lat, vocab = 500, 6, 11
    acts = _random_sparse_acts(n_tok, n_lat, 0.4, 1)
    token_ids = torch.randint(0, vocab, (n_tok,), generator=torch.Generator().manual_seed(2))
    acc = TriggerAccumulator(n_lat, vocab, coalesce_every=10)  # forces many coalescing rounds
    for start in range(0, n_tok, 37):
        acc.update(sparse_from_dense(acts[start : start + 37]), token_ids[start : start + 37])
    st = acc.stats()
    mass = torch.zeros(n_lat, vocab, dtype=torch.float64)
    mass.index_add_(1, token_ids, acts.double().T)
    p = mass / mass.sum(1, keepdim=True)
    ent = -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(1)
    assert torch.allclose(st.entropy, ent)
    assert torch.allclose(st.top_token_share, p.max(1).values)
    assert st.top_token_id.tolist() == p.argmax(1).tolist()
    assert st.distinct_tokens.tolist() == (mass > 0).sum(1).tolist()
    fires = (acts > 0).sum(0)
    assert torch.allclose(st.frequency, fires.double() / n_tok)
    assert torch.allclose(st.mean_activation, acts.double().sum(0) / fires)


def test_trigger_accumulator_rejects_misaligned_tokens() -> None:
    acc = TriggerAccumulator(3, vocab_size=4)
    with pytest.raises(DataError, match="ids for a batch"):
        acc.update(sparse_from_dense(torch.ones(3, 3)), torch.zeros(2, dtype=torch.long))
    with pytest.raises(DataError, match="vocabulary"):
        acc.update(sparse_from_dense(torch.ones(2, 3)), torch.tensor([0, 4]))


def test_compare_groups_detects_a_shift_and_ignores_nan() -> None:
    g = torch.Generator().manual_seed(3)
    values = torch.randn(200, generator=g, dtype=torch.float64)
    stable = torch.zeros(200, dtype=torch.bool)
    stable[:100] = True
    values[:100] += 2.0
    values[150] = math.nan
    cmp = compare_groups("x", values, stable, ~stable)
    assert cmp.n_stable == 100 and cmp.n_unstable == 99
    assert cmp.mean_stable > cmp.mean_unstable + 1.5
    assert cmp.p_value < 1e-10 and cmp.rank_biserial > 0.7
    empty = compare_groups("x", values, stable, torch.zeros(200, dtype=torch.bool))
    assert math.isnan(empty.p_value)


def test_explicit_positions_skip_dropped_tokens() -> None:
    # rows are tokens 1, 2, 4 of a chunk of 5 (positions 0 and 3 held special tokens, dropped)
    acts = torch.tensor([[1.0], [3.0], [2.0]])
    top = TopActivations(1, n_top=2)
    top.update(sparse_from_dense(acts), positions=torch.tensor([1, 2, 4]))
    v, p = top.top(0)
    assert v.tolist() == [3.0, 2.0] and p.tolist() == [2, 4]
    with pytest.raises(DataError, match="positions"):
        top.update(sparse_from_dense(acts), positions=torch.tensor([0]))
