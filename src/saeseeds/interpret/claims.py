"""The interpretability claims, tested the project's way (docs/definitions.md, "Interpretability", "Claims"):
per seed (or per seed pair), on frequency-matched samples, combined across seeds by the intersection-union rule
(p = max), effect sizes with a 95% t-interval over seeds, Holm over the family of a configuration's claims, and a
claim whose best reachable p cannot pass Holm's first step undetermined (`analysis.verdicts`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from saeseeds.analysis.verdicts import (
    ClaimSpec,
    best_p,
    combine_seeds,
    holm_over_decidable,
    stratified_rank_test,
)
from saeseeds.signflip import VERDICT_WORDS

PAULO_BELROSE = "Paulo & Belrose 2025"
GERASIMOV = "Gerasimov et al. 2026"
SONG = "Song et al. 2025"
MARGIN = 0.05
"""Equivalence margin on detection AUROC (docs/definitions.md: why 0.05)."""
CLAIMS = ("unshared_interpretable_as_shared", "unstable_more_lexical", "explanation_similarity_tracks_cosine")


@dataclass
class SeedScores:
    """One seed's sampled latents per group, the frequency strata of each group pair, and each latent's score."""

    seed: int
    samples: dict[str, np.ndarray]
    """group (shared, unshared, stable, unstable) → sampled latent ids."""
    strata: dict[str, np.ndarray]
    """pair (sharing, stability) → stratum per latent (−1 outside)."""
    auroc: dict[int, float] = field(default_factory=dict)


@dataclass
class PairSimilarities:
    """Matched latents of two seeds (decoder Hungarian partners): their decoder cosine and explanation similarity."""

    seeds: tuple[int, int]
    cosine: np.ndarray
    similarity: np.ndarray


def _group_values(s: SeedScores, high: str, low: str, pair: str, shift: float = 0.0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(values, high mask, low mask, strata) over the two groups' latents; `shift` is added to the high group."""
    ids = np.concatenate([s.samples[high], s.samples[low]])
    if s.samples[high].size == 0 or s.samples[low].size == 0:
        return None
    values = np.array([s.auroc.get(int(i), math.nan) for i in ids], dtype=np.float64)
    is_high = np.zeros(ids.size, dtype=bool)
    is_high[: s.samples[high].size] = True
    values = values + shift * is_high
    return (torch.from_numpy(values), torch.from_numpy(is_high), torch.from_numpy(~is_high),
            torch.from_numpy(s.strata[pair][ids].astype(np.int64)))


def _mean_diff(s: SeedScores, high: str, low: str) -> float:
    a = [s.auroc.get(int(i), math.nan) for i in s.samples[high]]
    b = [s.auroc.get(int(i), math.nan) for i in s.samples[low]]
    a, b = [x for x in a if math.isfinite(x)], [x for x in b if math.isfinite(x)]
    return float(np.mean(a) - np.mean(b)) if a and b else math.nan


def equivalence_seed(s: SeedScores, margin: float, n_draws: int, gen: torch.Generator) -> dict[str, Any]:
    """Two one-sided stratified rank tests (shift model): unshared + δ > shared and shared > unshared − δ."""
    lower = _group_values(s, "unshared", "shared", "sharing", shift=margin)
    upper = _group_values(s, "shared", "unshared", "sharing", shift=0.0)
    n = {"n_shared": int(s.samples["shared"].size), "n_unshared": int(s.samples["unshared"].size)}
    if lower is None or upper is None:
        return {"p": math.nan, "effect": math.nan, "note": "an empty group (no eligible shared or unshared latent)", **n}
    values, high, low, strata = upper
    values = values - margin * low.double()  # shared vs unshared − δ
    t_low = stratified_rank_test(*lower, n_draws, gen)
    t_high = stratified_rank_test(values, high, low, strata, n_draws, gen)
    if not (math.isfinite(t_low["p"]) and math.isfinite(t_high["p"])):
        return {"p": math.nan, "effect": math.nan, "note": "no frequency stratum holds both groups", **n}
    return {"p": max(t_low["p"], t_high["p"]), "p_lower": t_low["p"], "p_upper": t_high["p"],
            "p_min": max(t_low["p_min"], t_high["p_min"]), "draws": n_draws,
            "effect": _mean_diff(s, "unshared", "shared"), **n}


def lexical_seed(s: SeedScores, n_draws: int, gen: torch.Generator) -> dict[str, Any]:
    """Stratified rank test: unstable latents' token-explainer detection AUROC above stable ones'."""
    vals = _group_values(s, "unstable", "stable", "stability")
    n = {"n_stable": int(s.samples["stable"].size), "n_unstable": int(s.samples["unstable"].size)}
    if vals is None:
        return {"p": math.nan, "effect": math.nan, "note": "an empty group (no eligible stable or unstable latent)", **n}
    t = stratified_rank_test(*vals, n_draws, gen)
    if not math.isfinite(t["p"]):
        return {"p": math.nan, "effect": math.nan, "note": "no frequency stratum holds both groups", **n}
    return {"p": t["p"], "p_min": t["p_min"], "draws": n_draws, "effect": _mean_diff(s, "unstable", "stable"),
            "superiority": t["effect"], **n}


