"""The composed-features toy model: does each seed learn the true x / y features, composed directions, or neither?

Ground truth (`SyntheticConfig.kind = "composed"`): mutually exclusive sets x_1..x_m and y_1..y_n; every row is
a_x · x_i + a_y · y_j. A *composed direction* is (x_i + y_j)/‖x_i + y_j‖. Per seed, each alive latent is put in
one class by its decoder direction (cosine threshold t, 0.9 by default):

- `feature`: cosine ≥ t with some true x_i or y_j;
- `composed`: otherwise, cosine ≥ t with some composed direction;
- `plane`: otherwise, at least t² of its squared norm inside one plane span{x_i, y_j} (another basis of a
  composition plane: the plane-basis ambiguity);
- `other`: none of these; `dead`: the latent never fired on the evaluation rows (when liveness is given).

With orthogonal x and y, cos(x_i, composed_ij) = 1/√2 < t for any t > 0.71, so the classes are disjoint.
Across seeds: Jaccard overlap of the sets of targets (true features, composed pairs) the seeds cover, and the
stability (fraction of other seeds sharing the latent, from the configuration's `CrossSeedResult`) by class.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from saeseeds.align.cross_seed import CrossSeedResult
from saeseeds.data.synthetic import COMPOSED_X, COMPOSED_Y, GroundTruth
from saeseeds.errors import DataError

COMPOSED_CLASSES: tuple[str, ...] = ("feature", "composed", "plane", "other", "dead")
"""Latent classes, indexed by the codes in `ComposedClassification.latent_class`."""
FEATURE, COMPOSED, PLANE, OTHER, DEAD = range(5)


class ComposedClassification(NamedTuple):
    """One SAE's latents against the composed ground truth."""

    latent_class: Tensor
    """[n] int64 class code (COMPOSED_CLASSES)."""
    target: Tensor
    """[n] int64: the true feature (0..m+n-1) of a `feature` latent, the pair index i·n + j of a `composed` or
    `plane` latent, −1 otherwise."""
    best_feature_cos: Tensor
    """[n] largest cosine with a true x or y direction."""
    best_composed_cos: Tensor
    """[n] largest cosine with a composed direction."""
    plane_angle_deg: Tensor
    """[n] for latents lying in a composition plane (share ≥ t²): the in-plane angle from x_i (0°) towards y_j
    (90°), atan2(cos y_j, cos x_i); composed directions sit at 45°. NaN elsewhere."""
    features_found: Tensor
    """[m + n] bool: some alive latent has cosine ≥ t with the feature."""
    composed_found: Tensor
    """[m · n] bool: some alive latent has cosine ≥ t with the composed direction."""


def _xy(truth: GroundTruth) -> tuple[Tensor, Tensor]:
    x = truth.directions[truth.kind == COMPOSED_X].double()
    y = truth.directions[truth.kind == COMPOSED_Y].double()
    if x.shape[0] == 0 or y.shape[0] == 0:
        raise DataError("composed analysis: the ground truth has no x or no y features (kind = 'composed' only)")
    return x, y


def composed_directions(truth: GroundTruth) -> Tensor:
    """[m · n, d] unit composed directions, row i·n + j = (x_i + y_j)/‖x_i + y_j‖."""
    x, y = _xy(truth)
    both = (x[:, None, :] + y[None, :, :]).reshape(-1, x.shape[1])
    return both / torch.linalg.vector_norm(both, dim=1, keepdim=True).clamp_min(1e-12)


