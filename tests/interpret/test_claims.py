"""The interpretability claims are decided by their data: each is planted and removed, and the verdict follows."""

from __future__ import annotations

import numpy as np
import pytest

from saeseeds.interpret.claims import PairSimilarities, SeedScores, judge

N = 40  # latents per group and seed
SEEDS = 3
DRAWS = 99


def _seed(i: int, rng: np.random.Generator, *, unshared_shift: float, unstable_shift: float) -> SeedScores:
    """One seed: N latents per group in 4 frequency strata; AUROC around 0.7 plus each group's planted shift."""
    ids = {g: np.arange(k * N, (k + 1) * N) for k, g in enumerate(("shared", "unshared", "stable", "unstable"))}
    strata = np.tile(np.arange(4), N * 4 // 4)[: 4 * N]
    auroc = {}
    for g, shift in (("shared", 0.0), ("unshared", unshared_shift), ("stable", 0.0), ("unstable", unstable_shift)):
        for x in ids[g].tolist():
            auroc[x] = float(np.clip(0.7 + shift + rng.normal(0, 0.03), 0, 1))
    return SeedScores(i, ids, {"sharing": strata, "stability": strata}, auroc)


def _pairs(rng: np.random.Generator, *, tracks: bool) -> list[PairSimilarities]:
    out = []
    for i in range(SEEDS):
        for j in range(i + 1, SEEDS):
            cos = rng.uniform(0, 1, 60)
            sim = cos + rng.normal(0, 0.1, 60) if tracks else rng.uniform(0, 1, 60)
            out.append(PairSimilarities((i, j), cos, sim))
    return out


def _judge(*, unshared_shift: float = 0.0, unstable_shift: float = 0.0, tracks: bool = True, lexical: bool = True,
           seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    seeds = [_seed(i, rng, unshared_shift=unshared_shift, unstable_shift=unstable_shift) for i in range(SEEDS)]
    return judge(seeds, _pairs(rng, tracks=tracks), lexical=lexical, n_draws=DRAWS, seed=seed)


def test_equivalence_holds_when_unshared_score_like_shared_and_fails_when_they_score_lower() -> None:
    assert _judge()["unshared_interpretable_as_shared"]["holds"] is True
    worse = _judge(unshared_shift=-0.1)["unshared_interpretable_as_shared"]
    assert worse["holds"] is False
    assert worse["effect_size"]["mean"] == pytest.approx(-0.1, abs=0.02)
    assert worse["margin"] == 0.05


def test_unstable_more_lexical_holds_only_when_planted() -> None:
    assert _judge(unstable_shift=0.05)["unstable_more_lexical"]["holds"] is True
    assert _judge(unstable_shift=0.0)["unstable_more_lexical"]["holds"] is False
    assert _judge(unstable_shift=-0.05)["unstable_more_lexical"]["holds"] is False


def test_unstable_more_lexical_needs_the_token_explainer() -> None:
    claim = _judge(unstable_shift=0.05, lexical=False)["unstable_more_lexical"]
    assert claim["holds"] is None and "--explainer tokens" in claim["reason"]


def test_similarity_tracking_cosine_holds_only_when_planted() -> None:
    assert _judge(tracks=True)["explanation_similarity_tracks_cosine"]["holds"] is True
    assert _judge(tracks=False)["explanation_similarity_tracks_cosine"]["holds"] is False


def test_verdicts_carry_holm_and_are_undetermined_when_draws_cannot_reach_alpha() -> None:
    claims = _judge(unstable_shift=0.05)
    assert all(c["holm_family"] == 3 and "p_holm" in c and "ci95" in c["effect_size"] for c in claims.values())
    rng = np.random.default_rng(0)
    seeds = [_seed(i, rng, unshared_shift=0.0, unstable_shift=0.05) for i in range(SEEDS)]
    few = judge(seeds, _pairs(rng, tracks=True), lexical=True, n_draws=9)
    assert all(c["holds"] is None and "α/m" in c["reason"] for c in few.values())


def test_an_empty_group_leaves_the_claim_undetermined() -> None:
    rng = np.random.default_rng(0)
    seeds = [_seed(i, rng, unshared_shift=0.0, unstable_shift=0.0) for i in range(SEEDS)]
    seeds[1].samples["unshared"] = np.zeros(0, dtype=np.int64)
    claim = judge(seeds, _pairs(rng, tracks=True), lexical=True, n_draws=DRAWS)["unshared_interpretable_as_shared"]
    assert claim["holds"] is None and "empty group" in claim["reason"]
