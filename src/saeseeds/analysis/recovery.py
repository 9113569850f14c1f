"""Recovery of a known ground truth by SAEs trained with several seeds: per feature, per group subspace, across seeds.

Per true feature and seed: its Hungarian-matched latent (one latent per feature) and its best latent by decoder
cosine. Per group: principal angles between the true subspace and the span of the group's matched latents.
Across seeds: whether the seeds' matched latents are *shared* with each other, read from the configuration's
`CrossSeedResult` (saeseeds.align), judged by its `SharingRule`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from saeseeds.align.cross_seed import CrossSeedResult, align_seeds
from saeseeds.align.sharing import SharingRule
from saeseeds.analysis.subspace_angles import principal_angles
from saeseeds.data.synthetic import GROUP_KINDS, KIND_NAMES, GroundTruth
from saeseeds.errors import DataError


class FeatureMatch(NamedTuple):
    """Best latents of one SAE for each true feature (decoder cosines; -1 where nothing was assigned)."""

    hungarian_latent: Tensor
    """[N] int64: latent given to each feature by the one-to-one assignment maximising the summed cosine."""
    hungarian_cos: Tensor
    """[N] cosine between each feature and its assigned latent (nan where unassigned)."""
    max_latent: Tensor
    """[N] int64: latent with the largest cosine to each feature (latents may repeat)."""
    max_cos: Tensor
    """[N] that largest cosine."""


def _unit_rows(weights: Tensor, name: str, d: int | None = None) -> Tensor:
    """Float64 copy of `weights` [n, d] with rows scaled to unit length (zero rows stay zero)."""
    weights = torch.as_tensor(weights).detach().to("cpu", torch.float64)
    if weights.ndim != 2 or (d is not None and weights.shape[1] != d):
        want = f"[rows, {d}]" if d is not None else "[rows, d]"
        raise DataError(f"recovery: {name} must be {want}, got shape {tuple(weights.shape)}")
    if not torch.isfinite(weights).all():
        raise DataError(f"recovery: {name} of shape {tuple(weights.shape)} contains NaN or inf")
    return weights / torch.linalg.vector_norm(weights, dim=1, keepdim=True).clamp_min(1e-12)


def _assign(cos: Tensor) -> tuple[Tensor, Tensor]:
    """Exact max-cosine one-to-one assignment of rows to columns: (partner per row or -1, its cosine or nan)."""
    rows, cols = linear_sum_assignment(cos.numpy(), maximize=True)
    partner = torch.full((cos.shape[0],), -1, dtype=torch.int64)
    value = torch.full((cos.shape[0],), math.nan, dtype=torch.float64)
    partner[torch.as_tensor(rows)] = torch.as_tensor(cols, dtype=torch.int64)
    value[torch.as_tensor(rows)] = cos[torch.as_tensor(rows), torch.as_tensor(cols)]
    return partner, value


def match_features(truth_directions: Tensor, decoder: Tensor, *, absolute: bool = False) -> FeatureMatch:
    """Match each true direction `[N, d]` to latents of `decoder` `[n, d]` (Hungarian and max cosine)."""
    truth = _unit_rows(truth_directions, "truth directions")
    dec = _unit_rows(decoder, "decoder", truth.shape[1])
    cos = truth @ dec.T  # N x n; both are small for ground-truth problems
    if absolute:
        cos = cos.abs()
    hungarian_latent, hungarian_cos = _assign(cos)
    max_cos, max_latent = cos.max(dim=1)
    return FeatureMatch(hungarian_latent, hungarian_cos, max_latent, max_cos)


def group_subspace_angles(truth: GroundTruth, match: FeatureMatch, decoder: Tensor) -> Tensor:
    """Principal angles `[G, r]` (radians, ascending) between each group's true subspace and the span of the
    latents matched (Hungarian) to its features; missing or dependent latents count as angles of π/2."""
    rank = truth.config.group_rank
    out = torch.full((truth.num_groups, rank), math.pi / 2, dtype=torch.float64)
    dec = torch.as_tensor(decoder).detach().to("cpu", torch.float64)
    for g in range(truth.num_groups):
        members = truth.group_members(g)
        latents = match.hungarian_latent[members]
        latents = latents[latents >= 0]
        if latents.numel() == 0:
            continue
        angles = principal_angles(truth.directions[members].double(), dec[latents])
        out[g, : angles.numel()] = angles
    return out


class GroupUsage(NamedTuple):
    """Which subspace an SAE uses for each group: from its encoding of inputs written by that group alone."""

    angles: Tensor
    """[G, r] principal angles (radians) between the true subspace and the top-r span of the SAE's latent
    reconstructions (activations @ decoder) of the group's inputs."""
    num_latents: Tensor
    """[G] latents carrying at least `mass_cut` of the group's total activation mass, counted from the largest."""
    captured: Tensor
    """[G] share of the group inputs' squared norm that the latent reconstruction captures inside the true
    subspace minus what it puts outside: 1 − ‖x − P_G x̂‖² / ‖x‖² − ‖x̂ − P_G x̂‖² / ‖x‖²."""