def classify_latents(
    truth: GroundTruth, decoder: Tensor, *, threshold: float = 0.9, alive: Tensor | None = None
) -> ComposedClassification:
    """Classify the latents of `decoder` [n, d] (rows are directions; norms are ignored)."""
    if not 1 / math.sqrt(2) < threshold <= 1.0:
        raise DataError(f"composed analysis: threshold {threshold} must be in (1/√2, 1] to keep the classes apart")
    x, y = _xy(truth)
    m, n_y = x.shape[0], y.shape[0]
    dec = torch.as_tensor(decoder).detach().to("cpu", torch.float64)
    if dec.ndim != 2 or dec.shape[1] != x.shape[1]:
        raise DataError(f"composed analysis: decoder must be [latents, {x.shape[1]}], got {tuple(dec.shape)}")
    dec = dec / torch.linalg.vector_norm(dec, dim=1, keepdim=True).clamp_min(1e-12)
    n = dec.shape[0]
    alive = torch.ones(n, dtype=torch.bool) if alive is None else torch.as_tensor(alive, dtype=torch.bool)
    feats = torch.cat([x, y])
    feat_cos = dec @ feats.T  # [n, m + n_y]
    comp_cos = dec @ composed_directions(truth).T  # [n, m n_y]
    best_f, arg_f = feat_cos.max(dim=1)
    best_c, arg_c = comp_cos.max(dim=1)
    # share of each latent inside each plane span{x_i, y_j} (orthonormal basis of the plane per pair)
    cx, cy = dec @ x.T, dec @ y.T  # [n, m], [n, n_y]
    gram = x @ y.T  # [m, n_y]: cos(x_i, y_j)
    # projection norm² onto span{u, v} with unit u, v and cos g: (a² + b² − 2 g a b) / (1 − g²)
    a, b, g = cx[:, :, None], cy[:, None, :], gram[None]
    share = ((a**2 + b**2 - 2 * g * a * b) / (1 - g**2).clamp_min(1e-12)).reshape(n, -1)
    best_share, arg_plane = share.max(dim=1)
    cls = torch.full((n,), OTHER, dtype=torch.int64)
    target = torch.full((n,), -1, dtype=torch.int64)
    in_plane = best_share >= threshold**2
    cls[in_plane] = PLANE
    target[in_plane] = arg_plane[in_plane]
    is_comp = best_c >= threshold
    cls[is_comp] = COMPOSED
    target[is_comp] = arg_c[is_comp]
    is_feat = best_f >= threshold
    cls[is_feat] = FEATURE
    target[is_feat] = arg_f[is_feat]
    cls[~alive] = DEAD
    target[~alive] = -1
    i_idx, j_idx = arg_plane // n_y, arg_plane % n_y
    rows = torch.arange(n)
    angle = torch.rad2deg(torch.atan2(cy[rows, j_idx], cx[rows, i_idx]))
    angle = torch.where(in_plane & alive, angle, torch.full_like(angle, math.nan))
    feature_found = torch.zeros(m + n_y, dtype=torch.bool)
    feature_found[target[cls == FEATURE]] = True
    composed_found = torch.zeros(m * n_y, dtype=torch.bool)
    composed_found[target[cls == COMPOSED]] = True
    return ComposedClassification(cls, target, best_f, best_c, angle, feature_found, composed_found)


def _jaccard(a: Tensor, b: Tensor) -> float | None:
    union = int((a | b).sum())
    return None if union == 0 else int((a & b).sum()) / union


def summarize_composed(
    truth: GroundTruth,
    classes: Sequence[ComposedClassification],
    cross: CrossSeedResult | None = None,
    *,
    threshold: float = 0.9,
) -> dict[str, Any]:
    """JSON-ready per-seed counts, their mean and spread, cross-seed overlap of what was found, stability by class."""
    m = int((truth.kind == COMPOSED_X).sum())
    n_y = int((truth.kind == COMPOSED_Y).sum())
    counts = {name: [int((c.latent_class == code).sum()) for c in classes] for code, name in enumerate(COMPOSED_CLASSES)}
    found_f = [int(c.features_found.sum()) for c in classes]
    found_c = [int(c.composed_found.sum()) for c in classes]
    summary: dict[str, Any] = {
        "threshold": threshold,
        "num_x": m,
        "num_y": n_y,
        "amplitude_correlation": truth.config.composed_amplitude_correlation,
        "latents_per_seed": counts,
        "latents_mean": {k: sum(v) / len(v) for k, v in counts.items()},
        "features_found_per_seed": found_f,
        "composed_found_per_seed": found_c,
        "features_found_mean": sum(found_f) / len(found_f),
        "composed_found_mean": sum(found_c) / len(found_c),
    }
    angles = torch.cat([c.plane_angle_deg for c in classes])
    angles = angles[~torch.isnan(angles)]
    # angles outside [0°, 90°] (x_i − y_j and the like) are counted in the end bins
    summary["plane_angle_deg_histogram"] = {
        "edges": list(range(0, 91, 15)),
        "counts": torch.histogram(angles.clamp(0, 90), bins=6, range=(0.0, 90.0)).hist.long().tolist()
        if angles.numel() else [0] * 6,
    }
    pairs = list(itertools.combinations(range(len(classes)), 2))
    jac_f = [_jaccard(classes[s].features_found, classes[t].features_found) for s, t in pairs]
    jac_c = [_jaccard(classes[s].composed_found, classes[t].composed_found) for s, t in pairs]
    summary["features_found_jaccard"] = _mean_of(jac_f)
    summary["composed_found_jaccard"] = _mean_of(jac_c)
    if cross is not None:
        stab: dict[str, float | None] = {}
        for code, name in enumerate(COMPOSED_CLASSES):
            values = [torch.from_numpy(cross.stability(k))[c.latent_class == code] for k, c in enumerate(classes)]
            flat = torch.cat(values) if values else torch.zeros(0)
            stab[name] = float(flat.double().mean()) if flat.numel() else None
        summary["latent_stability_by_class"] = stab
        summary["rule"] = cross.rule.to_dict()
    return summary


def _mean_of(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None
