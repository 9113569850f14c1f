"""Shared latents of one pair on planted overlaps, self/random comparisons, storage, reversal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saeseeds.align import CrossSeedResult, SharingRule, align_pair, align_seeds, align_weights
from saeseeds.align.pair import reverse_alignment
from saeseeds.config import SaeConfig
from saeseeds.sae import SparseAutoencoder


def planted(n: int, d: int, n_common: int, seed: int) -> tuple[np.ndarray, ...]:
    """Two SAEs whose first `n_common` latents (of a) reappear exactly, permuted, in b."""
    rng = np.random.default_rng(seed)
    dec_a, enc_a = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    dec_b, enc_b = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    perm = rng.permutation(n)
    dec_b[perm[:n_common]] = dec_a[:n_common]
    enc_b[perm[:n_common]] = enc_a[:n_common]
    # a decoy: same decoder direction, unrelated encoder -> must NOT count as shared
    dec_b[perm[n_common]] = dec_a[n_common]
    return dec_a, enc_a, dec_b, enc_b, perm


@pytest.mark.parametrize("force_sparse", [False, True])
def test_planted_overlap_exact(force_sparse: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if force_sparse:
        monkeypatch.setattr("saeseeds.align.assignment.DENSE_MAX_PAIRS", 0)
        monkeypatch.setattr("saeseeds.align.assignment.COLD_DENSE_MAX_PAIRS", 0)
    dec_a, enc_a, dec_b, enc_b, perm = planted(400, 96, 123, 0)
    al = align_weights(dec_a, enc_a, dec_b, enc_b)
    assert al.stats["decoder"]["method"] == ("sparse" if force_sparse else "dense")
    assert al.n_shared == 123
    assert al.shared_fraction == pytest.approx(123 / 400)
    np.testing.assert_array_equal(np.flatnonzero(al.shared), np.arange(123))
    np.testing.assert_array_equal(al.dec_partner[:124], perm[:124])
    assert not al.shared[123]  # decoder matches, encoder does not


def test_threshold_is_strict_and_configurable() -> None:
    dec_a, enc_a, dec_b, enc_b, _ = planted(100, 64, 40, 1)
    assert align_weights(dec_a, enc_a, dec_b, enc_b, rule=SharingRule(threshold=0.999)).n_shared == 40
    al = align_weights(dec_a, enc_a, dec_b, enc_b)
    assert al.under(SharingRule(threshold=0.999)).n_shared == 40  # re-judged without new matchings
    assert al.under(SharingRule(threshold=0.9999999)).n_shared == 40  # exact copies: cosine 1 > τ


def make_sae(seed: int, n: int = 256, d: int = 32) -> SparseAutoencoder:
    return SparseAutoencoder(SaeConfig(num_latents=n, k=8), d, generator=torch.Generator().manual_seed(seed))


def test_self_is_fully_shared_random_is_not() -> None:
    sae = make_sae(0)
    same = align_pair(sae, sae)
    assert same.shared_fraction == 1.0
    np.testing.assert_array_equal(same.dec_partner, np.arange(256))
    assert same.mmcs == pytest.approx(1.0)
    other = align_pair(sae, make_sae(1))
    assert other.shared_fraction < 0.02
    assert other.mmcs < 0.8


def test_absolute_counts_flipped_latents() -> None:
    sae = make_sae(2)
    flipped = make_sae(2)
    with torch.no_grad():
        flipped.W_dec.mul_(-1)
        flipped.encoder.weight.mul_(-1)
    assert align_pair(sae, flipped).shared_fraction < 0.02
    assert align_pair(sae, flipped, rule=SharingRule(absolute=True)).shared_fraction == 1.0


def test_a_pair_round_trips_through_the_cross_seed_result(tmp_path) -> None:
    """A pair's alignment is stored as the product stores it (CrossSeedResult.save/load), both directions intact."""
    dec_a, enc_a, dec_b, enc_b, _ = planted(80, 16, 20, 3)
    weights = [(torch.from_numpy(dec_a), torch.from_numpy(enc_a)), (torch.from_numpy(dec_b), torch.from_numpy(enc_b))]
    result = align_seeds(weights, ["x", "y"])
    result.save(tmp_path / "r")
    back = CrossSeedResult.load(tmp_path / "r")
    for key, al in result.alignments.items():
        again = back.alignments[key]
        assert (again.n_shared, again.name_a, again.name_b) == (al.n_shared, al.name_a, al.name_b)
        np.testing.assert_array_equal(again.enc_partner, al.enc_partner)
        assert again.mmcs == pytest.approx(al.mmcs) and again.dec_total == pytest.approx(al.dec_total)
    assert back.alignments[(0, 1)].n_shared == 20  # the planted common latents


def test_reverse_matches_direct() -> None:
    dec_a, enc_a, dec_b, enc_b, _ = planted(150, 24, 50, 4)
    ab = align_weights(dec_a, enc_a, dec_b, enc_b)
    ba = align_weights(dec_b, enc_b, dec_a, enc_a)
    rev = reverse_alignment(ab, ba.dec_max_cos)
    assert rev.n_shared == ba.n_shared
    np.testing.assert_array_equal(rev.shared, ba.shared)
    assert rev.dec_total == pytest.approx(ba.dec_total)
