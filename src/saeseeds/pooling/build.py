"""The pool of unique features and the pooled SAE's initial weights: one direction per cluster of latents.

A cluster's direction is the normalised mean of its members' unit decoder rows (signs aligned to its first member
when cosines are absolute); its encoder row, encoder bias and per-latent architecture tensors (e.g. a JumpReLU
threshold) are the members' means; `b_dec` is the mean over the seeds. Latents are chosen by descending support,
then descending contribution (ΔFVU when the latent alone is ablated, or firing mass), and kept in the clusters'
canonical order, skipping a cluster whose direction has cosine ≥ `unique_cos` (default τ) with one already kept,
so the pool holds unique features. Weights are taken in the trainer's space (`sae.checkpoint.unfold_input_scale`), decoder rows unit-norm.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor

from saeseeds.errors import ConfigError, DataError
from saeseeds.pooling.clusters import Clusters
from saeseeds.sae.checkpoint import build_sae
from saeseeds.sae.model import SparseAutoencoder

RankKind = Literal["delta_fvu", "mass"]
RANK_KINDS: tuple[str, ...] = get_args(RankKind)


@torch.no_grad()
def latent_contributions(sae: SparseAutoencoder, batches: Iterable[Tensor], *, chunk: int = 256) -> dict[str, np.ndarray]:
    """Per latent, on `batches` (inputs in the SAE's own space): `delta_fvu`, the FVU added by ablating the latent
    alone, Σ_t (2 f_ti r_t·d_i + f_ti² ‖d_i‖²) / Σ_t ‖x_t − x̄‖², and `mass`, the mean of f_ti ‖d_i‖ over tokens."""
    n = sae.num_latents
    gain = torch.zeros(n, dtype=torch.float64)
    mass = torch.zeros(n, dtype=torch.float64)
    norms = sae.W_dec.detach().norm(dim=1).double().cpu()
    rows, total, sq = 0, None, 0.0
    sum_x = None
    for batch in batches:
        for x in batch.split(chunk):
            x = x.to(sae.device, sae.dtype)
            acts = sae.encode_dense(x)
            resid = x - sae.decode_dense(acts)
            proj = resid @ sae.W_dec.T
            a64 = acts.double().cpu()
            gain += (2 * a64 * proj.double().cpu() + a64.pow(2) * norms.pow(2)).sum(0)
            mass += (a64 * norms).sum(0)
            xd = x.double().cpu()
            sum_x = xd.sum(0) if sum_x is None else sum_x + xd.sum(0)
            sq += float(xd.pow(2).sum())
            rows += x.shape[0]
    if rows == 0:
        raise DataError("latent_contributions: no rows given")
    assert sum_x is not None
    total = sq - float(sum_x.pow(2).sum()) / rows
    return {"delta_fvu": (gain / max(total, 1e-300)).numpy(), "mass": (mass / rows).numpy()}


def cluster_scores(clusters: Clusters, per_seed: Sequence[np.ndarray]) -> np.ndarray:
    """float64 [C]: each cluster's mean of a per-latent score over its members."""
    total = np.zeros(clusters.num_clusters)
    for s, scores in enumerate(per_seed):
        rows = clusters.members[:, s]
        has = rows >= 0
        total[has] += np.asarray(scores, dtype=np.float64)[rows[has]]
    return total / np.maximum(clusters.support, 1)


@torch.no_grad()
def cluster_directions(saes: Sequence[SparseAutoencoder], clusters: Clusters, *, absolute: bool = False) -> Tensor:
    """float64 [C, d]: each cluster's pooled direction, the normalised mean of its members' unit decoder rows
    (with `absolute`, each member's sign is first aligned to the cluster's first member)."""
    dec = torch.zeros(clusters.num_clusters, saes[0].d_in, dtype=torch.float64)
    anchor = torch.zeros_like(dec)
    have = torch.zeros(clusters.num_clusters, dtype=torch.bool)
    for s, sae in enumerate(saes):
        rows = torch.as_tensor(clusters.members[:, s])
        target = torch.nonzero(rows >= 0).flatten()
        if target.numel() == 0:
            continue
        unit = sae.W_dec.detach().double().cpu()[rows[target]]
        unit = unit / unit.norm(dim=1, keepdim=True).clamp_min(1e-12)
        fresh = ~have[target]
        anchor[target[fresh]] = unit[fresh]
        have[target] = True
        sign = torch.where((unit * anchor[target]).sum(1) < 0, -1.0, 1.0) if absolute else torch.ones(len(target),
                                                                                                      dtype=torch.float64)
        dec[target] += sign[:, None] * unit
    return dec / dec.norm(dim=1, keepdim=True).clamp_min(1e-12)


def choose_clusters(clusters: Clusters, scores: np.ndarray, size: int, *, directions: Tensor | None = None,
                    unique_cos: float = 1.0, absolute: bool = False, block: int = 1024) -> np.ndarray:
    """Indices of up to `size` clusters, in canonical order: taken by descending support, ties by larger score,
    then canonical order, skipping a cluster whose direction has cosine ≥ `unique_cos` with one already taken
    (`directions` [C, d] unit rows; the pool holds unique features). Fewer than `size` when the pool runs out."""
    if not 0 < size <= clusters.num_clusters:
        raise ConfigError(f"size: {size} is outside 1..{clusters.num_clusters} (the number of clusters)")
    order = np.lexsort((np.arange(clusters.num_clusters), -np.nan_to_num(scores, nan=-np.inf), -clusters.support))
    if directions is None or unique_cos > 1.0:
        return np.sort(order[:size])
    kept: list[int] = []
    kept_rows = torch.zeros(0, directions.shape[1], dtype=directions.dtype)
    for start in range(0, len(order), block):
        cand = order[start:start + block]
        rows = directions[torch.as_tensor(cand)]
        against = rows @ kept_rows.T
        inner = rows @ rows.T
        if absolute:
            against, inner = against.abs(), inner.abs()
        clash = (against >= unique_cos).any(dim=1) if kept_rows.shape[0] else torch.zeros(len(cand), dtype=torch.bool)
        taken: list[int] = []
        for i in range(len(cand)):
            if bool(clash[i]) or (taken and bool((inner[i, taken] >= unique_cos).any())):
                continue
            taken.append(i)
            kept.append(int(cand[i]))
            if len(kept) == size:
                return np.sort(np.array(kept, dtype=np.int64))
        kept_rows = torch.cat([kept_rows, rows[taken]])
    return np.sort(np.array(kept, dtype=np.int64))


@torch.no_grad()
def pooled_sae(saes: Sequence[SparseAutoencoder], clusters: Clusters, chosen: np.ndarray, *,
               absolute: bool = False) -> SparseAutoencoder:
    """The SAE whose latents are the `chosen` clusters' pooled directions (saes in the trainer's space, in the
    clusters' seed order): decoder rows from `cluster_directions`; encoder rows, encoder biases and per-latent
    architecture tensors the members' means (sign-aligned like the decoder); b_dec and other tensors the seeds'."""
    if len(saes) != len(clusters.seeds):
        raise DataError(f"pooled_sae: {len(saes)} SAEs for clusters over {len(clusters.seeds)} seeds")
    first = saes[0]
    if any(s.architecture != first.architecture or s.d_in != first.d_in for s in saes):
        raise DataError("pooled_sae: the seeds differ in architecture or width")
    sub = Clusters(clusters.members[chosen], clusters.edges[chosen], clusters.weight[chosen], clusters.seeds,
                   clusters.edge_kind, clusters.threshold)
    m, d = len(chosen), first.d_in
    dec = cluster_directions(saes, sub, absolute=absolute)
    enc = torch.zeros(m, d, dtype=torch.float64)
    bias = torch.zeros(m, dtype=torch.float64)
    extras = first.spec.checkpoint_tensors(first)
    per_latent = {k for k, v in extras.items() if v.shape == (first.num_latents,)}
    extra_sum = {k: torch.zeros(m, dtype=torch.float64) for k in per_latent}
    count = torch.zeros(m, dtype=torch.float64)
    for s, sae in enumerate(saes):
        rows = torch.as_tensor(sub.members[:, s])
        target = torch.nonzero(rows >= 0).flatten()
        if target.numel() == 0:
            continue
        idx = rows[target]
        sign = torch.ones(len(idx), dtype=torch.float64)
        if absolute:
            sign = torch.where((sae.W_dec.detach().double().cpu()[idx] * dec[target]).sum(1) < 0, -1.0, 1.0)
        enc[target] += sign[:, None] * sae.encoder.weight.detach().double().cpu()[idx]
        bias[target] += sae.encoder.bias.detach().double().cpu()[idx]
        tensors = sae.spec.checkpoint_tensors(sae)
        for k in per_latent:
            extra_sum[k][target] += tensors[k].detach().double().cpu()[idx]
        count[target] += 1
    if bool((count == 0).any()):
        raise DataError("pooled_sae: a chosen cluster has no member")
    extra = {k: (extra_sum[k] / count).to(first.dtype) if k in per_latent else
             torch.stack([s.spec.checkpoint_tensors(s)[k].detach().double().cpu() for s in saes]).mean(0)
             .to(first.dtype) for k in extras}
    b_dec = torch.stack([s.b_dec.detach().double().cpu() for s in saes]).mean(0)
    k = first.cfg.k if first.spec.uses_k else 0
    if first.spec.uses_k and k > m:
        raise ConfigError(f"size: {m} latents cannot hold k = {k} active ones")
    out = build_sae(first.architecture, encoder_weight=(enc / count[:, None]).to(first.dtype),
                    encoder_bias=(bias / count).to(first.dtype), W_dec=dec.to(first.dtype),
                    b_dec=b_dec.to(first.dtype), k=k, extra=extra, normalize_decoder=first.cfg.normalize_decoder,
                    base_cfg=first.cfg, source="pooled SAE", device=first.device)
    if not math.isfinite(float(out.W_dec.detach().sum())):
        raise DataError("pooled_sae: non-finite pooled weights")
    return out
