"""Verdicts follow planted truth: hand-made SAEs on synthetic activations where each claim is planted true or false.

Latents 0–15 are stable, 16–31 unstable, 32–47 neither (the cross-seed result is a stand-in that says so).
Features are orthogonal and each seed's SAE encodes its own latents exactly (ReLU, encoder = decoder rows),
so a latent's firing frequency, amplitude and token binding are what the case plants.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from saeseeds.align.cross_seed import StabilityGroups
from saeseeds.analysis.ablation import AblationSet, ablation_fvu
from saeseeds.analysis.eval_data import EvalBatch, EvalData
from saeseeds.analysis.instability import AnalyzeOptions, analyze_config
from saeseeds.analysis.verdicts import (
    AblationStats,
    decidable_family,
    frequency_strata,
    holm,
    matched_draws,
    run_level_holm,
    stratified_rank_test,
)
from saeseeds.config import SaeConfig
from saeseeds.sae.model import SparseAutoencoder

N, GROUP, VOCAB, CTX = 48, 16, 20, 100
S, U, M = range(0, 16), range(16, 32), range(32, 48)


class _Cross:
    """Stand-in for a CrossSeedResult: fixed stable / unstable masks for every seed (default: the ranges S, U, M)."""

    def __init__(self, seeds: int, stab: np.ndarray | None = None) -> None:
        if stab is None:
            stab = np.full(N, 0.25)
            stab[list(S)], stab[list(U)] = 1.0, 0.0
        self.num_seeds, self.num_latents = seeds, [stab.size] * seeds
        self.digests: list[str] = []  # a stand-in records no weight digests: nothing to check them against
        self._groups = [StabilityGroups(stab.copy(), stab == 1.0, stab == 0.0, seeds - 1) for _ in range(seeds)]

    def with_rule(self, rule: Any) -> _Cross:
        return self

    def groups(self) -> list[StabilityGroups]:
        return self._groups


def _case(
    *, freq: dict[range, float], amp: dict[range, float] | None = None, bound: tuple[range, ...] = (),
    spans: str = "same", seeds: int = 3, tokens: int = 24_000, seed: int = 0,
) -> tuple[list[SparseAutoencoder], EvalData, _Cross]:
    """Synthetic activations and `seeds` hand-made ReLU SAEs.

    `freq` / `amp`: firing probability and amplitude per latent range; latents in a `bound` range fire only on
    one token id each (latent i on token i mod VOCAB). `spans = "same"`: every seed's unstable latents are a
    permutation of one 16-dimensional feature set; `"disjoint"`: each seed's unstable latents own 16 features.
    """
    g = torch.Generator().manual_seed(seed)
    n_feat = N + (seeds - 1) * GROUP if spans == "disjoint" else N
    ids = torch.randint(0, VOCAB, (tokens,), generator=g)
    acts = torch.zeros(tokens, n_feat)
    p = torch.zeros(n_feat)
    a = torch.ones(n_feat)
    owner = list(range(N)) + [16 + (f - N) % GROUP for f in range(N, n_feat)]  # feature → latent range
    for f in range(n_feat):
        lat = owner[f]
        p[f] = next(v for r, v in freq.items() if lat in r)
        a[f] = next((v for r, v in (amp or {}).items() if lat in r), 1.0)
        if any(lat in r for r in bound):
            on = (ids == f % VOCAB) & (torch.rand(tokens, generator=g) < p[f] * VOCAB)
        else:
            on = torch.rand(tokens, generator=g) < p[f]
        acts[:, f] = on * a[f] * (0.5 + torch.rand(tokens, generator=g))
    saes = []
    for s in range(seeds):
        rows = list(range(N))
        if spans == "same":
            perm = torch.randperm(GROUP, generator=g) + 16
            rows[16:32] = perm.tolist()
        elif s > 0:
            rows[16:32] = list(range(N + (s - 1) * GROUP, N + s * GROUP))
        w = torch.eye(n_feat)[rows]
        sae = SparseAutoencoder(SaeConfig(architecture="relu", num_latents=N), n_feat)
        with torch.no_grad():
            sae.W_dec.copy_(w)
            sae.encoder.weight.copy_(w)
            sae.encoder.bias.zero_()
            sae.b_dec.zero_()
        saes.append(sae.eval())
    n_chunks = tokens // CTX
    chunks = ids.reshape(n_chunks, CTX)
    positions = torch.arange(tokens)
    step = 4000
    batches = [EvalBatch({"h": acts[i : i + step]}, ids[i : i + step], positions[i : i + step])
               for i in range(0, tokens, step)]
    data = EvalData(batches, ["h"], chunks, None, VOCAB)
    return saes, data, _Cross(seeds)


def _claims(case: tuple[list[SparseAutoencoder], EvalData, _Cross], **opts: Any) -> dict[str, Any]:
    saes, data, cross = case
    options = AnalyzeOptions(n_random=opts.pop("n_random", 99), lm_loss=False, alternate=opts.pop("alternate", False),
                             **opts)  # the other estimator's verdicts: test_claims_are_judged_under_both_estimators
    res = analyze_config("h", "relu", list(range(len(saes))), saes, data, options, cross)  # type: ignore[arg-type]
    return res.claims.as_record()  # claims.json's records: what these tests read is the file format


EVEN = {S: 0.05, U: 0.05, M: 0.05}


def test_reconstruction_planted_true_and_false() -> None:
    true = _claims(_case(freq=EVEN, amp={S: 3.0}))
    assert true["stable_carry_reconstruction"]["holds"] is True
    false = _claims(_case(freq=EVEN))
    assert false["stable_carry_reconstruction"]["holds"] is False
    verdict = true["stable_carry_reconstruction"]
    for key in ("test", "statistic", "p_value", "p_holm", "effect_size", "control", "n", "per_seed", "combination"):
        assert key in verdict, key
    assert len(verdict["per_seed"]) == 3 and verdict["p_holm"] >= verdict["p_value"]
    assert verdict["effect_size"]["mean"] > 1 and len(verdict["effect_size"]["ci95"]) == 2
    assert verdict["per_seed"][0]["n_stable"] == 16 and verdict["per_seed"][0]["n_unstable"] == 16
    # the paper's own statement agrees here: 16 stable latents of amplitude 3 carry 144/176 of the harm
    assert verdict["descriptive"]["holds"] is True
    assert verdict["descriptive"]["harm_share_stable"]["mean"] == pytest.approx(144 / 176, abs=0.05)
    assert false["stable_carry_reconstruction"]["descriptive"]["holds"] is False  # a third each
    assert verdict["paper"].startswith("Gerasimov") and verdict["stability"]["estimator"] == "reappears"


def test_frequency_matching_defeats_a_frequency_artefact() -> None:
    """Stable latents fire often and unstable ones rarely, with equal amplitudes and equally frequent
    other latents: an unmatched control credits stability with what frequency does; the matched one does not.
    The stable latents still carry most of the reconstruction, as the paper states it: the descriptive answer
    holds while the frequency-adjusted one does not, and each says which question it answers."""
    case = _case(freq={S: 0.2, U: 0.02, range(32, 40): 0.2, range(40, 48): 0.02})
    assert _claims(case, match="none")["stable_carry_reconstruction"]["holds"] is True
    matched = _claims(case)["stable_carry_reconstruction"]
    assert matched["holds"] is False
    assert "matched on firing frequency" in matched["control"]
    assert matched["question"].startswith("frequency-adjusted")
    desc = matched["descriptive"]
    assert desc["holds"] is True and desc["question"].startswith("as the paper states it")
    assert desc["harm_share_stable"]["mean"] > 0.5 > desc["harm_share_unstable"]["mean"]
    assert desc["alone_share_stable"]["mean"] > 0.5 > desc["alone_share_unstable"]["mean"]
    assert len(desc["harm_share_stable"]["per_seed"]) == 3 and desc["harm_share_stable"]["std"] >= 0


def test_rarer_planted_true_and_false_and_dead_latents_excluded() -> None:
    true = _claims(_case(freq={S: 0.2, U: 0.01, M: 0.05}))["unstable_rarer"]
    assert true["holds"] is True and true["effect_size"]["mean"] > 0.9
    # dead unstable latents would make "rarer" automatic; excluded, the planted-false verdict stands
    false = _claims(_case(freq={S: 0.05, range(16, 24): 0.05, range(24, 32): 0.0, M: 0.05}))["unstable_rarer"]
    assert false["holds"] is False
    assert [r["n_dead"] for r in false["per_seed"]] == [8, 8, 8]
    assert false["per_seed"][0]["n_unstable"] == 8


def test_token_specificity_planted_true_and_false() -> None:
    true = _claims(_case(freq=EVEN, bound=(U,)))["unstable_more_token_specific"]
    assert true["holds"] is True and true["effect_size"]["mean"] > 0.9
    assert "frequency stratum" in true["control"]
    false = _claims(_case(freq=EVEN, bound=(S,)))["unstable_more_token_specific"]
    assert false["holds"] is False and false["effect_size"]["mean"] < 0.1


def test_spans_planted_true_and_false() -> None:
    assert _claims(_case(freq=EVEN, spans="same"))["unstable_spans_reproducible"]["holds"] is True
    assert _claims(_case(freq=EVEN, spans="disjoint"))["unstable_spans_reproducible"]["holds"] is False


def _span_case(unstable: str, *, seeds: int = 3, d: int = 64, sizes: tuple[int, int, int] = (32, 8, 24),
               tokens: int = 2000, seed: int = 0) -> tuple[list[SparseAutoencoder], EvalData, _Cross]:
    """Planted decoders (no training): `sizes` = (stable, unstable, other) latents per seed; the stable directions
    are shared by every seed (up to a little noise), the others random.

    `unstable = "isotropic"`: each seed's unstable directions are drawn independently and isotropically in the
    orthogonal complement of the stable span (their cross-seed overlap is chance); `"shared"`: each seed's are a
    different random basis of one subspace of that complement, as many dimensions as unstable latents. The activations vary in every
    direction and ten times more along the stable span, so random data directions lean towards the stable span.
    Every SAE is ReLU with encoder rows = decoder rows and no bias, so every latent fires on about half the rows.
    """
    g = torch.Generator().manual_seed(seed)
    n_s, n_u, n_o = sizes
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    stable, complement = q[:, :n_s].T, q[:, n_s:]
    shared_v = complement @ torch.linalg.qr(torch.randn(d - n_s, n_u, generator=g, dtype=torch.float64))[0]
    saes = []
    for _ in range(seeds):
        if unstable == "shared":
            rot, _ = torch.linalg.qr(torch.randn(n_u, n_u, generator=g, dtype=torch.float64))
            u = (shared_v @ rot).T
        else:
            u = torch.randn(n_u, d - n_s, generator=g, dtype=torch.float64) @ complement.T
        rows = torch.cat([stable + 0.02 * torch.randn(n_s, d, generator=g, dtype=torch.float64), u,
                          torch.randn(n_o, d, generator=g, dtype=torch.float64)])
        w = (rows / rows.norm(dim=1, keepdim=True)).float()
        sae = SparseAutoencoder(SaeConfig(architecture="relu", num_latents=w.shape[0]), d)
        with torch.no_grad():
            sae.W_dec.copy_(w)
            sae.encoder.weight.copy_(w)
            sae.encoder.bias.zero_()
            sae.b_dec.zero_()
        saes.append(sae.eval())
    acts = (torch.randn(tokens, d, generator=g, dtype=torch.float64)
            + 3 * torch.randn(tokens, n_s, generator=g, dtype=torch.float64) @ stable).float()
    data = EvalData([EvalBatch({"h": acts[i : i + 1000]}) for i in range(0, tokens, 1000)], ["h"])
    stab = np.array([1.0] * n_s + [0.0] * n_u + [0.5] * n_o)
    return saes, data, _Cross(seeds, stab)


@pytest.mark.parametrize(("unstable", "holds"), [("isotropic", False), ("shared", True)])
def test_spans_in_the_complement_of_the_stable_span(unstable: str, holds: bool) -> None:
    """Independent isotropic unstable sets in the stable span's complement do not span a reproducible subspace
    (the old control, random alive latents stable ones included, said they did); a shared low-rank one does."""
    claim = _claims(_span_case(unstable), n_random=199)["unstable_spans_reproducible"]
    assert claim["holds"] is holds, claim


def test_prediction_without_a_model_is_undetermined_with_a_reason() -> None:
    claims = _claims(_case(freq=EVEN, tokens=4000), n_random=19)
    pred = claims["stable_carry_prediction"]
    assert pred["holds"] is None and "model-based ablation" in pred["reason"]
    assert set(claims) == {"stable_carry_reconstruction", "stable_carry_prediction", "unstable_rarer",
                           "unstable_more_token_specific", "unstable_spans_reproducible"}


def test_too_few_draws_leave_verdicts_undetermined() -> None:
    """--n-random 10: the best p is 1/11, above α/m for any family; docs/definitions.md promises null."""
    claims = _claims(_case(freq=EVEN, amp={S: 3.0}, tokens=4000), n_random=10)
    for name in ("stable_carry_reconstruction", "unstable_rarer", "unstable_more_token_specific",
                 "unstable_spans_reproducible"):
        assert claims[name]["holds"] is None, name
        assert "10 control draws" in claims[name]["reason"] and "1/11" not in claims[name]["reason"]
    assert claims["stable_carry_reconstruction"]["descriptive"]["holds"] is True  # no draws needed


def _family(**p_mins: float) -> dict[str, dict[str, Any]]:
    return {name: {"p_value": 0.001, "p_min": p, "per_seed": [{"draws": round(1 / p) - 1}]}
            for name, p in p_mins.items()}


def test_holm_family_holds_only_claims_that_can_reach_alpha_over_m() -> None:
    """19 model-based draws give p ≥ 0.05, which Holm's first step over five claims (0.01) cannot pass:
    undetermined, and the other four form the family. 99 draws reach 1/100 = 0.05/5 exactly."""
    claims = _family(a=1 / 201, b=1 / 201, c=1 / 201, d=1 / 201, lm=1 / 20)
    assert decidable_family(claims, alpha=0.05) == ["a", "b", "c", "d"]
    assert claims["lm"]["holds"] is None and "0.05/5 = 0.01" in claims["lm"]["reason"]
    assert "19 control draws" in claims["lm"]["reason"]
    holm({k: claims[k] for k in "abcd"})
    assert all(claims[k]["holds"] is True and claims[k]["holm_family"] == 4 for k in "abcd")
    assert decidable_family(_family(a=1 / 201, b=1 / 201, c=1 / 201, d=1 / 201, lm=1 / 100)) == \
        ["a", "b", "c", "d", "lm"]
    # two claims tied at 0.011: both fit α/4 but not α/5, and neither can be preferred: both stay out
    tied = _family(a=0.005, b=0.005, c=0.005, x=0.011, y=0.011)
    assert decidable_family(tied) == ["a", "b", "c"]
    assert tied["x"]["holds"] is None and "0.05/5" in tied["x"]["reason"]


def test_run_level_holm_takes_every_configurations_claims_as_one_family() -> None:
    per_config = {"h/a": {"c1": {"p_value": 0.004, "p_min": 0.001, "holds": True},
                          "c2": {"p_value": 0.02, "p_min": 0.001, "holds": True},
                          "c3": {"p_value": 0.3, "p_min": 0.001, "holds": None}},
                  "h/b": {"c1": {"p_value": 0.01, "p_min": 0.001, "holds": True}}}
    run = run_level_holm(per_config, alpha=0.05)
    assert run["family"] == 3 and "h/a: c3" not in run["claims"]  # undetermined in its configuration
    assert run["claims"]["h/a: c1"]["p_holm"] == pytest.approx(0.012) and run["claims"]["h/a: c1"]["holds"] is True
    assert run["claims"]["h/b: c1"]["p_holm"] == pytest.approx(0.02)
    assert run["claims"]["h/a: c2"]["p_holm"] == pytest.approx(0.02) and run["claims"]["h/a: c2"]["holds"] is True


def test_rank_test_reports_the_exact_permutation_bound() -> None:
    """Two latents against two: only C(4, 2) = 6 label arrangements, so p cannot go below 1/6 however many draws."""
    values = torch.tensor([4.0, 3.0, 2.0, 1.0])
    high = torch.tensor([True, True, False, False])
    res = stratified_rank_test(values, high, ~high, torch.zeros(4, dtype=torch.long), 999,
                               torch.Generator().manual_seed(0))
    assert res["p_min"] == pytest.approx(1 / 6) and res["p"] >= 1 / 6 - 0.03


class _TwoEstimatorCross(_Cross):
    """A stand-in whose split depends on the estimator: under `shared` the amplitude-3 latents are 'between'."""

    def __init__(self, seeds: int) -> None:
        super().__init__(seeds)
        stab = np.full(N, 0.25)
        stab[list(M)], stab[list(U)] = 1.0, 0.0
        self._shared = _Cross(seeds, stab)

    def with_rule(self, rule: Any) -> _Cross:
        return self._shared if rule.stability == "shared" else self


def test_claims_are_judged_under_both_estimators_and_say_where_the_answer_changes() -> None:
    saes, data, _ = _case(freq=EVEN, amp={S: 3.0}, tokens=8000)
    res = analyze_config("h", "relu", [0, 1, 2], saes, data, AnalyzeOptions(n_random=99, lm_loss=False),
                         _TwoEstimatorCross(3))  # type: ignore[arg-type]
    claim = res.claims["stable_carry_reconstruction"]
    assert claim.estimator == "reappears" and claim.record["stability"]["papers_estimator"] is True
    assert claim.holds is True and claim.descriptive.holds is True
    alt = claim.alternate
    assert alt.estimator == "shared" and alt.holds is False and alt.descriptive.holds is False
    assert claim.estimator_changes_answer is True
    assert claim.estimator_changes == ["frequency-adjusted test", "descriptive answer"]
    assert res.stability.alternate.rule["stability"] == "shared"
    assert res.stability.alternate.per_seed[0].n_stable == 16
    rarer = res.claims["unstable_rarer"]  # equal frequencies: the same answer under both
    assert rarer.estimator_changes_answer is False
    single = analyze_config("h", "relu", [0, 1, 2], saes, data,
                            AnalyzeOptions(n_random=99, lm_loss=False, alternate=False),
                            _TwoEstimatorCross(3))  # type: ignore[arg-type]
    assert single.claims["stable_carry_reconstruction"].alternate is None and single.stability.alternate is None


# --------------------------------------------------------------------------------------------
# the machinery


@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_ablation_statistics_give_the_exact_fvu_of_any_set(arch: str) -> None:
    g = torch.Generator().manual_seed(0)
    sae = SparseAutoencoder(SaeConfig(architecture=arch, num_latents=40, k=5), 12, generator=g)
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(12, generator=g))
        sae.encoder.bias.copy_(torch.randn(40, generator=g) * 0.1)
    batches = [torch.randn(64, 12, generator=g) + 0.5 for _ in range(3)]
    stats = AblationStats(sae.W_dec.detach())
    with torch.no_grad():
        for x in batches:
            code = sae.encode(x)
            stats.update(x, code.values, code.indices, sae.decode(code))
    masks = torch.rand((6, 40), generator=g) < 0.3
    masks[0], masks[-1] = False, True
    got = stats.fvu(masks)
    want = ablation_fvu(sae, batches, [AblationSet(str(i), "x", m) for i, m in enumerate(masks)])
    torch.testing.assert_close(got, torch.tensor([want[str(i)] for i in range(6)], dtype=torch.float64),
                               rtol=1e-5, atol=1e-6)


def test_matched_draws_keep_the_count_in_every_stratum() -> None:
    freq = torch.tensor([0.1] * 10 + [0.01] * 10 + [0.0] * 4)
    alive = freq > 0
    strata = frequency_strata(freq, alive, n_bins=4)
    assert (strata[20:] == -1).all() and strata[:10].unique().numel() == 1 and strata[10:20].unique().numel() == 1
    target = torch.zeros(24, dtype=torch.bool)
    target[[0, 1, 2, 12, 22]] = True  # 22 is dead: never drawn for
    draws = matched_draws(target, strata, 50, torch.Generator().manual_seed(0))
    assert (draws[:, :10].sum(1) == 3).all() and (draws[:, 10:20].sum(1) == 1).all() and not draws[:, 20:].any()
    assert (frequency_strata(freq, alive, match="none")[:20] == 0).all()


def test_stratified_rank_test_sees_through_simpsons_paradox() -> None:
    """Pooled, the 'high' group looks larger (it sits in the high-value stratum); within strata it is smaller."""
    values = torch.tensor([10.0, 11, 12, 13, 14, 15, 16, 17, 1, 2, 3, 4, 5, 6, 7, 8])
    high = torch.zeros(16, dtype=torch.bool)
    high[[0, 1, 2, 3, 4, 5, 8]] = True  # mostly in stratum 0 (large values), each the smaller ones of its stratum
    low = ~high
    strata = torch.tensor([0] * 8 + [1] * 8)
    one = torch.zeros(16, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    assert stratified_rank_test(values, high, low, one, 199, gen)["effect"] > 0.5
    within = stratified_rank_test(values, high, low, strata, 199, gen)
    assert within["effect"] < 0.5 and within["p"] > 0.5


def test_holm_adjusts_across_claims() -> None:
    claims = {"a": {"p_value": 0.01}, "b": {"p_value": 0.02}, "c": {"p_value": 0.04}, "d": {"holds": None}}
    out = holm(claims, alpha=0.05)
    assert out["a"]["p_holm"] == pytest.approx(0.03) and out["a"]["holds"] is True
    assert out["b"]["p_holm"] == pytest.approx(0.04) and out["b"]["holds"] is True
    assert out["c"]["p_holm"] == pytest.approx(0.04) and out["c"]["holds"] is True
    assert out["d"]["holds"] is None
    assert holm({"a": {"p_value": 0.03}, "b": {"p_value": 0.04}})["a"]["holds"] is False


def test_an_empty_alive_group_leaves_verdicts_undetermined_and_the_table_intact() -> None:
    saes, data, cross = _case(freq={S: 0.0, U: 0.05, M: 0.05}, tokens=4000)  # every stable latent is dead
    res = analyze_config("h", "relu", [0, 1, 2], saes, data, AnalyzeOptions(n_random=19, lm_loss=False),
                         cross)  # type: ignore[arg-type]
    # one StabilityGroups (align's, numpy): the analysis keeps the cross-seed result's split, not a torch twin
    groups = res.stability.groups
    assert len(groups) == 3 and all(a is b for a, b in zip(groups, cross.groups()))
    for name in ("stable_carry_reconstruction", "unstable_rarer"):
        assert res.claims[name].holds is None and "seed 0" in res.claims[name].reason
    assert [r.name for r in res.ablation.rows] == ["none", "stable", "unstable", "all_but_stable",
                                                                   "all_but_unstable", "all"]
