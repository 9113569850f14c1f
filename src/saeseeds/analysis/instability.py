"""Why latents are unstable: the whole analysis of one SAE configuration across seeds, as plain results.

For each configuration (hookpoint, SAE name) of a run: per-latent stability across seeds, trigger statistics
and top contexts, ablation of stable / unstable / random sets (FVU and LM loss), and the reproducibility
of the unstable latents' decoder spans. `saeseeds analyze` writes these results to JSON and figures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from saeseeds.align.cross_seed import CrossSeedResult
from saeseeds.align.sharing import SharingRule
from saeseeds.analysis.ablation import (
    AblationRow,
    AblationSet,
    ablation_fvu,
    ablation_lm_loss,
    ablation_table,
    build_ablation_sets,
    z_score,
)
from saeseeds.analysis.eval_data import EvalData
from saeseeds.analysis.subspaces import (
    close_groups,
    expected_random_mean_cos2,
    pairwise_overlaps,
    random_isotropic_overlaps,
    random_subset_overlaps,
    single_threaded_linalg,
    spectrum,
    summarize_overlaps,
)
from saeseeds.analysis.triggers import (
    ContextExample,
    GroupComparison,
    TopActivations,
    TriggerAccumulator,
    TriggerStats,
    compare_groups,
    sparse_from_code,
    top_contexts,
)
from saeseeds.errors import DataError
from saeseeds.sae.model import SparseAutoencoder


@dataclass
class AnalyzeOptions:
    """Knobs of the instability analysis (CLI flags of `saeseeds analyze`)."""

    rule: SharingRule = field(default_factory=SharingRule)
    """Sharing threshold, stability estimator and stable / unstable cut (the project's one definition)."""
    n_top: int = 10
    """Top-activating contexts kept per latent."""
    n_show: int = 10
    """Latents shown in the contexts page for each of least / most stable."""
    n_random: int = 5
    """Random control draws per set size (ablation) and per pair (subspace baselines)."""
    group_threshold: float = 0.5
    """|cos| above which two unstable latents (any seeds) are joined into a group."""
    subspace_dim: int = 0
    """Compare top-q principal subspaces with q ≤ this; 0 means d_in // 4."""
    lm_loss: bool = True
    lm_batch_size: int = 8
    seed: int = 0
    progress: bool = False


@dataclass
class ConfigAnalysis:
    """Everything measured for one configuration; `tables` are JSON-ready, tensors kept for plots/pages."""

    hookpoint: str
    sae_name: str
    seeds: list[int]
    tables: dict[str, Any] = field(default_factory=dict)
    stability: list[StabilityGroups] = field(default_factory=list)
    triggers: list[TriggerStats] = field(default_factory=list)
    contexts: dict[int, list[ContextExample]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# stability


@dataclass(frozen=True)
class StabilityGroups:
    """One seed's stability and stable / unstable masks as torch tensors (the analyses compute in torch)."""

    stability: Tensor
    """float64 [n]: fraction of the other seeds in which the latent is found."""
    stable: Tensor
    """bool [n]."""
    unstable: Tensor
    """bool [n]."""
    n_others: int


def seed_groups(cross: CrossSeedResult) -> list[StabilityGroups]:
    """The stable / unstable split of every seed, read from the cross-seed result (no alignment here)."""
    return [
        StabilityGroups(torch.from_numpy(g.stability.copy()), torch.from_numpy(g.stable.copy()),
                        torch.from_numpy(g.unstable.copy()), g.n_others)
        for g in cross.groups()
    ]


# --------------------------------------------------------------------------------------------
# triggers


@torch.no_grad()
def trigger_pass(
    sae: SparseAutoencoder, data: EvalData, hookpoint: str, *, n_top: int
) -> tuple[TriggerStats, TopActivations]:
    """One pass over the evaluation batches: trigger statistics and per-latent top activations."""
    vocab = data.vocab_size if data.has_tokens else 1
    acc = TriggerAccumulator(sae.num_latents, vocab)
    top = TopActivations(sae.num_latents, n_top)
    for batch in data.batches:
        x = batch.acts[hookpoint].to(sae.device)
        sp = sparse_from_code(*sae.encode(x))
        tokens = batch.token_ids if batch.token_ids is not None else torch.zeros(x.shape[0], dtype=torch.long)
        acc.update(sp, tokens)
        top.update(sp, batch.positions)
    return acc.stats(), top


TRIGGER_STATISTICS = ("frequency", "mean_activation", "entropy", "top_token_share", "distinct_tokens")


def compare_triggers(
    stats: Sequence[TriggerStats], groups: Sequence[StabilityGroups], *, has_tokens: bool
) -> list[GroupComparison]:
    """Stable vs unstable latents, pooled over seeds, for each trigger statistic (token ones only with tokens)."""
    names = TRIGGER_STATISTICS if has_tokens else TRIGGER_STATISTICS[:2]
    stable = torch.cat([g.stable for g in groups])
    unstable = torch.cat([g.unstable for g in groups])
    out = []
    for name in names:
        values = torch.cat([getattr(s, name).double() for s in stats])
        if name != "frequency":  # latents that never fire have no trigger; frequency 0 is a real value
            values = torch.where(torch.cat([s.fire_count for s in stats]) > 0, values, math.nan)
        out.append(compare_groups(name, values, stable, unstable))
    return out


# --------------------------------------------------------------------------------------------
# ablation


def run_ablation(
    sae: SparseAutoencoder,
    groups: StabilityGroups,
    alive: Tensor,
    data: EvalData,
    hookpoint: str,
    opts: AnalyzeOptions,
    hook_input: bool = False,
) -> dict[str, Any]:
    """Ablation table of one seed: FVU for every set, and LM loss when the run has a causal LM."""
    gen = torch.Generator().manual_seed(opts.seed)
    sets: list[AblationSet] = build_ablation_sets(
        groups.stable & alive, groups.unstable & alive, n_random=opts.n_random, pool=alive, generator=gen
    )
    fvu = ablation_fvu(sae, data.acts(hookpoint), sets)
    results: dict[str, dict[str, float]] = {name: {"fvu": v} for name, v in fvu.items()}
    lm_note = "disabled (--no-lm-loss)"
    if opts.lm_loss and data.has_tokens and data.loaded is not None:
        try:
            lm = ablation_lm_loss(
                sae, data.loaded.model, data.chunks, hookpoint, sets, hook_input=hook_input,
                batch_size=opts.lm_batch_size, special_ids=data.special_ids, progress=opts.progress,
            )
            for name, metrics in lm.items():
                results[name].update(metrics)
            lm_note = "ok"
        except DataError as err:
            lm_note = f"unavailable: {err}"
    elif opts.lm_loss:
        lm_note = "unavailable: the run's activations do not come from a language model"
    rows = ablation_table(sets, results)
    by_name = {r.name: r for r in rows}
    effects: dict[str, Any] = {}
    for metric in ("fvu", "ce", "loss_recovered"):
        if metric not in by_name["none"].metrics:
            continue
        for group, control in (("stable", "random_like_stable"), ("unstable", "random_like_unstable")):
            if control in by_name and metric in by_name[group].metrics:
                effects[f"{group}_{metric}_z_vs_random"] = z_score(by_name[group].metrics[metric], by_name[control], metric)
    return {
        "sets_note": "stable/unstable restricted to latents alive on the eval data; controls drawn from alive latents",
        "zero_reconstruction": "ablating every latent leaves x̂ = b_dec (the 'all' row)",
        "lm_loss": lm_note,
        "rows": [asdict(r) for r in rows],
        "z_scores": effects,
    }


# --------------------------------------------------------------------------------------------
# subspaces


def run_subspaces(
    saes: Sequence[SparseAutoencoder], groups: Sequence[StabilityGroups], alive: Sequence[Tensor], opts: AnalyzeOptions
) -> dict[str, Any]:
    """Span reproducibility across seeds of unstable vs stable vs random latent sets, ranks, and groups."""
    with single_threaded_linalg():
        return _run_subspaces(saes, groups, alive, opts)


def _run_subspaces(
    saes: Sequence[SparseAutoencoder], groups: Sequence[StabilityGroups], alive: Sequence[Tensor], opts: AnalyzeOptions
) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(opts.seed + 1)
    decs = [s.W_dec.detach().double().cpu() for s in saes]
    d = decs[0].shape[1]
    unstable = [dec[g.unstable & a] for dec, g, a in zip(decs, groups, alive)]
    stable = [dec[g.stable & a] for dec, g, a in zip(decs, groups, alive)]
    cap = opts.subspace_dim if opts.subspace_dim > 0 else max(d // 4, 1)
    out: dict[str, Any] = {"d_in": d, "n_unstable": [u.shape[0] for u in unstable], "n_stable": [s.shape[0] for s in stable]}
    if len(saes) < 2:
        out["note"] = "needs at least two seeds"
        return out
    q = min(min(u.shape[0] for u in unstable), cap)
    q_stable = min(min(s.shape[0] for s in stable), cap)
    out["dim"] = q
    out["dim_stable"] = q_stable
    if q == 0:
        out["note"] = "some seed has no alive unstable latents; nothing to compare"
        return out
    out["dim_note"] = (
        f"each set is reduced to its top-{q} principal subspace (q = min(smallest unstable set, cap {cap})); "
        f"random baselines use the same q; stable sets use q_stable = {q_stable} (equal to q when large enough)"
    )
    alive_decs = [dec[a] for dec, a in zip(decs, alive)]
    summaries = {
        "unstable": summarize_overlaps(pairwise_overlaps(unstable, dim=q)),
        "stable": summarize_overlaps(pairwise_overlaps(stable, dim=min(q, q_stable))) if q_stable else summarize_overlaps([]),
    }
    subset, iso = [], []
    for i in range(len(decs)):
        for j in range(i + 1, len(decs)):
            subset += random_subset_overlaps(
                alive_decs[i], alive_decs[j], unstable[i].shape[0], unstable[j].shape[0], dim=q,
                draws=opts.n_random, generator=gen,
            )
            iso += random_isotropic_overlaps(
                unstable[i].shape[0], unstable[j].shape[0], d, dim=q, draws=opts.n_random, generator=gen
            )
    summaries["random_latents_like_unstable"] = summarize_overlaps(subset)
    summaries["random_isotropic"] = summarize_overlaps(iso)
    out["overlaps"] = {k: asdict(v) for k, v in summaries.items()}
    out["expected_random_mean_cos2"] = expected_random_mean_cos2(q, q, d)
    # effective rank of the union of unstable directions across seeds, vs random alive latents of the same counts
    union = torch.cat(unstable)
    rand_union = torch.cat(
        [a[torch.randperm(a.shape[0], generator=gen)[: u.shape[0]]] for a, u in zip(alive_decs, unstable)]
    )
    out["union_spectrum"] = {
        "unstable": _spectrum_summary(union),
        "random_latents_same_counts": _spectrum_summary(rand_union),
        "stable": _spectrum_summary(torch.cat(stable)),
        "per_seed_unstable": [_spectrum_summary(u) for u in unstable],
    }
    rep = close_groups(unstable, threshold=opts.group_threshold)
    multi = [g for g in rep.groups if g.n_sets >= 2]
    out["groups"] = {
        "threshold": rep.threshold,
        "n_directions": rep.n_directions,
        "n_groups": len(rep.groups),
        "n_cross_seed_groups": len(multi),
        "n_low_rank_cross_seed": sum(1 for g in multi if g.rank90 < g.size),
        "latents_in_cross_seed_groups": sum(g.size for g in multi),
        "groups": [
            {"size": g.size, "n_seeds": g.n_sets, "rank90": g.rank90,
             "participation_ratio": g.participation_ratio, "members": g.members[:50]}
            for g in rep.groups[:200]
        ],
    }
    return out


def _spectrum_summary(rows: Tensor) -> dict[str, Any]:
    s = spectrum(rows)
    return {
        "n_vectors": s.n_vectors,
        "participation_ratio": s.participation_ratio,
        "entropy_rank": s.entropy_rank,
        "rank90": s.rank90,
        "energy": s.energy[:256],
    }


# --------------------------------------------------------------------------------------------
# one configuration


def analyze_config(
    hookpoint: str,
    sae_name: str,
    seeds: Sequence[int],
    saes: Sequence[SparseAutoencoder],
    data: EvalData,
    opts: AnalyzeOptions,
    cross: CrossSeedResult,
    *,
    hook_input: bool = False,
) -> ConfigAnalysis:
    """Run every analysis for one configuration; seed index 0 is the base (ablation, contexts).

    Stability comes from `cross` (judged by `opts.rule`): this function aligns nothing.
    """
    if len(saes) < 2:
        raise DataError(f"{hookpoint}/{sae_name}: stability needs at least two seeds, found {len(saes)}")
    if cross.num_seeds != len(saes) or cross.num_latents != [s.num_latents for s in saes]:
        raise DataError(
            f"{hookpoint}/{sae_name}: the cross-seed result has {cross.num_seeds} seeds of sizes "
            f"{cross.num_latents}, the analysis got {len(saes)} of sizes {[s.num_latents for s in saes]}"
        )
    res = ConfigAnalysis(hookpoint, sae_name, list(seeds))
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    res.stability = seed_groups(cross.with_rule(opts.rule))
    lap("stability")
    tops = []
    for sae in saes:
        stats, top = trigger_pass(sae, data, hookpoint, n_top=opts.n_top)
        res.triggers.append(stats)
        tops.append(top)
    alive = [s.fire_count > 0 for s in res.triggers]
    lap("triggers")
    res.tables["stability"] = {
        "rule": opts.rule.to_dict(),
        "per_seed": [
            {
                "seed": seed,
                "n_latents": int(g.stability.numel()),
                "n_stable": int(g.stable.sum()),
                "n_unstable": int(g.unstable.sum()),
                "n_unstable_alive": int((g.unstable & a).sum()),
                "n_dead": int((~a).sum()),
                "mean_stability": float(g.stability.mean()),
            }
            for seed, g, a in zip(seeds, res.stability, alive)
        ],
    }
    comparisons = compare_triggers(res.triggers, res.stability, has_tokens=data.has_tokens)
    res.tables["triggers"] = {
        "pooled_over_seeds": True,
        "dead_latents": "never-firing latents enter frequency (as 0) but no other statistic",
        "comparisons": [asdict(c) for c in comparisons],
    }
    res.tables["ablation"] = run_ablation(saes[0], res.stability[0], alive[0], data, hookpoint, opts, hook_input)
    lap("ablation")
    res.tables["subspaces"] = run_subspaces(saes, res.stability, alive, opts)
    lap("subspaces")
    if data.has_tokens and data.tokenizer is not None:
        stab, freq = res.stability[0].stability, res.triggers[0].frequency
        by_freq = torch.argsort(freq, descending=True, stable=True)  # ties in stability: most frequent first
        least_order = by_freq[torch.argsort(stab[by_freq], stable=True)]
        most_order = by_freq[torch.argsort(stab[by_freq], descending=True, stable=True)]
        least = least_order[alive[0][least_order]][: opts.n_show].tolist()
        most = most_order[alive[0][most_order]][: opts.n_show].tolist()
        res.contexts = top_contexts(tops[0], least + most, data.chunks, data.tokenizer.decode)
        res.tables["contexts"] = {"least_stable": least, "most_stable": most}
    lap("contexts")
    res.tables["timings_s"] = timings
    res.tables["claims"] = judge_claims(res.tables)
    return res


# --------------------------------------------------------------------------------------------
# verdicts


def _row_from_dict(row: dict[str, Any]) -> AblationRow:
    return AblationRow(row["name"], row["size"], row["n_draws"], row["metrics"], row["spread"])


def judge_claims(tables: dict[str, Any]) -> dict[str, Any]:
    """Whether each claim of the seed-dependence study holds here, with the numbers behind each verdict."""
    claims: dict[str, Any] = {}
    rows = {r["name"]: r for r in tables["ablation"]["rows"]}
    for metric, sign in (("fvu", 1.0), ("loss_recovered", -1.0)):
        if metric not in rows["none"]["metrics"]:
            continue
        names = ("none", "stable", "unstable", "random_like_stable", "random_like_unstable", "all")
        val = {k: rows[k]["metrics"][metric] for k in names if k in rows}
        z = {
            group: z_score(val[group], _row_from_dict(rows[control]), metric)
            for group, control in (("stable", "random_like_stable"), ("unstable", "random_like_unstable"))
            if control in rows
        }
        total = sign * (val["all"] - val["none"])
        share = {g: sign * (val[g] - val["none"]) / total if total else math.nan for g in ("stable", "unstable")}
        if rows["stable"]["size"] == 0 or rows["unstable"]["size"] == 0:
            holds: bool | None = None  # undetermined: a group is empty
        else:
            # size-matched: the stable set hurts more than random sets of its size (by > 2 control std),
            # the unstable set hurts less than random sets of its size
            holds = bool(sign * z.get("stable", math.nan) > 2 and sign * z.get("unstable", math.nan) < 0)
        claims[f"stable_carry_{'reconstruction' if metric == 'fvu' else 'prediction'}"] = {
            "holds": holds,
            "metric": metric,
            "values": val,
            "z_vs_size_matched_random": z,
            "share_of_full_ablation_effect": share,
            "sizes": {k: rows[k]["size"] for k in val},
            "rule": f"ablating the stable set changes {metric} more than random sets of its size (z > 2 in the harmful "
                    "direction) and ablating the unstable set changes it less than random sets of its size",
        }
    comps = {c["statistic"]: c for c in tables["triggers"]["comparisons"]}
    f = comps.get("frequency")
    if f and not (f["n_stable"] and f["n_unstable"]):
        claims["unstable_rarer"] = {"holds": None, "note": "a stability group is empty"}
    elif f:
        claims["unstable_rarer"] = {
            "holds": bool(f["median_unstable"] < f["median_stable"] and f["p_value"] < 0.05),
            "median_frequency_stable": f["median_stable"],
            "median_frequency_unstable": f["median_unstable"],
            "p_value": f["p_value"],
        }
    t = comps.get("top_token_share")
    if t and not (t["n_stable"] and t["n_unstable"]):
        claims["unstable_more_token_specific"] = {"holds": None, "note": "a stability group is empty"}
    elif t:
        claims["unstable_more_token_specific"] = {
            "holds": bool(t["median_unstable"] > t["median_stable"] and t["p_value"] < 0.05),
            "median_top_token_share_stable": t["median_stable"],
            "median_top_token_share_unstable": t["median_unstable"],
            "p_value": t["p_value"],
            "median_entropy_stable": comps["entropy"]["median_stable"],
            "median_entropy_unstable": comps["entropy"]["median_unstable"],
        }
    sub = tables["subspaces"]
    if "overlaps" in sub:
        ov = sub["overlaps"]
        u, r = ov["unstable"], ov["random_latents_like_unstable"]
        spread = r["mean_cos2_std"] if math.isfinite(r["mean_cos2_std"]) else 0.0
        claims["unstable_spans_reproducible"] = {
            "holds": bool(u["mean_cos2_mean"] > r["mean_cos2_mean"] + 2 * spread
                          and u["mean_cos2_mean"] > sub["expected_random_mean_cos2"]),
            "dim": sub["dim"],
            "unstable_mean_cos2": u["mean_cos2_mean"],
            "random_latent_subsets_mean_cos2": r["mean_cos2_mean"],
            "random_latent_subsets_std": r["mean_cos2_std"],
            "random_isotropic_mean_cos2": ov["random_isotropic"]["mean_cos2_mean"],
            "analytic_random_r_over_d": sub["expected_random_mean_cos2"],
            "stable_mean_cos2": ov["stable"]["mean_cos2_mean"],
            "rule": "unstable spans overlap across seeds more than random alive-latent subsets of the same size "
                    "(mean + 2 std) and more than random subspaces (r/d)",
        }
    return claims
