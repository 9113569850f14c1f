"""The paper's claims, judged (claims.json): each claim tested per seed against matched controls, combined across
seeds (holds in every seed), Holm-corrected across the claims that can reach Holm's level, with the paper's
descriptive statement beside the two carry claims and, with `alternate`, the verdicts under the other stability
estimator (docs/definitions.md "Verdicts")."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from saeseeds.align.cross_seed import StabilityGroups
from saeseeds.align.sharing import SharingRule
from saeseeds.analysis.options import CLAIMS_ESTIMATOR, AnalyzeOptions
from saeseeds.analysis.subspaces import single_threaded_linalg
from saeseeds.analysis.tables.ablation import SeedAblation, seed_ablation
from saeseeds.analysis.tables.seam import Batch, Inputs, alternate_rule, masks
from saeseeds.analysis.tables.subspaces import ComplementTest, span_tests
from saeseeds.analysis.verdicts import (
    ClaimSpec,
    combine_seeds,
    holm_over_decidable,
    run_level_holm,
    stratified_rank_test,
)
from saeseeds.signflip import VERDICT_WORDS

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
QUESTIONS = {
    "unstable_rarer": "do alive unstable latents fire less often than alive stable ones, in every seed?",
    "unstable_more_token_specific": ("frequency-adjusted: within firing-frequency strata, are alive unstable "
                                     "latents more token-specific than stable ones, in every seed?"),
    "unstable_spans_reproducible": ("beyond data-matched random directions and outside the stable span: do the "
                                    "unstable sets of different seeds span the same subspace, of low rank?"),
}
BRIEF_KEYS = ("paper", "question", "holds", "reason", "test", "p_value", "p_holm", "alpha", "effect_size", "control",
              "n", "run_holm", "estimator_changes_answer")
"""A verdict's keys that analysis.json repeats (claims.json holds the per-seed numbers)."""


class Verdict:
    """One claim's verdict: typed reading of its claims.json entry (`record`, whose keys docs/formats.md lists)."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record

    @property
    def holds(self) -> bool | None:
        """True / False once decided; None (undetermined, with a `reason`)."""
        return self.record.get("holds")

    @property
    def p_value(self) -> float:
        return self.record.get("p_value", math.nan)

    @property
    def p_holm(self) -> float:
        return self.record.get("p_holm", math.nan)

    @property
    def reason(self) -> str | None:
        return self.record.get("reason")

    @property
    def estimator(self) -> str | None:
        """The stability estimator it was judged with (`reappears` or `shared`)."""
        stability = self.record.get("stability")
        return stability.get("estimator") if isinstance(stability, Mapping) else stability

    @property
    def descriptive(self) -> Verdict | None:
        """The paper's statement as it stands (the carry claims): holds, and the shares' means over seeds."""
        desc = self.record.get("descriptive")
        return Verdict(desc) if isinstance(desc, dict) else None

    @property
    def stable_share(self) -> float | None:
        """Descriptive answers: the mean share of the dictionary's ablation harm the stable latents cause."""
        share = self.record.get("harm_share_stable")
        return share["mean"] if isinstance(share, Mapping) else None

    @property
    def alternate(self) -> Verdict | None:
        """The verdict under the other stability estimator (in brief)."""
        alt = self.record.get("alternate")
        return Verdict(alt) if isinstance(alt, dict) else None

    @property
    def estimator_changes_answer(self) -> bool:
        return bool(self.record.get("estimator_changes_answer"))

    @property
    def estimator_changes(self) -> list[str]:
        return list(self.record.get("estimator_changes") or [])

    @property
    def run_holm(self) -> dict[str, Any] | None:
        """Holm over every configuration of the run (`attach_run_holm`)."""
        return self.record.get("run_holm")

    def line(self, name: str) -> str:
        """The verdict as a line: `unstable_rarer [reappears]: holds (p = 0.01, Holm 0.03)`, then the paper's
        descriptive answer where there is one, and the answer under the other stability estimator."""
        detail = (f"p = {self.p_value:.3g}, Holm {self.p_holm:.3g}" if self.holds is not None else self.reason or "")
        line = f"{name}{f' [{self.estimator}]' if self.estimator else ''}: {VERDICT_WORDS[self.holds]} ({detail})"
        desc = self.descriptive
        if desc is not None:
            share = desc.stable_share
            carried = f", stable carry {share:.0%} of the ablation harm" if share is not None else ""
            line += f"; as the paper states it: {VERDICT_WORDS[desc.holds]}{carried}"
        alt = self.alternate
        if alt is not None:
            line += f"; under {alt.estimator}: {VERDICT_WORDS[alt.holds]}"
            if self.estimator_changes_answer:
                line += f" (changes: {', '.join(self.estimator_changes or ['the answer'])})"
        return line

    def brief(self) -> dict[str, Any]:
        """The verdict for analysis.json (claims.json holds the per-seed numbers)."""
        claim = self.record
        out = {k: claim[k] for k in BRIEF_KEYS if k in claim}
        if "effect_size" in out:
            out["effect_size"] = {k: v for k, v in out["effect_size"].items() if k != "per_seed"}
        if "stability" in claim:
            out["stability"] = self.estimator
        if "descriptive" in claim:
            out["descriptive"] = {k: v for k, v in claim["descriptive"].items() if k in ("question", "holds", "reason")
                                  or k.endswith("_share_stable") or k.endswith("_share_unstable")}
        alt = self.alternate
        if alt is not None:
            out["alternate"] = {"stability": alt.estimator, "holds": alt.holds, "p_value": alt.record.get("p_value"),
                                "reason": alt.reason, "descriptive_holds": alt.descriptive.holds if alt.descriptive
                                else None}
        return out


