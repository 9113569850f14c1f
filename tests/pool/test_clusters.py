"""Clustering latents across seeds: planted multi-seed dictionaries come out exactly, one latent per seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saeseeds.align.cross_seed import align_seeds
from saeseeds.errors import ConfigError
from saeseeds.pooling.clusters import cluster_latents

# which planted features each of 4 seeds holds: supports 4, 4, 3, 3, 2, 2, 1, 1 (features 0..7)
HOLDS = [
    [0, 1, 2, 3, 4, 6],
    [0, 1, 2, 3, 5, 7],
    [0, 1, 2, 4, 5],
    [0, 1, 3],
]
SUPPORT = {0: 4, 1: 4, 2: 3, 3: 3, 4: 2, 5: 2, 6: 1, 7: 1}


def planted(seed: int = 0, d: int = 48, noise: float = 0.02):
    """Seeds whose latents are planted features (shuffled, slightly perturbed) plus unique directions."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0].T  # orthonormal rows
    features = basis[:8]
    weights, truth = [], []
    for s, holds in enumerate(HOLDS):
        unique = basis[8 + 4 * s: 8 + 4 * s + 4]  # 4 directions no other seed has
        rows = torch.cat([features[holds], unique])
        labels = list(holds) + [100 + 10 * s + u for u in range(4)]
        perm = torch.randperm(len(labels), generator=g)
        rows = rows[perm] + noise * torch.randn(len(labels), d, generator=g, dtype=torch.float64)
        truth.append([labels[i] for i in perm.tolist()])
        # pad to one size: every seed gets 10 latents (padding: more unique directions)
        pad = 10 - len(labels)
        extra = basis[30 + 4 * s: 30 + 4 * s + pad]
        rows = torch.cat([rows, extra]).float()
        truth[-1] += [200 + 10 * s + u for u in range(pad)]
        weights.append((rows, rows.clone()))
    return weights, truth


@pytest.mark.parametrize("edges", ["sharing", "decoder"])
def test_planted_clusters_and_supports_come_out_exactly(edges: str) -> None:
    weights, truth = planted()
    result = align_seeds(weights, [f"seed{s}" for s in range(4)])
    clusters = cluster_latents(result, edges=edges)
    found = {}
    for row, support in zip(clusters.members, clusters.support):
        labels = {truth[s][int(x)] for s, x in enumerate(row) if x >= 0}
        assert len(labels) == 1, f"a cluster mixes features {labels}"
        label = labels.pop()
        assert label not in found, f"feature {label} split over clusters"
        found[label] = int(support)
    for feature, support in SUPPORT.items():
        assert found[feature] == support
    unique = [lab for lab in found if lab >= 100]
    assert all(found[lab] == 1 for lab in unique) and len(unique) == sum(10 - len(h) for h in HOLDS)
    assert clusters.members.shape == (len(found), 4)
    assert (clusters.members >= 0).sum() == 40  # every latent in exactly one cluster
    assert list(clusters.support) == sorted(clusters.support, reverse=True)
    multi = clusters.support >= 2
    assert np.allclose(clusters.cohesion[multi], 1.0) and np.all(clusters.weight[multi] > 0.9)
    assert clusters.support_histogram() == [len(unique) + 2, 2, 2, 2]


def test_at_most_one_latent_per_seed_even_when_pairwise_matches_chain() -> None:
    """a1~b1 (0.95), b1~c1 (0.90), a1~c2 (0.80): the union of matches would hold c1 and c2 together."""
    e = torch.eye(3)
    a1 = e[0]
    b1 = 0.95 * e[0] + (1 - 0.95**2) ** 0.5 * e[1]
    angle = np.arccos(0.95) + np.arccos(0.90)
    c1 = float(np.cos(angle)) * e[0] + float(np.sin(angle)) * e[1]
    c2 = 0.8 * e[0] + 0.6 * e[2]
    weights = [(a1[None], a1[None]), (b1[None], b1[None]), (torch.stack([c1, c2]), torch.stack([c1, c2]))]
    result = align_seeds(weights, ["A", "B", "C"])
    assert result.alignments[(0, 2)].dec_partner[0] == 1  # a1's match in C is c2
    assert result.alignments[(1, 2)].dec_partner[0] == 0  # b1's match in C is c1
    clusters = cluster_latents(result, edges="decoder")
    assert clusters.members.tolist() == [[0, 0, 0], [-1, -1, 1]]
    assert clusters.edges.tolist() == [2, 0]  # a1-b1 and b1-c1; a1-c2 was refused
    sub = cluster_latents(result, edges="decoder", seeds=[0, 2])
    assert sub.members.tolist() == [[0, 1], [-1, 0]]  # without B, a1 joins its own match c2


def test_bad_edge_kind_and_seed_subset() -> None:
    weights, _ = planted()
    result = align_seeds(weights[:2], ["x", "y"])
    with pytest.raises(ConfigError, match="edges"):
        cluster_latents(result, edges="union")
    with pytest.raises(Exception, match="seeds"):
        cluster_latents(result, seeds=[0, 0])