def group_usage(
    truth: GroundTruth,
    group_inputs: Sequence[Tensor],
    encode_dense: Callable[[Tensor], Tensor],
    decoder: Tensor,
    *,
    mass_cut: float = 0.95,
) -> GroupUsage:
    """Feed each group's pure inputs through an SAE encoder and measure the subspace of its reconstructions.

    Unlike the matched-latent span, this needs no assignment of latents to groups: the latents that fire on a
    group's inputs are the ones assigned to it, weighted by how much they fire.
    """
    rank = truth.config.group_rank
    dec = torch.as_tensor(decoder).detach().to("cpu", torch.float64)
    angles = torch.full((truth.num_groups, rank), math.pi / 2, dtype=torch.float64)
    counts = torch.zeros(truth.num_groups, dtype=torch.int64)
    captured = torch.full((truth.num_groups,), math.nan, dtype=torch.float64)
    for g, x in enumerate(group_inputs):
        if x.shape[0] == 0:
            continue
        with torch.no_grad():
            acts = torch.as_tensor(encode_dense(x)).detach().to("cpu", torch.float64)
        recon = acts @ dec
        basis = torch.linalg.qr(truth.directions[truth.group_members(g)].double().T).Q.T  # [r, d]
        _, singular, vh = torch.linalg.svd(recon, full_matrices=False)
        if float(singular[0]) > 0:
            got = principal_angles(basis, vh[:rank])
            angles[g, : got.numel()] = got
        mass = acts.abs().sum(dim=0)
        if float(mass.sum()) > 0:
            cumulative = torch.cumsum(torch.sort(mass, descending=True).values, 0) / mass.sum()
            counts[g] = int((cumulative < mass_cut).sum()) + 1
        xd = x.double()
        inside = (recon @ basis.T) @ basis
        norm = xd.pow(2).sum()
        captured[g] = 1 - ((xd - inside).pow(2).sum() + (recon - inside).pow(2).sum()) / norm
    return GroupUsage(angles, counts, captured)


def nearest_truth(truth: GroundTruth, decoder: Tensor) -> tuple[Tensor, Tensor]:
    """For each latent: the unit of ground truth it lies in most (a group, or a single feature), and the share of
    its (unit) decoder direction's squared norm inside that unit. Units: groups 0..G-1, then single features G+i."""
    dec = _unit_rows(decoder, "decoder", truth.d_in)
    dirs = truth.directions.double()
    singles = torch.nonzero(truth.group < 0).flatten()
    energy = [((dec @ dirs[singles].T) ** 2)] if singles.numel() else []
    group_energy = []
    for g in range(truth.num_groups):
        members = truth.group_members(g)
        # group directions are orthonormal without a projection; use a basis of the span to be safe
        basis = torch.linalg.qr(dirs[members].T).Q.T
        group_energy.append(((dec @ basis.T) ** 2).sum(dim=1, keepdim=True))
    table = torch.cat(group_energy + energy, dim=1)
    share, unit = table.max(dim=1)
    return unit, share


