"""The pooled SAE's construction: identical seeds pool to that seed; contributions are exact; unfolding inverts
the checkpoint's input-scale folding; clusters are chosen by support, then contribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saeseeds.align.cross_seed import align_seeds
from saeseeds.align.pair import sae_weights
from saeseeds.config import SaeConfig
from saeseeds.pooling.build import (
    choose_clusters,
    cluster_scores,
    latent_contributions,
    pooled_sae,
)
from saeseeds.pooling.clusters import Clusters, cluster_latents
from saeseeds.sae.checkpoint import fold_input_scale, unfold_input_scale
from saeseeds.sae.model import SparseAutoencoder


def tiny(arch: str = "topk", seed: int = 0, n: int = 24, d: int = 12) -> SparseAutoencoder:
    cfg = SaeConfig(architecture=arch, num_latents=n, k=4) if arch == "topk" else SaeConfig(
        architecture=arch, num_latents=n)
    sae = SparseAutoencoder(cfg, d, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        sae.encoder.bias.normal_(0, 0.1, generator=torch.Generator().manual_seed(seed + 1))
        sae.b_dec.normal_(0, 0.1, generator=torch.Generator().manual_seed(seed + 2))
    return sae


@pytest.mark.parametrize("arch", ["topk", "jumprelu"])
def test_pooling_identical_seeds_gives_that_seed(arch: str) -> None:
    sae = tiny(arch)
    copies = [tiny(arch) for _ in range(3)]
    result = align_seeds([sae_weights(s) for s in copies], ["s0", "s1", "s2"])
    clusters = cluster_latents(result)
    assert clusters.num_clusters == sae.num_latents and set(clusters.support.tolist()) == {3}
    x = torch.randn(256, sae.d_in, generator=torch.Generator().manual_seed(5))
    scores = cluster_scores(clusters, [latent_contributions(s, [x])["delta_fvu"] for s in copies])
    chosen = choose_clusters(clusters, scores, sae.num_latents)
    pooled = pooled_sae(copies, clusters, chosen)
    for name, tensor in sae.state_dict().items():
        assert torch.allclose(pooled.state_dict()[name], tensor, atol=1e-6), name
    assert torch.allclose(pooled(x).sae_out, sae(x).sae_out, atol=1e-5)


def test_delta_fvu_equals_ablating_each_latent() -> None:
    sae = tiny("topk", n=10, d=6)
    x = torch.randn(300, 6, generator=torch.Generator().manual_seed(1)) * 2
    got = latent_contributions(sae, [x[:100], x[100:]], chunk=64)
    with torch.no_grad():
        acts = sae.encode_dense(x)
        tv = float(((x - x.mean(0)) ** 2).sum())
        base = float(((x - sae.decode_dense(acts)) ** 2).sum())
        for i in range(10):
            ablated = acts.clone()
            ablated[:, i] = 0
            want = (float(((x - sae.decode_dense(ablated)) ** 2).sum()) - base) / tv
            assert got["delta_fvu"][i] == pytest.approx(want, rel=1e-4, abs=1e-7)
        assert np.allclose(got["mass"], (acts * sae.W_dec.norm(dim=1)).mean(0).numpy(), atol=1e-6)


@pytest.mark.parametrize("folded_into", [None, "encoder.bias, b_dec", "encoder.bias, b_dec, threshold"])
def test_unfold_inverts_either_checkpoint_folding(folded_into: str | None) -> None:
    arch = "jumprelu" if folded_into and "threshold" in folded_into else "topk"
    trained, scale = tiny(arch), 2.5
    x = torch.randn(64, trained.d_in, generator=torch.Generator().manual_seed(3))
    if folded_into is None:  # checkpoint format 1: the scale went into the weights
        W, c, D, b = trained.encoder.weight, trained.encoder.bias, trained.W_dec, trained.b_dec
        from saeseeds.sae.checkpoint import build_sae

        saved = build_sae(arch, encoder_weight=W.detach() * scale, encoder_bias=c.detach(),
                          W_dec=D.detach() / scale, b_dec=b.detach() / scale, k=trained.cfg.k,
                          base_cfg=trained.cfg)
    else:
        saved = fold_input_scale(trained, scale)
    back = unfold_input_scale(saved, scale, folded_into)
    with torch.no_grad():
        assert torch.allclose(back(x * scale).sae_out, trained(x * scale).sae_out, atol=1e-5)
        assert torch.allclose(back.W_dec.norm(dim=1), torch.ones(trained.num_latents), atol=1e-5)


def test_choose_clusters_by_support_then_score() -> None:
    members = np.array([[0, -1], [1, 1], [2, -1], [-1, 0], [3, 2]])
    clusters = Clusters(members, np.zeros(5, int), np.full(5, np.nan), ("a", "b"), "sharing", 0.7)
    scores = np.array([0.1, 0.0, 0.5, 0.3, 0.2])
    assert choose_clusters(clusters, scores, 2).tolist() == [1, 4]  # the two with support 2
    assert choose_clusters(clusters, scores, 3).tolist() == [1, 2, 4]  # then the best score of support 1
    with pytest.raises(Exception, match="size"):
        choose_clusters(clusters, scores, 6)


def test_the_pool_keeps_unique_directions_only() -> None:
    """A lower-ranked cluster whose direction repeats a kept one (cos ≥ unique_cos) is skipped."""
    members = np.array([[0, 0], [1, -1], [-1, 1], [2, -1]])
    clusters = Clusters(members, np.zeros(4, int), np.full(4, np.nan), ("a", "b"), "sharing", 0.7)
    e = torch.eye(3, dtype=torch.float64)
    near = (0.8 * e[0] + 0.6 * e[1])  # cos 0.8 with cluster 0's direction
    directions = torch.stack([e[0], near, e[1], e[2]])
    scores = np.array([0.0, 0.9, 0.5, 0.1])
    assert choose_clusters(clusters, scores, 3, directions=directions, unique_cos=0.7).tolist() == [0, 2, 3]
    assert choose_clusters(clusters, scores, 3, directions=directions, unique_cos=0.9).tolist() == [0, 1, 2]
    # the pool runs out: fewer latents than asked for
    assert choose_clusters(clusters, scores, 4, directions=directions, unique_cos=0.7).tolist() == [0, 2, 3]
