"""Why latents are unstable: the whole analysis of one SAE configuration across seeds, as plain results.

For each configuration (hookpoint, SAE name) of a run: per-latent stability across seeds, trigger statistics
and top contexts, ablation of stable / unstable / random sets (FVU and LM loss), and the reproducibility
of the unstable latents' decoder spans. Every claim is tested per seed against frequency-matched controls and
judged across seeds with Holm's correction (`saeseeds.analysis.verdicts`, docs/definitions.md "Verdicts").
`saeseeds analyze` writes these results to JSON and figures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
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
)
from saeseeds.analysis.eval_data import EvalData
from saeseeds.analysis.output_recovered import ablation_output_recovered
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
from saeseeds.analysis.verdicts import (
    MAX_DENSE_LATENTS,
    AblationStats,
    ClaimSpec,
    ablation_test,
    combine_seeds,
    frequency_strata,
    holm,
    spans_test,
    stratified_rank_test,
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
    n_random: int = 200
    """Random control draws per seed and claim (empirical p-values); the descriptive subspace baselines use
    at most 5 (descriptive only)."""
    n_random_lm: int = 50
    """Random control draws per seed for the LM-based ablation (each draw is a pass of the model); ≤ n_random."""
    freq_bins: int = 10
    """Frequency strata (quantile bins of log-frequency of the alive latents) for matched controls."""
    match: str = "frequency"
    """Control matching: "frequency", "frequency_mass" (bins split at the median activation mass) or "none"."""
    alpha: float = 0.05
    """Family-wise level of the Holm-corrected verdicts."""
    max_tokens: int = 262_144
    """Token budget of the firing, trigger and ablation statistics: held-out rows, then training rows (0: the
    held-out rows only). Set by `saeseeds analyze --max-tokens`."""
    group_threshold: float = 0.5
    """|cos| above which two unstable latents (any seeds) are joined into a group."""
    subspace_dim: int = 0
    """Compare top-q principal subspaces with q ≤ this; 0 means d_in // 4."""
    lm_loss: bool = True
    lm_max_chunks: int = 0
    """Held-out chunks used by the model-based ablation (one model pass per set; 0: all)."""
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
# one pass per seed: triggers, top contexts, ablation statistics


@dataclass
class SeedPass:
    """What one pass of a seed's SAE over the analysis tokens gives."""

    stats: TriggerStats
    top: TopActivations | None
    """Per-latent top activations (only where asked for: the contexts page shows the first seed)."""
    ablation: AblationStats | None
    """Sufficient statistics for the FVU of any ablated set (None above the dense co-activation cap)."""


@torch.no_grad()
def seed_pass(sae: SparseAutoencoder, data: EvalData, hookpoint: str, *, n_top: int, tops: bool = True) -> SeedPass:
    """One encode of every analysis batch: trigger statistics, top activations and ablation statistics."""
    vocab = data.vocab_size if data.has_tokens else 1
    acc = TriggerAccumulator(sae.num_latents, vocab)
    top = TopActivations(sae.num_latents, n_top) if tops else None
    abl = AblationStats(sae.W_dec.detach().float().cpu()) if sae.num_latents <= MAX_DENSE_LATENTS else None
    for batch in data.batches:
        x = batch.acts[hookpoint].to(sae.device)
        code = sae.encode(x)
        sp = sparse_from_code(*code)
        tokens = batch.token_ids if batch.token_ids is not None else torch.zeros(x.shape[0], dtype=torch.long)
        acc.update(sp, tokens)
        if top is not None:
            top.update(sp, batch.positions)
        if abl is not None:
            abl.update(x.cpu(), code.values.detach().cpu(), code.indices.cpu(), sae.decode(code).detach().cpu())
    return SeedPass(acc.stats(), top, abl)


def trigger_pass(
    sae: SparseAutoencoder, data: EvalData, hookpoint: str, *, n_top: int
) -> tuple[TriggerStats, TopActivations]:
    """One pass over the evaluation batches: trigger statistics and per-latent top activations."""
    res = seed_pass(sae, data, hookpoint, n_top=n_top)
    assert res.top is not None
    return res.stats, res.top


TRIGGER_STATISTICS = ("frequency", "mean_activation", "entropy", "top_token_share", "distinct_tokens")


