"""Pooling cross-seed features into a more stable SAE: cluster latents across seeds, build one SAE from the
clusters with most support, fit it on the run's stream, and judge it fairly (docs/pooling.md)."""

from saeseeds.pooling.build import (
    choose_clusters,
    cluster_directions,
    cluster_scores,
    latent_contributions,
    pooled_sae,
)
from saeseeds.pooling.clusters import EDGE_KINDS, Clusters, cluster_latents
from saeseeds.pooling.options import PoolOptions

__all__ = [
    "EDGE_KINDS",
    "Clusters",
    "PoolOptions",
    "choose_clusters",
    "cluster_directions",
    "cluster_latents",
    "cluster_scores",
    "latent_contributions",
    "pooled_sae",
]