@dataclass
class Claims:
    """claims.json: every claim's verdict, by name (in `CLAIMS` order)."""

    verdicts: dict[str, Verdict]

    def __getitem__(self, name: str) -> Verdict:
        return self.verdicts[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.verdicts)

    def items(self) -> Iterator[tuple[str, Verdict]]:
        return iter(self.verdicts.items())

    def as_record(self) -> dict[str, Any]:
        """What claims.json holds: each verdict's record, by claim."""
        return {name: v.record for name, v in self.verdicts.items()}


def _stability_record(rule: SharingRule) -> dict[str, Any]:
    return {"estimator": rule.stability, "definition": ESTIMATORS[rule.stability],
            "papers_estimator": rule.stability == CLAIMS_ESTIMATOR, "rule": rule.to_dict(),
            "describe": rule.describe()}


def _rank_row(test: dict[str, Any], high: str, low: str, n_dead: int) -> dict[str, Any]:
    row = {k: v for k, v in test.items() if k not in ("n_high", "n_low")}
    row |= {f"n_{high}": test["n_high"], f"n_{low}": test["n_low"], "n_dead": n_dead}
    if not (test["n_high"] and test["n_low"]) or not math.isfinite(test["p"]):
        row["note"] = "a stability group has no alive latent (or no stratum holds both groups)"
    return row


def claim_rows(inputs: Inputs, groups: Sequence[StabilityGroups], ablations: Sequence[SeedAblation],
               done: Any, generators: Sequence[torch.Generator], span_rows: list[dict[str, Any]]
               ) -> dict[str, list[dict[str, Any]]]:
    """Every claim's per-seed rows for one stable / unstable split: the ablation tests (already run), then the rank
    tests drawing from each seed's generator after them, and the span test's rows."""
    opts, trig = inputs.opts, done.triggers
    per_seed: dict[str, list[dict[str, Any]]] = {name: [] for name in CLAIMS}
    for g, abl, stats, st, a, gen in zip(groups, ablations, trig.stats, trig.strata, trig.alive, generators):
        n_dead = int((~a).sum())
        per_seed["stable_carry_reconstruction"].append(abl.tests["fvu"] | {"n_dead": n_dead})
        pred = next(abl.tests[k] for k in ("loss_recovered", "output_recovered", "prediction") if k in abl.tests)
        per_seed["stable_carry_prediction"].append(pred | {"n_dead": n_dead, "metric": abl.lm_metric})
        stable, unstable = masks(g)
        one = torch.where(a, 0, -1)  # frequency is the outcome: one stratum of the alive latents
        per_seed["unstable_rarer"].append(_rank_row(stratified_rank_test(
            stats.frequency, stable & a, unstable & a, one, opts.n_random, gen), "stable", "unstable", n_dead))
        if inputs.tokens.has_tokens:
            per_seed["unstable_more_token_specific"].append(_rank_row(stratified_rank_test(
                stats.top_token_share, unstable & a, stable & a, st, opts.n_random, gen), "unstable", "stable", n_dead))
        else:
            per_seed["unstable_more_token_specific"].append(
                {"p": math.nan, "note": "the run's activations have no token ids"})
    per_seed["unstable_spans_reproducible"] = span_rows
    return per_seed


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


def _specs(opts: AnalyzeOptions, metric: str, lm_metric: str | None, spans: ComplementTest | None
           ) -> dict[str, ClaimSpec]:
    """How each claim is tested: test, statistic, effect size, control, and what else its verdict records."""
    matched = {"frequency": f"matched on firing frequency ({opts.freq_bins} quantile bins of log-frequency)",
               "frequency_mass": f"matched on firing frequency ({opts.freq_bins} bins) × activation mass (halves)",
               "none": "NOT matched (every alive latent one stratum)"}[opts.match]
    ablation_control = (f"{opts.n_random} random sets of alive latents per set and seed, {matched}, "
                        "drawn within each bin from all its alive latents (stratified permutation)")
    span_dim = spans.dim if spans is not None else 0
    return {
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
            {"complement": spans.complement if spans is not None else None,
             "low_rank": spans.low_rank if spans is not None else None}),
    }


