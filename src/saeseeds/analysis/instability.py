"""Why latents are unstable: the whole analysis of one SAE configuration across seeds, as plain results.

For each configuration (hookpoint, SAE name) of a run: per-latent stability across seeds, trigger statistics
and top contexts, ablation of stable / unstable / random sets (FVU and LM loss), and the reproducibility
of the unstable latents' decoder spans. Every claim names its paper and is judged with that paper's stability
estimator (Gerasimov et al.'s decoder reappearance by default), and again with the other estimator beside it;
each is tested per seed against frequency-matched (or, for spans, data-matched) controls and judged across
seeds with Holm's correction (`saeseeds.analysis.verdicts`, docs/definitions.md "Verdicts").
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

from saeseeds.align.cross_seed import CrossSeedResult, StabilityGroups
from saeseeds.align.sharing import STABILITY_KINDS, SharingRule
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
    FIXED_SETS,
    MAX_DENSE_LATENTS,
    AblationStats,
    ClaimSpec,
    DataDirections,
    ablation_test,
    combine_seeds,
    decidable_family,
    frequency_strata,
    holm,
    low_rank_test,
    span_overlap_test,
    stable_complement,
    stratified_rank_test,
    unit,
)
from saeseeds.errors import DataError
from saeseeds.sae.model import SparseAutoencoder

CLAIMS_ESTIMATOR = "reappears"
"""The claims' paper defines feature stability by decoder reappearance: the default estimator of `analyze`."""


@dataclass
class AnalyzeOptions:
    """Knobs of the instability analysis (CLI flags of `saeseeds analyze`)."""

    rule: SharingRule = field(default_factory=lambda: SharingRule(stability=CLAIMS_ESTIMATOR))
    """Sharing threshold, stability estimator and stable / unstable cut (the project's one definition). The
    claims tested here are Gerasimov et al.'s, so the default estimator is theirs, decoder reappearance
    (`reappears`, max decoder cosine ≥ τ); Paulo & Belrose's `shared` stays the default of `compare`."""
    alternate: bool = True
    """Judge the claims under the other stability estimator too (same τ and cut; no new alignment), reported
    beside each verdict with whether the answer changes."""
    n_top: int = 10
    """Top-activating contexts kept per latent."""
    n_show: int = 10
    """Latents shown in the contexts page for each of least / most stable."""
    n_random: int = 200
    """Random control draws per seed and claim (empirical p-values); the descriptive subspace baselines use
    at most 5 (descriptive only)."""
    n_random_lm: int = 99
    """Random control draws per seed for the LM-based ablation (each draw is two passes of the model); ≤ n_random.
    99 lets its p reach 1/100 = α/5, Holm's first step over the five claims at α = 0.05."""
    freq_bins: int = 10
    """Frequency strata (quantile bins of log-frequency of the alive latents) for matched controls."""
    match: str = "frequency"
    """Control matching: "frequency", "frequency_mass" (bins split at the median activation mass) or "none"."""
    alpha: float = 0.05
    """Family-wise level of the Holm-corrected verdicts."""
    max_tokens: int = 262_144
    """Token budget of the firing, trigger and ablation statistics: held-out rows, then distinct training rows,
    each at most once (0: the held-out rows only). Set by `saeseeds analyze --max-tokens`."""
    lm_train_rows: bool = False
    """Add an LM run's training rows (an LM forward over its training chunks, `analysis.token_budget`); off by
    default, so the default analysis runs no LM forward. Set by `saeseeds analyze --analysis-tokens N`."""
    group_threshold: float = 0.5
    """|cos| above which two unstable latents (any seeds) are joined into a group."""
    subspace_dim: int = 0
    """Compare top-q principal subspaces with q ≤ this; 0 means d_in // 4 in the descriptive tables and d_c // 4
    in the span verdict (d_c: the dimension of the stable span's orthogonal complement)."""
    lm_loss: bool = False
    """Run the model-based ablation (LM loss / output recovered: model passes); off by default (`--lm-loss`)."""
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


def masks(g: StabilityGroups) -> tuple[Tensor, Tensor]:
    """A seed's (stable, unstable) masks as torch tensors: align keeps them in numpy, the analyses compute in torch."""
    return torch.from_numpy(g.stable), torch.from_numpy(g.unstable)


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