def in_group_axes(truth: GroundTruth, decoder: Tensor, unit: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For each latent whose nearest unit (`nearest_truth`) is a group: write its direction's projection onto the
    group's subspace in the group's own basis, c (unit length). Returns max_i |c_i| (1 = aligned with one true axis,
    1/√r = a cube vertex), the participation ratio 1 / Σ c_i⁴ (how many axes it mixes: 1 to r) and the cosine with
    the nearest cube vertex, Σ|c_i| / √r. NaN for latents nearest a single feature."""
    dec = _unit_rows(decoder, "decoder", truth.d_in)
    axis_cos = torch.full((dec.shape[0],), math.nan, dtype=torch.float64)
    mixed = torch.full((dec.shape[0],), math.nan, dtype=torch.float64)
    vertex = torch.full((dec.shape[0],), math.nan, dtype=torch.float64)
    for g in range(truth.num_groups):
        rows = torch.nonzero(unit == g).flatten()
        if rows.numel() == 0:
            continue
        basis = truth.directions[truth.group_members(g)].double()  # [r, d]
        # coordinates in the (possibly non-orthogonal) group basis: least squares on the basis
        coords = torch.linalg.lstsq(basis.T, dec[rows].T).solution.T  # [rows, r]
        coords = coords / torch.linalg.vector_norm(coords, dim=1, keepdim=True).clamp_min(1e-12)
        axis_cos[rows] = coords.abs().max(dim=1).values
        mixed[rows] = 1.0 / coords.pow(4).sum(dim=1).clamp_min(1e-12)
        vertex[rows] = coords.abs().sum(dim=1) / coords.shape[1] ** 0.5
    return axis_cos, mixed, vertex


@dataclass
class RecoveryResult:
    """Everything measured about how S seeds recovered one ground truth."""

    hungarian_cos: Tensor
    """[S, N] cosine of each feature's Hungarian-matched latent, per seed."""
    max_cos: Tensor
    """[S, N] best cosine of any latent to each feature, per seed."""
    hungarian_latent: Tensor
    """[S, N] the matched latent ids."""
    feature_shared: Tensor
    """[N] fraction of seed pairs whose matched latents for the feature are shared with each other."""
    feature_recovered: Tensor
    """[N] fraction of seeds whose matched latent has cosine above the recovery threshold."""
    group_angles: Tensor
    """[S, G, r] principal angles (radians) between each group's subspace and its matched latents' span."""
    usage_angles: Tensor | None
    """[S, G, r] angles of the subspace each seed uses for each group (`group_usage`), when encoders are given."""
    usage_latents: Tensor | None
    """[S, G] latents carrying 95% of each group's activation mass, per seed."""
    usage_captured: Tensor | None
    """[S, G] share of the group inputs' norm reconstructed inside the true subspace (`GroupUsage.captured`)."""
    latent_stability: Tensor
    """[S, n] fraction of the other seeds in which each latent is shared (with any latent)."""
    latent_unit: Tensor
    """[S, n] nearest ground-truth unit of each latent (groups 0..G-1, then G + single feature index)."""
    latent_unit_share: Tensor
    """[S, n] share of the latent's direction inside that unit."""
    latent_kind: Tensor
    """[S, n] kind code of that unit (KIND_NAMES), or -1 when the share is below the assignment cut."""
    latent_axis_cos: Tensor
    """[S, n] latents lying in a group: max |coordinate| of their in-group direction in the group's basis
    (`in_group_axes`: 1 on a true axis, 1/√r on a cube vertex); NaN for the others."""
    latent_axes_mixed: Tensor
    """[S, n] latents lying in a group: participation ratio of those coordinates (axes mixed, 1..r); NaN else."""
    latent_vertex_cos: Tensor
    """[S, n] latents lying in a group: cosine of their in-group direction with the nearest cube vertex; NaN else."""
    rule: SharingRule
    """The sharing rule the cross-seed figures were judged by."""
    recovery_threshold: float


def evaluate_recovery(
    truth: GroundTruth,
    saes: Sequence[tuple[Tensor, Tensor]],
    *,
    cross: CrossSeedResult | None = None,
    rule: SharingRule | None = None,
    recovery_threshold: float = 0.9,
    assignment_cut: float = 0.5,
    encoders: Sequence[Callable[[Tensor], Tensor]] | None = None,
    group_inputs: Sequence[Tensor] | None = None,
) -> RecoveryResult:
    """Score S SAEs, given as (decoder [n, d], encoder [n, d]) pairs, against `truth`.

    Cross-seed sharing and latent stability come from `cross` (the configuration's cross-seed result, judged
    by `rule` when given); without it the SAEs are aligned here once, through `saeseeds.align.cross_seed`.

    With `encoders` (one `x -> dense activations` per SAE) and `group_inputs` (per group, inputs it writes alone,
    from `SyntheticModel.group_inputs`), also measures the subspace each SAE uses for each group.
    """
    if len(saes) == 0:
        raise DataError("evaluate_recovery: no SAEs given")
    if (encoders is None) != (group_inputs is None) or (encoders is not None and len(encoders) != len(saes)):
        raise DataError("evaluate_recovery: give both `encoders` (one per SAE) and `group_inputs`, or neither")
    matches = [match_features(truth.directions, dec) for dec, _ in saes]
    num_seeds, n_feat = len(saes), truth.num_features
    hungarian_cos = torch.stack([m.hungarian_cos for m in matches])
    hungarian_latent = torch.stack([m.hungarian_latent for m in matches])
    num_latents = [int(dec.shape[0]) for dec, _ in saes]
    if cross is None and num_seeds >= 2:
        cross = align_seeds([(torch.as_tensor(dec), torch.as_tensor(enc)) for dec, enc in saes],
                           [f"seed{k}" for k in range(num_seeds)], rule=rule)
    elif cross is not None and rule is not None:
        cross = cross.with_rule(rule)
    if cross is not None and cross.num_latents != num_latents:
        raise DataError(f"evaluate_recovery: cross-seed result is for sizes {cross.num_latents}, got {num_latents}")
    pair_shared = torch.zeros(n_feat, dtype=torch.float64)
    num_pairs = 0
    for s, t in cross.pair_keys() if cross is not None else []:
        pair = cross.alignments[(s, t)]
        shared = torch.from_numpy(pair.shared)
        dec_partner = torch.from_numpy(pair.dec_partner)
        l_s, l_t = hungarian_latent[s], hungarian_latent[t]
        ok = (l_s >= 0) & (l_t >= 0)
        both = torch.zeros(n_feat, dtype=torch.bool)
        idx = torch.nonzero(ok).flatten()
        both[idx] = shared[l_s[idx]] & (dec_partner[l_s[idx]] == l_t[idx])
        pair_shared += both.double()
        num_pairs += 1
    feature_shared = pair_shared / num_pairs if num_pairs else torch.full((n_feat,), math.nan, dtype=torch.float64)
    latent_stability = [
        torch.from_numpy(cross.stability(k)) if cross is not None else torch.zeros(num_latents[k], dtype=torch.float64)
        for k in range(num_seeds)
    ]
    units, shares, kinds, axis_cos, mixed, vertex = [], [], [], [], [], []
    unit_kind = torch.cat([truth.group_kind, truth.kind[truth.group < 0]])
    for dec, _ in saes:
        unit, share = nearest_truth(truth, dec)
        kind = torch.where(share >= assignment_cut, unit_kind[unit], torch.full_like(unit, -1))
        in_group = torch.where(kind >= 0, unit, torch.full_like(unit, -1))
        a, p, v = in_group_axes(truth, dec, torch.where(in_group < truth.num_groups, in_group, -1))
        axis_cos.append(a)
        mixed.append(p)
        vertex.append(v)
        units.append(unit)
        shares.append(share)
        kinds.append(kind)
    usages = None
    if encoders is not None and group_inputs is not None:
        usages = [group_usage(truth, group_inputs, enc_fn, dec) for enc_fn, (dec, _) in zip(encoders, saes)]
    return RecoveryResult(
        hungarian_cos=hungarian_cos,
        max_cos=torch.stack([m.max_cos for m in matches]),
        hungarian_latent=hungarian_latent,
        feature_shared=feature_shared,
        feature_recovered=(hungarian_cos.nan_to_num(-1.0) > recovery_threshold).double().mean(dim=0),
        group_angles=torch.stack(
            [group_subspace_angles(truth, m, dec) for m, (dec, _) in zip(matches, saes)]
        ),
        usage_angles=torch.stack([u.angles for u in usages]) if usages else None,
        usage_latents=torch.stack([u.num_latents for u in usages]) if usages else None,
        usage_captured=torch.stack([u.captured for u in usages]) if usages else None,
        latent_stability=_stack_ragged(latent_stability),
        latent_unit=_stack_ragged(units, fill=-1),
        latent_unit_share=_stack_ragged(shares),
        latent_kind=_stack_ragged(kinds, fill=-1),
        latent_axis_cos=_stack_ragged(axis_cos),
        latent_axes_mixed=_stack_ragged(mixed),
        latent_vertex_cos=_stack_ragged(vertex),
        rule=cross.rule if cross is not None else (rule or SharingRule()),
        recovery_threshold=recovery_threshold,
    )


def _stack_ragged(rows: Sequence[Tensor], fill: float = math.nan) -> Tensor:
    """Stack per-seed vectors of possibly different lengths, padding with `fill`."""
    width = max(int(r.numel()) for r in rows)
    out = torch.full((len(rows), width), fill, dtype=rows[0].dtype)
    for i, r in enumerate(rows):
        out[i, : r.numel()] = r
    return out


def _mean(values: Tensor) -> float | None:
    values = values[~torch.isnan(values.double())]
    return float(values.double().mean()) if values.numel() else None


def _median(values: Tensor) -> float | None:
    values = values[~torch.isnan(values.double())]
    return float(values.double().median()) if values.numel() else None


def summarize_recovery(truth: GroundTruth, result: RecoveryResult, *, num_frequency_bins: int = 4) -> dict[str, Any]:
    """JSON-ready summary: feature-level and subspace-level figures by kind, and sharing by frequency bin."""
    summary: dict[str, Any] = {"rule": result.rule.to_dict(), "threshold": result.rule.threshold,
                               "recovery_threshold": result.recovery_threshold}
    by_kind: dict[str, Any] = {}
    for code in (*GROUP_KINDS, *(c for c in range(len(KIND_NAMES)) if c not in GROUP_KINDS)):
        mask = truth.kind == code
        if not bool(mask.any()):
            continue
        latent_mask = result.latent_kind == code
        by_kind[KIND_NAMES[code]] = {
            "num_features": int(mask.sum()),
            "mean_hungarian_cos": _mean(result.hungarian_cos[:, mask].flatten()),
            "mean_max_cos": _mean(result.max_cos[:, mask].flatten()),
            "recovered_fraction": _mean(result.feature_recovered[mask]),
            "shared_fraction": _mean(result.feature_shared[mask]),
            "num_latents_per_seed": float(latent_mask.sum()) / result.latent_kind.shape[0],
            "latent_stability": _mean(result.latent_stability[latent_mask]),
        }
    for code in GROUP_KINDS:
        gmask = truth.group_kind == code
        if not bool(gmask.any()):
            continue
        worst = torch.rad2deg(result.group_angles[:, gmask, :].max(dim=2).values)  # [S, groups of this kind]
        entry = by_kind[KIND_NAMES[code]]
        in_kind = result.latent_kind == code
        entry["latent_axis_cos_median"] = _median(result.latent_axis_cos[in_kind])
        entry["latent_axes_mixed_median"] = _median(result.latent_axes_mixed[in_kind])
        entry["latent_vertex_cos_median"] = _median(result.latent_vertex_cos[in_kind])
        entry["matched_span_max_angle_deg_mean"] = float(worst.mean())
        entry["matched_span_max_angle_deg_worst"] = float(worst.max())
        if result.usage_angles is not None:
            used = torch.rad2deg(result.usage_angles[:, gmask, :].max(dim=2).values)
            entry["usage_max_angle_deg_mean"] = float(used.mean())
            entry["usage_max_angle_deg_worst"] = float(used.max())
            entry["usage_latents_mean"] = float(result.usage_latents[:, gmask].double().mean())
            entry["usage_captured_mean"] = _mean(result.usage_captured[:, gmask].flatten())
    summary["by_kind"] = by_kind
    groups = []
    for g in range(truth.num_groups):
        angles = result.group_angles[:, g, :]  # [S, r]
        groups.append(
            {
                "group": g,
                "kind": KIND_NAMES[int(truth.group_kind[g])],
                "max_angle_deg_per_seed": torch.rad2deg(angles.max(dim=1).values).tolist(),
                "mean_angle_deg": float(torch.rad2deg(angles).mean()),
                "feature_shared": _mean(result.feature_shared[truth.group_members(g)]),
                "mean_hungarian_cos": _mean(result.hungarian_cos[:, truth.group_members(g)].flatten()),
            }
        )
        if result.usage_angles is not None:
            usage = result.usage_angles[:, g, :]
            groups[-1]["usage_max_angle_deg_per_seed"] = torch.rad2deg(usage.max(dim=1).values).tolist()
            groups[-1]["usage_latents_per_seed"] = result.usage_latents[:, g].tolist()
            groups[-1]["usage_captured_per_seed"] = result.usage_captured[:, g].tolist()
    summary["groups"] = groups
    singles = torch.nonzero(truth.kind == KIND_NAMES.index("single")).flatten()
    if singles.numel() >= num_frequency_bins:
        freq = truth.firing_prob[singles].double()
        order = torch.argsort(freq, descending=True)
        bins = []
        for chunk in np.array_split(order.numpy(), num_frequency_bins):
            idx = singles[torch.as_tensor(chunk)]
            bins.append(
                {
                    "min_firing_prob": float(truth.firing_prob[idx].min()),
                    "max_firing_prob": float(truth.firing_prob[idx].max()),
                    "num_features": int(idx.numel()),
                    "shared_fraction": _mean(result.feature_shared[idx]),
                    "recovered_fraction": _mean(result.feature_recovered[idx]),
                    "mean_hungarian_cos": _mean(result.hungarian_cos[:, idx].flatten()),
                }
            )
        summary["single_features_by_frequency"] = bins
        summary["spearman_frequency_vs_shared"] = _spearman(freq, result.feature_shared[singles])
        summary["spearman_frequency_vs_recovered"] = _spearman(freq, result.feature_recovered[singles])
    return summary


def _spearman(x: Tensor, y: Tensor) -> float | None:
    from scipy.stats import spearmanr

    if x.numel() < 3 or float(y.std()) == 0.0 or float(x.std()) == 0.0:
        return None
    return float(spearmanr(x.numpy(), y.numpy()).statistic)
