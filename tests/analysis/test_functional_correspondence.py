"""Functional correspondence (the substitution test of "Benchmarking Cross-Seed Feature Correspondence in SAEs"):
planted SAE pairs whose matched latents are functionally identical, and pairs whose matched latents fire on the
wrong rows while their hard negatives fire on the right ones; the closed form against a direct substitution."""

from __future__ import annotations

import math

import numpy as np
import torch

from saeseeds.align.pair import align_weights, sae_weights
from saeseeds.analysis.functional_correspondence import (
    functional_correspondence,
    substitution_delta_fvu,
    substitution_terms,
    summarise,
)
from saeseeds.config import SaeConfig
from saeseeds.sae.model import SparseAutoencoder

D = 8


def _sae(dec: np.ndarray, enc: np.ndarray) -> SparseAutoencoder:
    """A ReLU SAE with the given unit decoder rows and encoder rows, zero biases: f = relu(E x)."""
    sae = SparseAutoencoder(SaeConfig(architecture="relu", num_latents=len(dec)), D)
    with torch.no_grad():
        sae.W_dec.copy_(torch.tensor(dec, dtype=torch.float32))
        sae.encoder.weight.copy_(torch.tensor(enc, dtype=torch.float32))
        sae.encoder.bias.zero_()
        sae.b_dec.zero_()
    return sae


def _rows(seed: int = 0) -> list[torch.Tensor]:
    """Non-negative codes on the first four basis directions, each firing on ~30% of the rows."""
    rng = np.random.default_rng(seed)
    x = np.zeros((3000, D), dtype=np.float32)
    x[:, :4] = (rng.random((3000, 4)) < 0.3) * (0.5 + rng.random((3000, 4)))
    return list(torch.tensor(x).split(1000))


def _partner(a: SparseAutoencoder, b: SparseAutoencoder) -> np.ndarray:
    return align_weights(*sae_weights(a), *sae_weights(b)).dec_partner


def test_functionally_identical_matches_cost_nothing_and_hard_negatives_do() -> None:
    eye = np.eye(D)[:4]
    a = _sae(eye, eye)
    perm = [2, 0, 3, 1]
    b = _sae(eye[perm], eye[perm])  # the same four latents in another order
    res = functional_correspondence(a, b, _partner(a, b), _rows())
    assert res["pairs"] == 4
    assert abs(res["matched_dfvu"]) < 1e-6
    assert res["negative_dfvu"] > 0.1 and res["matched_below_negative"] == 1.0
    assert res["output_recovered"] is None
    occupied = [b for b in res["by_frequency"] if b["pairs"]]
    assert len(occupied) == 1 and occupied[0]["log10_frequency"][0] <= math.log10(0.3) < occupied[0]["log10_frequency"][1]


def test_matches_that_fire_on_the_wrong_rows_lose_to_functional_hard_negatives() -> None:
    eye = np.eye(D)
    a = _sae(eye[:4], eye[:4])
    swap = [1, 0, 3, 2]  # B's latent k decodes e_k but fires where A's latent k^1 fires
    twins = eye[:4] + 0.3 * eye[4:]  # B's latent 4+k: decoder near e_k (cos 0.958), fires where A's k fires
    twins /= np.linalg.norm(twins, axis=1, keepdims=True)
    b = _sae(np.concatenate([eye[:4], twins]), np.concatenate([eye[swap], eye[:4]]))
    partner = _partner(a, b)
    assert list(partner) == [0, 1, 2, 3]  # the decoders match the wrong-firing latents (cosine 1 beats 0.958)
    res = functional_correspondence(a, b, partner, _rows())
    assert res["pairs"] == 4
    assert res["matched_dfvu"] > 5 * res["negative_dfvu"] > 0
    assert res["matched_below_negative"] == 0.0


def test_closed_form_equals_a_direct_substitution_and_the_summary_spreads_over_pairs() -> None:
    g = torch.Generator().manual_seed(3)
    a = SparseAutoencoder(SaeConfig(architecture="topk", num_latents=12, k=3), D, generator=g)
    b = SparseAutoencoder(SaeConfig(architecture="topk", num_latents=12, k=3), D, generator=g)
    with torch.no_grad():
        a.b_dec.copy_(torch.randn(D, generator=g) * 0.1)
    x = torch.randn(500, D, generator=g)
    terms = substitution_terms(a, b, [x])
    with torch.no_grad():
        fa, fb = a.encode_dense(x).double(), b.encode_dense(x).double()
        base = a.decode_dense(fa.float()).double()
        total = float((x.double() - x.double().mean(0)).pow(2).sum())
        for i, j in [(0, 5), (7, 2), (11, 11)]:
            swapped = base - fa[:, i:i + 1] * a.W_dec[i].double() + fb[:, j:j + 1] * b.W_dec[j].double()
            direct = (float((x.double() - swapped).pow(2).sum()) - float((x.double() - base).pow(2).sum())) / total
            closed = substitution_delta_fvu(terms, a.W_dec.double().numpy(), b.W_dec.double().numpy(),
                                            np.array([i]), np.array([j]))[0]
            assert math.isclose(closed, direct, rel_tol=1e-6, abs_tol=1e-9)
    one = functional_correspondence(a, b, _partner(a, b), [x])
    two = functional_correspondence(b, a, _partner(b, a), [x])
    summary = summarise([one, two])
    assert summary["seed_pairs"] == 2
    assert math.isclose(summary["matched_dfvu"]["mean"], (one["matched_dfvu"] + two["matched_dfvu"]) / 2)
    assert "not available" in summary["output_recovered"]