def spearman_seed_pair(p: PairSimilarities, n_draws: int, rng: np.random.Generator) -> dict[str, Any]:
    """Spearman ρ of explanation similarity on decoder cosine over matched pairs; one-sided permutation p (ρ > 0)."""
    from scipy.stats import rankdata

    ok = np.isfinite(p.cosine) & np.isfinite(p.similarity)
    n = int(ok.sum())
    if n < 3:
        return {"p": math.nan, "effect": math.nan, "n_pairs": n, "note": f"{n} matched pairs with both explained"}
    rx, ry = rankdata(p.cosine[ok]), rankdata(p.similarity[ok])
    rx, ry = rx - rx.mean(), ry - ry.mean()
    norm = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    if norm == 0:
        return {"p": math.nan, "effect": math.nan, "n_pairs": n, "note": "constant cosine or similarity"}
    rho = float(rx @ ry) / norm
    perms = np.argsort(rng.random((n_draws, n)), axis=1)
    null = (ry[perms] @ rx) / norm
    p_value = (1 + int((null >= rho - 1e-12).sum())) / (1 + n_draws)
    return {"p": p_value, "p_min": best_p(n_draws), "draws": n_draws, "effect": rho, "n_pairs": n,
            "seeds": list(p.seeds)}


def judge(seeds: Sequence[SeedScores], pairs: Sequence[PairSimilarities], *, lexical: bool, margin: float = MARGIN,
          n_draws: int = 999, alpha: float = 0.05, seed: int = 0) -> dict[str, dict[str, Any]]:
    """The three claims of one configuration, each with its verdict (holds true / false / null with a reason)."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    ids = [s.seed for s in seeds]
    claims: dict[str, dict[str, Any]] = {}
    eq = combine_seeds(ClaimSpec(
        "equivalence (two one-sided tests, shift model) by stratified rank tests within frequency strata",
        "van Elteren rank sums of detection AUROC, unshared shifted by ±δ", "mean AUROC(unshared) − mean AUROC(shared)",
        "labels permuted within frequency strata", {"margin": margin}),
        ids, [equivalence_seed(s, margin, n_draws, gen) for s in seeds])
    claims[CLAIMS[0]] = {"paper": PAULO_BELROSE, "statement": "unshared latents are interpretable at rates comparable "
                         "to shared ones", "question": f"in every seed, is the detection AUROC of frequency-matched "
                         f"unshared latents within ±{margin:g} of shared ones'?", **eq}
    lex = combine_seeds(ClaimSpec(
        "one-sided stratified rank test (unstable > stable) within frequency strata",
        "van Elteren rank sum of the token explainer's detection AUROC",
        "mean AUROC(unstable) − mean AUROC(stable)", "labels permuted within frequency strata"),
        ids, [lexical_seed(s, n_draws, gen) for s in seeds])
    claims[CLAIMS[1]] = {"paper": GERASIMOV, "statement": "unstable latents are more lexical / surface-form",
                         "question": "in every seed, at matched firing frequency, does the token (lexical) explainer "
                                     "detect unstable latents better than stable ones?", **lex}
    if not lexical:
        claims[CLAIMS[1]].update(p_value=math.nan, holds=None,
                                 reason="needs the token explainer's scores (run interpret with --explainer tokens)")
    sim = combine_seeds(ClaimSpec(
        "one-sided permutation test of Spearman's ρ > 0 per seed pair",
        "Spearman ρ of explanation similarity on decoder cosine over matched latents",
        "Spearman ρ", "similarities permuted among the pair's matched latents"),
        list(range(len(pairs))), [spearman_seed_pair(p, n_draws, rng) for p in pairs])
    claims[CLAIMS[2]] = {"paper": SONG, "statement": "explanation similarity of matched latents rises with their "
                         "decoder cosine", "question": "for every seed pair, does the similarity of matched latents' "
                         "explanations rise with their decoder cosine (Spearman ρ > 0)?", "units": "seed pairs "
                         "(they share seeds, so they are not independent; the intersection-union rule needs none)",
                         **sim}
    holm_over_decidable(claims, alpha=alpha)
    return claims


def claim_line(name: str, claim: Mapping[str, Any]) -> str:
    """One verdict as a line: `unstable_more_lexical: holds (p = 0.001, Holm 0.003; effect +0.08 [0.02, 0.14])`."""
    eff = claim.get("effect_size") or {}
    ci = eff.get("ci95") or [math.nan, math.nan]
    effect = f"; {eff.get('name', 'effect')} {eff.get('mean', math.nan):+.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    detail = (f"p = {claim['p_value']:.3g}, Holm {claim['p_holm']:.3g}{effect}" if claim["holds"] is not None
              else f"{claim.get('reason', '')}{effect}")
    return f"{name}: {VERDICT_WORDS[claim['holds']]} ({detail})"