TRIGGER_STATISTICS = ("frequency", "mean_activation", "entropy", "top_token_share", "distinct_tokens")


def compare_triggers(
    stats: Sequence[TriggerStats], groups: Sequence[StabilityGroups], *, has_tokens: bool
) -> list[list[GroupComparison]]:
    """Stable vs unstable alive latents of each seed (never pooled), for each trigger statistic (descriptive)."""
    names = TRIGGER_STATISTICS if has_tokens else TRIGGER_STATISTICS[:2]
    out = []
    for s, (stable, unstable) in zip(stats, map(masks, groups)):
        alive = s.fire_count > 0
        out.append([compare_groups(name, getattr(s, name).double(), stable & alive, unstable & alive)
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
    unstable = [dec[masks(g)[1] & a] for dec, g, a in zip(decs, groups, alive)]
    stable = [dec[masks(g)[0] & a] for dec, g, a in zip(decs, groups, alive)]
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
        self.masks, self.results = masks, self.fn(masks)
        return torch.tensor([r[self.key] for r in self.results], dtype=torch.float64)

    def rows(self, n_draws: int) -> list[AblationRow]:
        """The table: the fixed sets of `ablation_test` (`FIXED_SETS`), then the two random families."""
        assert self.masks is not None
        names = (list(FIXED_SETS)[: self.masks.shape[0]] + [f"random_like_stable/{i}" for i in range(n_draws)]
                 + [f"random_like_unstable/{i}" for i in range(n_draws)])
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
        return None, "", "not asked (the model-based ablation runs the model: --lm-loss)"
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
    *,
    hook_input: bool = False,
    skip_model: str = "",
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """One seed's ablation: the table and the per-seed tests of the reconstruction and prediction claims.

    Stable / unstable sets are their alive latents; each is compared with `opts.n_random` random sets matched
    on firing frequency (`strata`). FVU is exact from sufficient statistics over the analysis tokens; the
    model-based metric (LM loss recovered for a causal LM, output recovered otherwise) runs on the held-out
    chunks with `min(n_random, n_random_lm)` draws, unless `skip_model` gives a reason not to.
    """
    fvu_fn, fvu_note = _fvu_fn(sae, passed, data, hookpoint)
    fvu = _Recorder(fvu_fn, "fvu")
    stable, unstable = masks(groups)
    tests = {"fvu": ablation_test(fvu, stable, unstable, strata, opts.n_random, generator)}
    if fvu.masks is None:  # no test (an empty group): the table still shows the fixed sets
        alive = strata >= 0
        fixed = torch.stack([torch.zeros_like(alive), stable & alive, unstable & alive,
                             ~(stable & alive), ~(unstable & alive), torch.ones_like(alive)])
        fvu(fixed)
        rows = _Recorder.rows(fvu, 0)
    else:
        rows = fvu.rows(opts.n_random)
    lm_rows: list[AblationRow] = []
    fn, key, lm_note = _lm_fn(sae, data, hookpoint, opts, hook_input) if not skip_model else (None, "", skip_model)
    if fn is not None:
        draws = max(1, min(opts.n_random, opts.n_random_lm))
        lm = _Recorder(fn, key)
        try:
            tests[key] = ablation_test(lm, stable, unstable, strata, draws, generator,
                                       higher_is_worse=False)
            if lm.masks is None:  # no test (an empty group): the fixed sets still give the SAE's own LM loss
                lm(fvu.masks)
                draws = 0
            lm_rows = lm.rows(draws)
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
        "sets_note": "stable/unstable: their latents alive on the analysis tokens; all_but_stable/unstable: every "
                     "latent ablated but that set (what it carries alone); random sets matched on firing "
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

    res.stability = cross.with_rule(opts.rule).groups()
    lap("stability")
    passes = [seed_pass(sae, tokens, hookpoint, n_top=opts.n_top, tops=i == 0) for i, sae in enumerate(saes)]
    res.triggers = [p.stats for p in passes]
    alive = [s.fire_count > 0 for s in res.triggers]
    lap("encode")
    res.tables["stability"] = {
        "rule": opts.rule.to_dict(),
        "per_seed": stability_counts(seeds, res.stability, alive),
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
    covariance = activation_covariance(tokens.acts(hookpoint))
    inputs = ClaimInputs(list(seeds), list(saes), passes, strata, alive, data, hookpoint, hook_input, covariance,
                        tokens.has_tokens)
    lap("strata and covariance")
    per_seed, abl_tables, spans = claim_tests(res.stability, inputs, opts, tables=True)
    res.tables["ablation"] = {"rows": abl_tables[0]["rows"], "base_seed": seeds[0], "per_seed": abl_tables,
                              "lm_loss": abl_tables[0]["lm_loss"], "lm_metric": abl_tables[0]["lm_metric"]}
    lap("claim tests")
    res.tables["subspaces"] = run_subspaces(saes, res.stability, alive, opts) | {"complement_test": spans}
    lap("subspaces")
    if tokens.has_tokens and tokens.tokenizer is not None:
        stab, freq = torch.from_numpy(res.stability[0].stability), res.triggers[0].frequency
        by_freq = torch.argsort(freq, descending=True, stable=True)  # ties in stability: most frequent first
        least_order = by_freq[torch.argsort(stab[by_freq], stable=True)]
        most_order = by_freq[torch.argsort(stab[by_freq], descending=True, stable=True)]
        least = least_order[alive[0][least_order]][: opts.n_show].tolist()
        most = most_order[alive[0][most_order]][: opts.n_show].tolist()
        assert passes[0].top is not None
        res.contexts = top_contexts(passes[0].top, least + most, tokens.chunks, tokens.tokenizer.decode)
        res.tables["contexts"] = {"least_stable": least, "most_stable": most}
    lap("contexts")
    lm_metric = abl_tables[0]["lm_metric"]
    claims = judge_claims(list(seeds), per_seed, opts, lm_metric=lm_metric, spans=spans)
    if opts.alternate:
        other = alternate_rule(opts.rule)
        alt_groups = cross.with_rule(other).groups()
        res.tables["stability"]["alternate"] = {"rule": other.to_dict(),
                                                "per_seed": stability_counts(seeds, alt_groups, alive)}
        alt_per_seed, _, alt_spans = claim_tests(
            alt_groups, inputs, opts, tables=False,
            skip_model=f"not run under the other estimator (its model passes would double the cost; `analyze "
                       f"--stability {other.stability}` judges it)" if opts.lm_loss else "")
        attach_alternate(claims, judge_claims(list(seeds), alt_per_seed, opts, lm_metric=lm_metric, spans=alt_spans,
                                              rule=other))
        lap(f"claims under {other.stability}")
    res.tables["timings_s"] = timings
    res.tables["claims"] = claims
    return res


def stability_counts(seeds: Sequence[int], groups: Sequence[StabilityGroups], alive: Sequence[Tensor]
                     ) -> list[dict[str, Any]]:
    """Per seed: latents, stable, unstable (all and alive), dead, mean stability (stability.json)."""
    return [
        {
            "seed": seed,
            "n_latents": int(g.stability.size),
            "n_stable": int(stable.sum()),
            "n_unstable": int(unstable.sum()),
            "n_stable_alive": int((stable & a).sum()),
            "n_unstable_alive": int((unstable & a).sum()),
            "n_dead": int((~a).sum()),
            "mean_stability": float(g.stability.mean()),
        }
        for seed, g, (stable, unstable), a in zip(seeds, groups, map(masks, groups), alive)
    ]


def activation_covariance(batches: Sequence[Tensor]) -> Tensor:
    """Covariance `[d, d]` (float64, centred, divided by n) of the rows of the activation batches."""
    total: Tensor | None = None
    sums: Tensor | None = None
    n = 0
    for x in batches:  # each batch's products in float32 (fast), summed over batches in float64
        x = x.detach().float().cpu()
        gram, total_x = (x.T @ x).double(), x.double().sum(0)
        total = gram if total is None else total + gram
        sums = total_x if sums is None else sums + total_x
        n += x.shape[0]
    if total is None or sums is None or n == 0:
        raise DataError("analysis: no activations to estimate their covariance from")
    mean = sums / n
    return total / n - torch.outer(mean, mean)


@dataclass
class ClaimInputs:
    """What every claim test of one configuration reads, whichever stability estimator splits the latents."""

    seeds: list[int]
    saes: list[SparseAutoencoder]
    passes: list[SeedPass]
    strata: list[Tensor]
    alive: list[Tensor]
    data: EvalData
    hookpoint: str
    hook_input: bool
    covariance: Tensor
    """Activation covariance over the analysis tokens: the data-matched null of the span test."""
    has_tokens: bool


def claim_tests(groups: Sequence[StabilityGroups], inputs: ClaimInputs, opts: AnalyzeOptions, *, tables: bool,
                skip_model: str = "") -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]], dict[str, Any]]:
    """Every claim's per-seed tests for one stable / unstable split: (per-seed rows by claim, each seed's ablation
    table, the span test's configuration-level part). The random generators are seeded by the seed index only,
    so two estimators are judged alike. `skip_model` (a reason) leaves out the model-based ablation."""
    per_seed: dict[str, list[dict[str, Any]]] = {name: [] for name in CLAIMS}
    abl_tables = []
    for i, (sae, g, p, st, a) in enumerate(zip(inputs.saes, groups, inputs.passes, inputs.strata, inputs.alive)):
        gen = torch.Generator().manual_seed(opts.seed * 1000 + i)
        table, tests = run_ablation(sae, g, p, inputs.data, inputs.hookpoint, opts, st, gen,
                                    hook_input=inputs.hook_input, skip_model=skip_model)
        if tables:
            abl_tables.append({"seed": inputs.seeds[i], **table})
        n_dead = int((~a).sum())
        per_seed["stable_carry_reconstruction"].append(tests["fvu"] | {"n_dead": n_dead})
        pred = next(tests[k] for k in ("loss_recovered", "output_recovered", "prediction") if k in tests)
        per_seed["stable_carry_prediction"].append(pred | {"n_dead": n_dead, "metric": table["lm_metric"]})
        one = torch.where(a, 0, -1)  # frequency is the outcome: one stratum of the alive latents
        per_seed["unstable_rarer"].append(
            _rank_row(stratified_rank_test(p.stats.frequency, masks(g)[0] & a, masks(g)[1] & a, one,
                                           opts.n_random, gen), "stable", "unstable", n_dead))
        if inputs.has_tokens:
            per_seed["unstable_more_token_specific"].append(
                _rank_row(stratified_rank_test(p.stats.top_token_share, masks(g)[1] & a, masks(g)[0] & a, st,
                                               opts.n_random, gen), "unstable", "stable", n_dead))
        else:
            per_seed["unstable_more_token_specific"].append(
                {"p": math.nan, "note": "the run's activations have no token ids"})
    with single_threaded_linalg():
        rows, spans = span_tests(groups, inputs, opts)
    per_seed["unstable_spans_reproducible"] = rows
    return per_seed, abl_tables, spans


