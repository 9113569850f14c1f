"""Exact, seeded k-means (k-means++ then Lloyd) and the geometric median, for data-dependent initialisation.

Model-layer math: tensors in, tensors out; the caller draws the sample (saeseeds.training.init_sample). The random
choices come from a CPU `torch.Generator` and the distances behind them are float64, so the same generator picks
the same starting centroids on the CPU and on a GPU; Lloyd's float32 assignments can differ there only at near-ties
(within float rounding).
"""

from __future__ import annotations

import torch
from torch import Tensor

KMEANS_ITERATIONS = 25
"""Lloyd iterations at most (fewer once no assignment changes)."""
WEISZFELD_ITERATIONS = 200
"""Weiszfeld iterations at most (fewer once the estimate moves less than WEISZFELD_TOL, relatively)."""
WEISZFELD_TOL = 1e-10


def kmeans_plus_plus(points: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k initial centroids by k-means++ (Arthur & Vassilvitskii 2007): each next one a point drawn with probability
    proportional to its squared distance to the nearest centroid chosen so far. Returns [k, d] rows of `points`."""
    n = points.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= {n} points, got k = {k}")
    x = points.double()
    x_sq = x.pow(2).sum(-1)
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    nearest = (x_sq - 2 * (x @ x[chosen[0]]) + x_sq[chosen[0]]).clamp_min(0)
    for _ in range(1, k):
        weights = nearest.cpu()
        if float(weights.sum()) <= 0:  # fewer distinct points than k: any unchosen point
            weights = torch.ones(n, dtype=torch.float64)
            weights[chosen] = 0
        index = int(torch.multinomial(weights, 1, generator=generator))
        chosen.append(index)
        nearest = torch.minimum(nearest, (x_sq - 2 * (x @ x[index]) + x_sq[index]).clamp_min(0))
    return points[chosen].clone()


def kmeans(points: Tensor, k: int, generator: torch.Generator, iterations: int = KMEANS_ITERATIONS) -> Tensor:
    """k centroids [k, d] of `points` [n, d]: k-means++ from `generator`, then Lloyd iterations (an emptied cluster
    keeps its centroid). Deterministic for a given generator state; assignments use float32 distances (the
    costly product), the means are accumulated in float64."""
    centroids = kmeans_plus_plus(points, k, generator).double()
    x = points.float()
    x64 = points.double()
    assign = None
    for _ in range(iterations):
        c = centroids.float()
        new_assign = (c.pow(2).sum(-1) - 2 * (x @ c.T)).argmin(-1)  # |x|^2 is the same for every centroid
        if assign is not None and torch.equal(new_assign, assign):
            break
        assign = new_assign
        sums = torch.zeros_like(centroids).index_add_(0, assign, x64)
        counts = torch.bincount(assign, minlength=k).to(torch.float64).unsqueeze(-1)
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
    return centroids.to(points.dtype)


def geometric_median(points: Tensor, iterations: int = WEISZFELD_ITERATIONS) -> Tensor:
    """The point minimising the summed Euclidean distance to `points` [n, d], by Weiszfeld's iterations from the
    mean (float64). A point the estimate lands on gets a tiny floor distance, so the step stays defined."""
    x = points.double()
    estimate = x.mean(0)
    for _ in range(iterations):
        distances = (x - estimate).norm(dim=-1).clamp_min(1e-12)
        weights = 1.0 / distances
        new = (weights.unsqueeze(-1) * x).sum(0) / weights.sum()
        moved = float((new - estimate).norm())
        estimate = new
        if moved <= WEISZFELD_TOL * max(float(estimate.norm()), 1.0):
            break
    return estimate.to(points.dtype)
