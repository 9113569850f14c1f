"""Group latents of several seeds into clusters of the same feature, at most one latent per seed per cluster.

Edges come from the stored cross-seed result (no new alignment): with `edges="sharing"` a latent x of seed i and
y of seed j are joined when x is shared with y under the result's `SharingRule` (the decoder and encoder
matchings agree, both cosines > τ; weight min(dec_cos, enc_cos)); with `edges="decoder"` when the decoder
matching pairs them with cosine ≥ τ (weight dec_cos). Clusters are formed by greedy merging of the edges in
descending weight (ties by seed and latent index), skipping an edge whose two clusters already hold a latent of
the same seed; so a cluster never holds two latents of one seed. docs/definitions.md ("Pooling") has the rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from saeseeds.align.cross_seed import CrossSeedResult
from saeseeds.errors import ConfigError, DataError

EdgeKind = Literal["sharing", "decoder"]
EDGE_KINDS: tuple[str, ...] = get_args(EdgeKind)


@dataclass(frozen=True)
class Clusters:
    """Clusters of latents across seeds: `members[c, s]` is the latent of seed s in cluster c, or -1."""

    members: np.ndarray
    """int64 [C, S]."""
    edges: np.ndarray
    """int64 [C]: edges of the graph joining two members of the cluster."""
    weight: np.ndarray
    """float64 [C]: mean weight (cosine) of those edges; NaN for a cluster of one latent."""
    seeds: tuple[str, ...]
    edge_kind: str
    threshold: float

    @property
    def num_clusters(self) -> int:
        return int(self.members.shape[0])

    @property
    def support(self) -> np.ndarray:
        """int64 [C]: the number of seeds each cluster appears in."""
        return (self.members >= 0).sum(axis=1).astype(np.int64)

    @property
    def cohesion(self) -> np.ndarray:
        """float64 [C]: edges inside the cluster / member pairs (1: every two members are joined); NaN for one."""
        support = self.support
        pairs = support * (support - 1) / 2
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, self.edges / np.maximum(pairs, 1), np.nan)

    def support_histogram(self, chosen: np.ndarray | None = None) -> list[int]:
        """Count of clusters (or of the `chosen` ones) with support 1 .. S."""
        support = self.support if chosen is None else self.support[chosen]
        return np.bincount(support, minlength=len(self.seeds) + 1)[1:].astype(int).tolist()


def pair_edges(result: CrossSeedResult, i: int, j: int, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges between seeds i and j: (latents of i, latents of j, weights), from the stored matchings."""
    al = result.alignments[(i, j)]
    partner = np.asarray(al.dec_partner)
    if kind == "sharing":
        keep = np.asarray(al.shared, dtype=bool)
        weight = np.minimum(al.dec_cos, al.enc_cos)
    elif kind == "decoder":
        with np.errstate(invalid="ignore"):
            keep = (partner >= 0) & (np.asarray(al.dec_cos) >= result.rule.threshold)
        weight = np.asarray(al.dec_cos)
    else:
        raise ConfigError(f"edges: {kind!r} is not one of {', '.join(EDGE_KINDS)}")
    x = np.nonzero(keep)[0]
    return x.astype(np.int64), partner[x].astype(np.int64), np.asarray(weight, dtype=np.float64)[x]


def cluster_latents(
    result: CrossSeedResult, *, edges: str = "sharing", seeds: Sequence[int] | None = None
) -> Clusters:
    """Cluster the latents of `seeds` (indices into `result.names`; all by default), one latent per seed at most.

    Every latent lands in exactly one cluster (a latent joined to nothing is a cluster of support 1). Clusters
    are ordered by descending support, then by their first member (seed order, then latent index).
    """
    if edges not in EDGE_KINDS:
        raise ConfigError(f"edges: {edges!r} is not one of {', '.join(EDGE_KINDS)}")
    chosen = list(range(result.num_seeds)) if seeds is None else [int(s) for s in seeds]
    if len(set(chosen)) != len(chosen) or any(not 0 <= s < result.num_seeds for s in chosen):
        raise DataError(f"cluster_latents: seeds {chosen} must be distinct indices in 0..{result.num_seeds - 1}")
    sizes = [result.num_latents[s] for s in chosen]
    offset = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    total = int(offset[-1])
    seed_of = np.repeat(np.arange(len(chosen)), sizes)
    src, dst, wts, keys = [], [], [], []
    for a in range(len(chosen)):
        for b in range(a + 1, len(chosen)):
            x, y, w = pair_edges(result, chosen[a], chosen[b], edges)
            src.append(x + offset[a])
            dst.append(y + offset[b])
            wts.append(w)
            keys.append(np.full(len(x), a * len(chosen) + b))
    if src:
        u, v, w, pk = (np.concatenate(p) for p in (src, dst, wts, keys))
    else:
        u = v = pk = np.zeros(0, dtype=np.int64)
        w = np.zeros(0)
    order = np.lexsort((v, u, pk, -w))  # descending weight; ties by seed pair, then latent ids
    parent = np.arange(total)
    mask = [1 << int(s) for s in seed_of]  # seeds present in each root's cluster (Python ints: any S)

    def find(a: int) -> int:
        root = a
        while parent[root] != root:
            root = int(parent[root])
        while parent[a] != root:
            parent[a], a = root, int(parent[a])
        return root

    for e in order:
        ra, rb = find(int(u[e])), find(int(v[e]))
        if ra == rb or mask[ra] & mask[rb]:
            continue
        if rb < ra:
            ra, rb = rb, ra
        parent[rb] = ra
        mask[ra] |= mask[rb]
    roots = np.array([find(a) for a in range(total)], dtype=np.int64)
    unique_roots, cluster_of = np.unique(roots, return_inverse=True)
    members = np.full((len(unique_roots), len(chosen)), -1, dtype=np.int64)
    members[cluster_of, seed_of] = np.arange(total) - offset[seed_of]
    inside = cluster_of[u] == cluster_of[v] if len(u) else np.zeros(0, dtype=bool)
    n_edges = np.bincount(cluster_of[u[inside]], minlength=len(unique_roots)).astype(np.int64)
    w_sum = np.bincount(cluster_of[u[inside]], weights=w[inside], minlength=len(unique_roots))
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(n_edges > 0, w_sum / np.maximum(n_edges, 1), np.nan)
    support = (members >= 0).sum(axis=1)
    first = np.array([_first_key(row) for row in members], dtype=np.int64)
    final = np.lexsort((first, -support))
    return Clusters(members[final], n_edges[final], weight[final], tuple(result.names[s] for s in chosen),
                    edges, float(result.rule.threshold))


def _first_key(row: np.ndarray) -> int:
    """Sort key of a cluster's first member: seed position, then latent index."""
    s = int(np.argmax(row >= 0))
    return s * (1 << 40) + int(row[s])