def span_tests(groups: Sequence[StabilityGroups], inputs: ClaimInputs, opts: AnalyzeOptions
               ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-seed rows of `unstable_spans_reproducible` and its configuration-level part (complement, low rank).

    Inside the orthogonal complement of the stable span (`verdicts.stable_complement`), each seed's alive
    unstable directions are compared with the other seeds' (overlap test, per base seed) and their union's
    effective rank with a null of the same size (low-rank test, once); both nulls are data-matched random
    directions (`verdicts.DataDirections`). A seed's p is max(p_overlap, p_low_rank): both parts must hold.
    """
    decs = [s.W_dec.detach().double().cpu() for s in inputs.saes]
    d = decs[0].shape[1]
    stable = [dec[masks(g)[0] & a] for dec, g, a in zip(decs, groups, inputs.alive)]
    unstable = [dec[masks(g)[1] & a] for dec, g, a in zip(decs, groups, inputs.alive)]
    comp = stable_complement(stable, d)
    d_c = comp.basis.shape[1]
    cap = opts.subspace_dim if opts.subspace_dim > 0 else max(d_c // 4, 1)
    q = min(min(u.shape[0] for u in unstable), cap, d_c)
    info: dict[str, Any] = {
        "complement": {"d_in": d, "stable_dim": comp.stable_dim, "stable_dim_wanted": comp.stable_dim_wanted,
                       "dim": d_c, "stable_energy_outside": comp.stable_energy_outside},
        "dim": q,
    }
    dead = [int((~a).sum()) for a in inputs.alive]
    if q == 0:
        note = "some seed has no alive unstable latent" if d_c else "the stable span fills the space"
        return [{"p": math.nan, "note": note, "n_dead": n} for n in dead], info
    projected = [unit(unit(u) @ comp.basis) for u in unstable]  # scaled like the null's directions
    null = DataDirections(inputs.covariance, comp.basis)
    low = low_rank_test(projected, null, opts.n_random, torch.Generator().manual_seed(opts.seed * 1000 + 499))
    info["low_rank"] = low
    rows = []
    for i in range(len(decs)):
        gen = torch.Generator().manual_seed(opts.seed * 1000 + 500 + i)
        ov = span_overlap_test(projected, i, q, null, opts.n_random, gen)
        rows.append({
            "p": max(ov["p"], low["p"]), "p_overlap": ov["p"], "p_low_rank": low["p"],
            "mean_cos2_unstable": ov["mean_cos2_unstable"], "control_mean_cos2": ov["control_mean_cos2"],
            "analytic_random_q_over_dc": q / d_c, "effect": ov["effect"],
            "n_unstable": unstable[i].shape[0], "dim": q, "draws": opts.n_random,
            "p_min": max(ov["p_min"], low["p_min"]), "n_dead": dead[i],
        })
    return rows, info


def alternate_rule(rule: SharingRule) -> SharingRule:
    """The same rule with the other stability estimator (shared ↔ reappears)."""
    return rule.replace(stability=next(k for k in STABILITY_KINDS if k != rule.stability))


def attach_alternate(claims: dict[str, Any], alternate: dict[str, Any]) -> None:
    """Record beside each verdict the verdict under the other estimator, and whether a decided answer changes
    (`estimator_changes`: which of the test and the descriptive answer; an undetermined one changes nothing)."""
    for name, claim in claims.items():
        alt = alternate[name]
        brief = {k: alt[k] for k in ("holds", "reason", "p_value", "p_holm", "effect_size", "n") if k in alt}
        brief["stability"] = alt["stability"]
        changes = ["frequency-adjusted test"] if _differ(alt["holds"], claim["holds"]) else []
        if "descriptive" in claim:
            brief["descriptive"] = {k: v for k, v in alt["descriptive"].items()
                                    if k not in ("question", "rule", "measures")}
            if _differ(alt["descriptive"]["holds"], claim["descriptive"]["holds"]):
                changes.append("descriptive answer")
        claim["alternate"] = brief
        claim["estimator_changes_answer"] = bool(changes)
        claim["estimator_changes"] = changes


def _differ(a: bool | None, b: bool | None) -> bool:
    """Two answers differ: both decided (not null) and unequal; an undetermined one changes nothing."""
    return a is not None and b is not None and a != b


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

GERASIMOV = "Gerasimov et al. 2026, Unstable Features, Reproducible Subspaces"
STATEMENTS = {
    "stable_carry_reconstruction": "stable features carry most of the reconstruction; unstable ones contribute little",
    "stable_carry_prediction": "stable features carry most of the model's prediction; unstable ones contribute little",
    "unstable_rarer": "unstable features are rarer (fire less often) than stable ones",
    "unstable_more_token_specific": "unstable features are more token-specific (triggered by surface forms)",
    "unstable_spans_reproducible": "unstable features lie in low-rank subspaces that other seeds reproduce",
}
"""What the paper states, claim by claim."""
ESTIMATORS = {
    "reappears": "decoder reappearance (Gerasimov et al.): the share of the other seeds holding a latent whose "
                 "decoder cosine with it is ≥ τ",
    "shared": "sharing (Paulo & Belrose): the share of the other seeds where the decoder and the encoder Hungarian "
              "matchings agree on its partner and both cosines are > τ",
}
ADJUSTED_QUESTION = ("frequency-adjusted: does ablating the stable set cost more, and the unstable set less, than "
                     "ablating random latents of the same firing frequencies?")
DESCRIPTIVE_QUESTION = ("as the paper states it: do the stable latents carry most (> 1/2) of the dictionary's effect, "
                        "and more than the unstable latents, in every seed?")


def _stability_record(rule: SharingRule) -> dict[str, Any]:
    return {"estimator": rule.stability, "definition": ESTIMATORS[rule.stability],
            "papers_estimator": rule.stability == CLAIMS_ESTIMATOR, "rule": rule.to_dict(),
            "describe": rule.describe()}


def descriptive_answer(rows: Sequence[dict[str, Any]], what: str) -> dict[str, Any]:
    """The paper's own statement across seeds: each share's mean and spread over seeds, and whether the stable
    latents carry most in every seed (`verdicts.descriptive_shares`); no control, no p-value."""
    out: dict[str, Any] = {
        "question": DESCRIPTIVE_QUESTION,
        "harm": what,
        "rule": "in every seed, by both measures, the stable set's share is > 1/2 and > the unstable set's",
        "measures": {"harm_share": "harm(set ablated) / harm(every latent ablated): the share of the whole "
                                   "dictionary's harm that ablating the set alone causes",
                     "alone_share": "(harm(all) − harm(all but the set)) / harm(all): the share of the "
                                    "dictionary's effect the set keeps on its own"},
    }
    per = [r.get("descriptive") for r in rows]
    if any(d is None or d.get("stable_carry_most") is None for d in per):
        missing = next(i for i, d in enumerate(per) if d is None or d.get("stable_carry_most") is None)
        out.update(holds=None, reason=f"undetermined in seed {rows[missing].get('seed', missing)}: "
                                      f"{(per[missing] or {}).get('note') or rows[missing].get('note', 'no shares')}")
        return out
    for key in ("harm_share_stable", "harm_share_unstable", "alone_share_stable", "alone_share_unstable"):
        vals = torch.tensor([d[key] for d in per], dtype=torch.float64)
        out[key] = {"mean": float(vals.mean()), "std": float(vals.std()) if vals.numel() > 1 else math.nan,
                    "per_seed": vals.tolist()}
    out["holds"] = all(d["stable_carry_most"] for d in per)
    return out


def judge_claims(seeds: Sequence[int], per_seed: dict[str, list[dict[str, Any]]], opts: AnalyzeOptions, *,
                 lm_metric: str | None = None, spans: dict[str, Any] | None = None,
                 rule: SharingRule | None = None) -> dict[str, Any]:
    """Every claim judged per seed, combined across seeds (holds in every seed), Holm-corrected across the claims
    that can reach Holm's level (the others undetermined), each with its paper, estimator and, for the two
    functional claims, the paper's descriptive statement beside the frequency-adjusted test."""
    rule = rule or opts.rule
    spans = spans or {}
    span_dim = spans.get("dim", 0)
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
            "inside the orthogonal complement of the stable span: span overlap across seeds (per base seed) and "
            "effective rank of the union over seeds (once), each vs data-matched random directions, one-sided "
            "empirical p; per seed p = max(p_overlap, p_low_rank)",
            f"overlap: mean cos² of the principal angles between top-{span_dim} subspaces of the projected "
            "unstable directions, averaged over the other seeds; low rank: participation ratio of every seed's "
            "projected unstable directions together",
            "mean cos² minus the controls' mean",
            f"{opts.n_random} draws of random unit directions distributed like the analysis activations "
            "(Gaussian with their covariance), projected onto the complement like the unstable directions: the "
            "base seed's set replaced (overlap), every seed's set replaced (low rank), same counts",
            {"complement": spans.get("complement"), "low_rank": spans.get("low_rank")}),
    }
    questions = {
        "unstable_rarer": "do alive unstable latents fire less often than alive stable ones, in every seed?",
        "unstable_more_token_specific": ("frequency-adjusted: within firing-frequency strata, are alive unstable "
                                         "latents more token-specific than stable ones, in every seed?"),
        "unstable_spans_reproducible": ("beyond data-matched random directions and outside the stable span: do the "
                                        "unstable sets of different seeds span the same subspace, of low rank?"),
    }
    claims = {}
    for name in CLAIMS:
        claims[name] = {"paper": GERASIMOV, "statement": STATEMENTS[name], "stability": _stability_record(rule),
                        "question": questions.get(name, ADJUSTED_QUESTION),
                        **combine_seeds(specs[name], seeds, per_seed[name])}
    claims["stable_carry_reconstruction"]["descriptive"] = descriptive_answer(
        claims["stable_carry_reconstruction"]["per_seed"], "FVU increase")
    claims["stable_carry_prediction"]["descriptive"] = descriptive_answer(
        claims["stable_carry_prediction"]["per_seed"], f"{metric} lost")
    family = decidable_family(claims, alpha=opts.alpha)
    holm({name: claims[name] for name in family}, alpha=opts.alpha)
    for claim in claims.values():
        claim.setdefault("p_holm", math.nan)
        claim.setdefault("holds", None)
        claim.setdefault("alpha", opts.alpha)
        claim["holm_family"] = len(family)
        claim["holm_members"] = family
    return claims