def compare_triggers(
    stats: Sequence[TriggerStats], groups: Sequence[StabilityGroups], *, has_tokens: bool
) -> list[list[GroupComparison]]:
    """Stable vs unstable alive latents of each seed (never pooled), for each trigger statistic (descriptive)."""
    names = TRIGGER_STATISTICS if has_tokens else TRIGGER_STATISTICS[:2]
    out = []
    for s, g in zip(stats, groups):
        alive = s.fire_count > 0
        out.append([compare_groups(name, getattr(s, name).double(), g.stable & alive, g.unstable & alive)
                    for name in names])
    return out


# --------------------------------------------------------------------------------------------
# subspaces

SUBSPACE_DRAWS = 5
"""Cap on the random draws of the descriptive subspace baselines (the verdict has its own matched test)."""


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
                draws=min(opts.n_random, SUBSPACE_DRAWS), generator=gen,
            )
            iso += random_isotropic_overlaps(
                unstable[i].shape[0], unstable[j].shape[0], d, dim=q, draws=min(opts.n_random, SUBSPACE_DRAWS), generator=gen
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
# ablation


class _Recorder:
    """Wraps a set metric so the table can be rebuilt from the very sets a verdict was computed on."""

    def __init__(self, fn: Callable[[Tensor], list[dict[str, float]]], key: str) -> None:
        self.fn, self.key = fn, key
        self.masks: Tensor | None = None
        self.results: list[dict[str, float]] = []

    def __call__(self, masks: Tensor) -> Tensor:
        every = torch.cat([masks, torch.ones((1, masks.shape[1]), dtype=torch.bool)])  # + the "all" set
        self.masks, self.results = every, self.fn(every)
        return torch.tensor([r[self.key] for r in self.results[:-1]], dtype=torch.float64)

    def rows(self, n_draws: int) -> list[AblationRow]:
        assert self.masks is not None
        names = (["none", "stable", "unstable"] + [f"random_like_stable/{i}" for i in range(n_draws)]
                 + [f"random_like_unstable/{i}" for i in range(n_draws)] + ["all"])
        sets = [AblationSet(name, name.split("/")[0], m) for name, m in zip(names, self.masks)]
        return ablation_table(sets, {name: r for name, r in zip(names, self.results)})


def _fvu_fn(sae: SparseAutoencoder, passed: SeedPass, data: EvalData, hookpoint: str
            ) -> tuple[Callable[[Tensor], list[dict[str, float]]], str]:
    if passed.ablation is not None:
        stats = passed.ablation
        return (lambda masks: [{"fvu": float(v)} for v in stats.fvu(masks)],
                f"exact FVU of every set from one encode of the analysis tokens ({stats.count} rows)")

    def decode_each(masks: Tensor) -> list[dict[str, float]]:
        sets = [AblationSet(f"s{i}", "s", m) for i, m in enumerate(masks)]
        v = ablation_fvu(sae, data.acts(hookpoint), sets)
        return [{"fvu": v[s.name]} for s in sets]

    return decode_each, "FVU decoded set by set on the held-out rows (dictionary above the dense cap)"


def _lm_fn(sae: SparseAutoencoder, data: EvalData, hookpoint: str, opts: AnalyzeOptions, hook_input: bool
           ) -> tuple[Callable[[Tensor], list[dict[str, float]]] | None, str, str]:
    """(set metric, metric name, note) of the model-based ablation: LM loss (causal) or output recovered."""
    if not opts.lm_loss:
        return None, "", "disabled (--no-lm-loss)"
    if not (data.has_tokens and data.loaded is not None):
        return None, "", "unavailable: the run's activations do not come from a language model loaded here"
    if getattr(data.loaded, "is_causal", True):
        fn, key = ablation_lm_loss, "loss_recovered"
    else:
        fn, key = ablation_output_recovered, "output_recovered"

    def evaluate(masks: Tensor) -> list[dict[str, float]]:
        sets = [AblationSet(f"s{i}", "s", m) for i, m in enumerate(masks)]
        chunks = data.chunks[: opts.lm_max_chunks] if opts.lm_max_chunks > 0 else data.chunks
        res = fn(sae, data.loaded.model, chunks, hookpoint, sets, hook_input=hook_input,
                 batch_size=opts.lm_batch_size, special_ids=data.special_ids, progress=opts.progress)
        return [dict(res[s.name]) for s in sets]

    return evaluate, key, "ok"


def run_ablation(
    sae: SparseAutoencoder,
    groups: StabilityGroups,
    passed: SeedPass,
    data: EvalData,
    hookpoint: str,
    opts: AnalyzeOptions,
    strata: Tensor,
    generator: torch.Generator,
    hook_input: bool = False,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """One seed's ablation: the table and the per-seed tests of the reconstruction and prediction claims.

    Stable / unstable sets are their alive latents; each is compared with `opts.n_random` random sets matched
    on firing frequency (`strata`). FVU is exact from sufficient statistics over the analysis tokens; the
    model-based metric (LM loss recovered for a causal LM, output recovered otherwise) runs on the held-out
    chunks with `min(n_random, n_random_lm)` draws.
    """
    fvu_fn, fvu_note = _fvu_fn(sae, passed, data, hookpoint)
    fvu = _Recorder(fvu_fn, "fvu")
    tests = {"fvu": ablation_test(fvu, groups.stable, groups.unstable, strata, opts.n_random, generator)}
    if fvu.masks is None:  # no test (an empty group): the table still shows the fixed sets
        alive = strata >= 0
        fixed = torch.stack([torch.zeros_like(alive), groups.stable & alive, groups.unstable & alive])
        fvu(fixed)
        rows = _Recorder.rows(fvu, 0)
    else:
        rows = fvu.rows(opts.n_random)
    lm_rows: list[AblationRow] = []
    fn, key, lm_note = _lm_fn(sae, data, hookpoint, opts, hook_input)
    if fn is not None:
        draws = max(1, min(opts.n_random, opts.n_random_lm))
        lm = _Recorder(fn, key)
        try:
            tests[key] = ablation_test(lm, groups.stable, groups.unstable, strata, draws, generator,
                                       higher_is_worse=False)
            lm_rows = lm.rows(draws) if lm.masks is not None else []
        except DataError as err:
            lm_note = f"unavailable: {err}"
            tests[key] = {"p": math.nan, "note": lm_note}
    else:
        tests["prediction"] = {"p": math.nan, "note": f"model-based ablation {lm_note}"}
    by_name = {r.name: r for r in lm_rows}
    merged = []
    for r in rows:  # FVU rows, with the model metrics of the same-named sets (draw counts may differ)
        other = by_name.get(r.name)
        merged.append(asdict(r) | ({"lm_metrics": other.metrics, "lm_spread": other.spread,
                                    "lm_n_draws": other.n_draws} if other else {}))
        if other:
            merged[-1]["metrics"] = {**r.metrics, **other.metrics}
            merged[-1]["spread"] = {**r.spread, **other.spread}
    table = {
        "sets_note": "stable/unstable: their latents alive on the analysis tokens; random sets matched on firing "
                     f"frequency ({opts.match}, {opts.freq_bins} bins), drawn from the alive latents of each bin",
        "fvu_note": fvu_note,
        "zero_reconstruction": "ablating every latent leaves x̂ = b_dec (the 'all' row)",
        "lm_loss": lm_note,
        "lm_metric": key or None,
        "rows": merged,
    }
    return table, tests


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
    tokens: EvalData | None = None,
) -> ConfigAnalysis:
    """Run every analysis for one configuration; every seed is a base for the verdicts (seed 0 for contexts).

    `data` is the held-out set (model-based ablation); `tokens` the analysis tokens for firing, triggers and
    ablation FVU (default: `data`). Stability comes from `cross` (judged by `opts.rule`): nothing is aligned.
    """
    if len(saes) < 2:
        raise DataError(f"{hookpoint}/{sae_name}: stability needs at least two seeds, found {len(saes)}")
    if cross.num_seeds != len(saes) or cross.num_latents != [s.num_latents for s in saes]:
        raise DataError(
            f"{hookpoint}/{sae_name}: the cross-seed result has {cross.num_seeds} seeds of sizes "
            f"{cross.num_latents}, the analysis got {len(saes)} of sizes {[s.num_latents for s in saes]}"
        )
    tokens = tokens if tokens is not None else data
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
    passes = [seed_pass(sae, tokens, hookpoint, n_top=opts.n_top, tops=i == 0) for i, sae in enumerate(saes)]
    res.triggers = [p.stats for p in passes]
    alive = [s.fire_count > 0 for s in res.triggers]
    lap("encode")
    res.tables["stability"] = {
        "rule": opts.rule.to_dict(),
        "per_seed": [
            {
                "seed": seed,
                "n_latents": int(g.stability.numel()),
                "n_stable": int(g.stable.sum()),
                "n_unstable": int(g.unstable.sum()),
                "n_stable_alive": int((g.stable & a).sum()),
                "n_unstable_alive": int((g.unstable & a).sum()),
                "n_dead": int((~a).sum()),
                "mean_stability": float(g.stability.mean()),
            }
            for seed, g, a in zip(seeds, res.stability, alive)
        ],
        "tokens": res.triggers[0].tokens_seen,
        "dead": "never fires on the analysis tokens; excluded from every stable-vs-unstable test",
    }
    comparisons = compare_triggers(res.triggers, res.stability, has_tokens=tokens.has_tokens)
    res.tables["triggers"] = {
        "pooled_over_seeds": False,
        "dead_latents": "excluded (alive latents only); counted per seed",
        "tokens": res.triggers[0].tokens_seen,
        "per_seed": [{"seed": seed, "n_dead": int((~a).sum()), "comparisons": [asdict(c) for c in comps]}
                     for seed, a, comps in zip(seeds, alive, comparisons)],
    }
    strata = [
        frequency_strata(t.frequency, a, n_bins=opts.freq_bins, match=opts.match,
                         mass=t.frequency * t.mean_activation.nan_to_num(0) * s.W_dec.detach().norm(dim=1).double().cpu())
        for t, a, s in zip(res.triggers, alive, saes)
    ]
    per_seed: dict[str, list[dict[str, Any]]] = {name: [] for name in CLAIMS}
    abl_tables = []
    for i, (sae, g, p, st, a) in enumerate(zip(saes, res.stability, passes, strata, alive)):
        gen = torch.Generator().manual_seed(opts.seed * 1000 + i)
        table, tests = run_ablation(sae, g, p, data, hookpoint, opts, st, gen, hook_input)
        abl_tables.append({"seed": seeds[i], **table})
        n_dead = int((~a).sum())
        per_seed["stable_carry_reconstruction"].append(tests["fvu"] | {"n_dead": n_dead})
        pred = next(tests[k] for k in ("loss_recovered", "output_recovered", "prediction") if k in tests)
        per_seed["stable_carry_prediction"].append(pred | {"n_dead": n_dead})
        one = torch.where(a, 0, -1)  # frequency is the outcome: one stratum of the alive latents
        per_seed["unstable_rarer"].append(
            _rank_row(stratified_rank_test(res.triggers[i].frequency, g.stable & a, g.unstable & a, one,
                                           opts.n_random, gen), "stable", "unstable", n_dead))
        if tokens.has_tokens:
            per_seed["unstable_more_token_specific"].append(
                _rank_row(stratified_rank_test(res.triggers[i].top_token_share, g.unstable & a, g.stable & a, st,
                                               opts.n_random, gen), "unstable", "stable", n_dead))
        else:
            per_seed["unstable_more_token_specific"].append(
                {"p": math.nan, "note": "the run's activations have no token ids"})
    res.tables["ablation"] = {"rows": abl_tables[0]["rows"], "base_seed": seeds[0], "per_seed": abl_tables,
                              "lm_loss": abl_tables[0]["lm_loss"], "lm_metric": abl_tables[0]["lm_metric"]}
    lap("ablation and trigger tests")
    res.tables["subspaces"] = run_subspaces(saes, res.stability, alive, opts)
    decs = [s.W_dec.detach().double().cpu() for s in saes]
    unstable = [g.unstable & a for g, a in zip(res.stability, alive)]
    cap = opts.subspace_dim if opts.subspace_dim > 0 else max(decs[0].shape[1] // 4, 1)
    q = min(min(int(u.sum()) for u in unstable), cap)
    with single_threaded_linalg():
        for i in range(len(saes)):
            gen = torch.Generator().manual_seed(opts.seed * 1000 + 500 + i)
            row = (spans_test(decs, unstable, strata, i, q, opts.n_random, gen) if q > 0
                   else {"p": math.nan, "note": "some seed has no alive unstable latent"})
            per_seed["unstable_spans_reproducible"].append(row | {"n_dead": int((~alive[i]).sum())})
    lap("subspaces")
    if tokens.has_tokens and tokens.tokenizer is not None:
        stab, freq = res.stability[0].stability, res.triggers[0].frequency
        by_freq = torch.argsort(freq, descending=True, stable=True)  # ties in stability: most frequent first
        least_order = by_freq[torch.argsort(stab[by_freq], stable=True)]
        most_order = by_freq[torch.argsort(stab[by_freq], descending=True, stable=True)]
        least = least_order[alive[0][least_order]][: opts.n_show].tolist()
        most = most_order[alive[0][most_order]][: opts.n_show].tolist()
        assert passes[0].top is not None
        res.contexts = top_contexts(passes[0].top, least + most, tokens.chunks, tokens.tokenizer.decode)
        res.tables["contexts"] = {"least_stable": least, "most_stable": most}
    lap("contexts")
    res.tables["timings_s"] = timings
    res.tables["claims"] = judge_claims(list(seeds), per_seed, opts, lm_metric=abl_tables[0]["lm_metric"],
                                        span_dim=q)
    return res


def _rank_row(test: dict[str, Any], high: str, low: str, n_dead: int) -> dict[str, Any]:
    row = {k: v for k, v in test.items() if k not in ("n_high", "n_low")}
    row |= {f"n_{high}": test["n_high"], f"n_{low}": test["n_low"], "n_dead": n_dead}
    if not (test["n_high"] and test["n_low"]) or not math.isfinite(test["p"]):
        row["note"] = "a stability group has no alive latent (or no stratum holds both groups)"
    return row


# --------------------------------------------------------------------------------------------
# verdicts

CLAIMS = ("stable_carry_reconstruction", "stable_carry_prediction", "unstable_rarer",
          "unstable_more_token_specific", "unstable_spans_reproducible")


def judge_claims(seeds: Sequence[int], per_seed: dict[str, list[dict[str, Any]]], opts: AnalyzeOptions, *,
                 lm_metric: str | None = None, span_dim: int = 0) -> dict[str, Any]:
    """Every claim judged per seed, combined across seeds (holds in every seed), Holm-corrected across claims."""
    matched = {"frequency": f"matched on firing frequency ({opts.freq_bins} quantile bins of log-frequency)",
               "frequency_mass": f"matched on firing frequency ({opts.freq_bins} bins) × activation mass (halves)",
               "none": "NOT matched (every alive latent one stratum)"}[opts.match]
    ablation_control = (f"{opts.n_random} random sets of alive latents per set and seed, {matched}, "
                        "drawn within each bin from all its alive latents (stratified permutation)")
    metric = lm_metric or "loss_recovered / output_recovered"
    specs = {
        "stable_carry_reconstruction": ClaimSpec(
            "ablation vs matched random sets, one-sided empirical p; per seed p = max(p_stable, p_unstable)",
            "FVU increase when ablating the set", "harm ratio: stable-set FVU increase / mean matched control's",
            ablation_control,
            {"rule": "ablating the stable set raises FVU more, and the unstable set less, than matched random sets"}),
        "stable_carry_prediction": ClaimSpec(
            "ablation vs matched random sets (model-based), one-sided empirical p; per seed max(p_stable, p_unstable)",
            f"{metric} lost when ablating the set", "harm ratio: stable-set loss / mean matched control's",
            ablation_control.replace(f"{opts.n_random} random", f"{min(opts.n_random, opts.n_random_lm)} random"),
            {"metric": lm_metric, "rule": f"ablating the stable set loses more {metric}, and the unstable set "
                                          "less, than matched random sets"}),
        "unstable_rarer": ClaimSpec(
            "permutation rank-sum test (Mann-Whitney U) of firing frequency, alive latents, one-sided",
            "U − n_s n_u / 2 (stable more frequent)", "P(a stable latent fires more often than an unstable one)",
            f"{opts.n_random} permutations of the stable/unstable labels among the seed's alive latents "
            "(no frequency matching: frequency is the outcome); dead latents excluded"),
        "unstable_more_token_specific": ClaimSpec(
            "van Elteren stratified rank-sum of top-token share within frequency strata, stratified permutation p",
            "Σ_k (U_k − n n'/2)/(n_k+1)", "stratified P(an unstable latent is more token-specific than a stable one)",
            f"{opts.n_random} permutations of the labels within each frequency stratum ({matched}); "
            "dead latents excluded"),
        "unstable_spans_reproducible": ClaimSpec(
            "span overlap vs matched random subsets of the base seed, one-sided empirical p",
            f"mean cos² of the principal angles between top-{span_dim} subspaces, averaged over the other seeds",
            "mean cos² minus the matched controls' mean",
            f"{opts.n_random} random sets of the base seed's alive latents, {matched}, replacing its unstable set"),
    }
    claims = {name: combine_seeds(specs[name], seeds, per_seed[name]) for name in CLAIMS}
    for claim in claims.values():
        draws = [r["draws"] for r in claim["per_seed"] if isinstance(r.get("draws"), int)]
        if claim.get("holds", True) is not None and draws and 1 / (1 + min(draws)) > opts.alpha:
            claim.update(holds=None, reason=f"{min(draws)} control draws cannot reach p ≤ {opts.alpha} "
                                            "(raise --n-random / --n-random-lm)")
    return holm(claims, alpha=opts.alpha)