def judge_claims(seeds: Sequence[int], per_seed: dict[str, list[dict[str, Any]]], opts: AnalyzeOptions, *,
                 lm_metric: str | None = None, spans: ComplementTest | None = None,
                 rule: SharingRule | None = None) -> dict[str, dict[str, Any]]:
    """Every claim judged per seed, combined across seeds (holds in every seed), Holm-corrected across the claims
    that can reach Holm's level (the others undetermined), each with its paper, estimator and, for the two
    functional claims, the paper's descriptive statement beside the frequency-adjusted test."""
    rule = rule or opts.rule
    metric = lm_metric or "loss_recovered / output_recovered"
    specs = _specs(opts, metric, lm_metric, spans)
    claims = {}
    for name in CLAIMS:
        claims[name] = {"paper": GERASIMOV, "statement": STATEMENTS[name], "stability": _stability_record(rule),
                        "question": QUESTIONS.get(name, ADJUSTED_QUESTION),
                        **combine_seeds(specs[name], seeds, per_seed[name])}
    claims["stable_carry_reconstruction"]["descriptive"] = descriptive_answer(
        claims["stable_carry_reconstruction"]["per_seed"], "FVU increase")
    claims["stable_carry_prediction"]["descriptive"] = descriptive_answer(
        claims["stable_carry_prediction"]["per_seed"], f"{metric} lost")
    holm_over_decidable(claims, alpha=opts.alpha)
    return claims


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


def attach_run_holm(claims: Mapping[str, Claims], *, alpha: float) -> dict[str, Any]:
    """Holm across the run's configurations (`verdicts.run_level_holm`, keyed "<hookpoint>/<sae>"), stored per
    claim as `run_holm` beside the configuration-level verdict; returns the run-level record."""
    run = run_level_holm({config: c.as_record() for config, c in claims.items()}, alpha=alpha)
    for config, c in claims.items():
        for name, verdict in c.items():
            entry = run["claims"].get(f"{config}: {name}")
            verdict.record["run_holm"] = ({**entry, "family": run["family"]} if entry is not None else
                                          {"holds": None, "family": run["family"],
                                           "reason": "undetermined in its configuration"})
    return run


class ClaimsAnalysis:
    """Judges the claims from the other analyses' results; under the other estimator too (`opts.alternate`)."""

    name: ClassVar[str] = "claims"
    needs: ClassVar[tuple[str, ...]] = ("triggers", "ablation", "subspaces")

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs

    def update(self, batch: Batch) -> None:
        """Nothing to accumulate: the claims read the other analyses."""

    def result(self, done: Any) -> Claims:
        inp, opts = self.inputs, self.inputs.opts
        lm_metric = done.ablation.lm_metric
        per_seed = claim_rows(inp, inp.groups, done.ablation.per_seed, done, inp.generators,
                              done.subspaces.span_rows)
        claims = judge_claims(inp.seeds, per_seed, opts, lm_metric=lm_metric, spans=done.subspaces.complement_test)
        if opts.alternate:
            other = alternate_rule(opts.rule)
            alt_per_seed, alt_spans = self._tests_under(inp.alternate_groups, done, skip_model=(
                f"not run under the other estimator (its model passes would double the cost; `analyze "
                f"--stability {other.stability}` judges it)" if opts.lm_loss else ""))
            attach_alternate(claims, judge_claims(inp.seeds, alt_per_seed, opts, lm_metric=lm_metric,
                                                  spans=alt_spans, rule=other))
        return Claims({name: Verdict(c) for name, c in claims.items()})

    def _tests_under(self, groups: Sequence[StabilityGroups], done: Any, *, skip_model: str
                     ) -> tuple[dict[str, list[dict[str, Any]]], ComplementTest]:
        """Every claim's per-seed rows under another split, with fresh generators (seeded as the first split's)."""
        inp, trig = self.inputs, done.triggers
        gens = inp.fresh_generators()
        ablations = [seed_ablation(inp, i, g, stats, strata, gen, skip_model=skip_model) for i, (g, stats, strata, gen)
                     in enumerate(zip(groups, done.ablation.stats, trig.strata, gens))]
        with single_threaded_linalg():
            span_rows, spans = span_tests(inp, groups, trig.alive, done.subspaces.covariance)
        return claim_rows(inp, groups, ablations, done, gens, span_rows), spans


