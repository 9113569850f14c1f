"""Verdicts on the claims of the seed-dependence study, with honest statistics (docs/definitions.md, "Verdicts").

Every claim is tested **per seed** (each seed in turn is the base; latents are never pooled across seeds), by an
empirical p-value against random control draws, `p = (1 + #{control ≥ observed}) / (1 + draws)`:

- controls are **matched on firing frequency**: random latent sets drawn stratified by frequency bins, so a
  control set has, bin by bin, as many latents as the tested set (a stratified permutation of the labels);
  the span test's controls are **data-matched random directions** inside the orthogonal complement of the
  stable span (random latents would include stable ones, which the other seeds' unstable sets avoid);
- the functional claims also get the paper's **descriptive** answer (shares of the whole dictionary's effect
  the stable and unstable sets carry), with no control;
- **dead latents** (never firing on the analysis tokens) are excluded from every test and counted per seed;
- rank statistics are compared **within frequency strata** (a van Elteren-weighted rank-sum, with a stratified
  permutation p-value);
- a claim holds across seeds when it holds **in every seed** (intersection-union test: combined p = max over
  seeds), then **Holm** corrects across the claims; effect sizes get a t-interval over seeds;
- every test reports the smallest p its draws can reach (`p_min`): a claim whose best p cannot pass Holm's
  first step α/m is **undetermined** (`decidable_family`), never "does not hold".

Everything here is plain torch on per-latent vectors, so the tests can plant claims true or false by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from saeseeds.errors import DataError
from saeseeds.signflip import holm_adjust

MATCH_MODES = ("frequency", "frequency_mass", "none")
"""How random controls are matched: frequency bins, frequency bins × activation-mass halves, or not at all."""

MAX_DENSE_LATENTS = 8192
"""Largest dictionary whose latent co-activation matrix is accumulated densely (n² float64) for ablation."""


# --------------------------------------------------------------------------------------------
# strata and matched draws


def frequency_strata(
    frequency: Tensor, alive: Tensor, *, n_bins: int = 10, match: str = "frequency", mass: Tensor | None = None
) -> Tensor:
    """Stratum id per latent (−1 for dead latents): quantile bins of log-frequency among the alive latents.

    `match = "frequency_mass"` splits each frequency bin at its median activation mass (`mass`), `"none"` puts
    every alive latent in one stratum (the unmatched control, kept as an option to show what matching changes).
    """
    if match not in MATCH_MODES:
        raise DataError(f"match must be one of {MATCH_MODES}, got {match!r}")
    n = frequency.numel()
    alive = alive.bool().cpu()
    strata = torch.full((n,), -1, dtype=torch.long)
    idx = torch.nonzero(alive).flatten()
    if idx.numel() == 0:
        return strata
    if match == "none":
        strata[idx] = 0
        return strata
    logf = torch.log(frequency.double().cpu()[idx].clamp_min(1e-300))
    bins = max(1, min(n_bins, idx.numel()))
    # rank-based quantile bins; equal values share a bin (ties go to the lower bin)
    order = torch.argsort(logf, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    sorted_vals = logf[order]
    first = torch.searchsorted(sorted_vals, sorted_vals, right=False)  # first rank of each value
    rank_tied = first[rank]
    b = torch.div(rank_tied * bins, idx.numel(), rounding_mode="floor")
    if match == "frequency_mass":
        if mass is None:
            raise DataError("match = 'frequency_mass' needs the activation mass of each latent")
        m = mass.double().cpu()[idx]
        half = torch.zeros_like(b)
        for k in b.unique().tolist():
            sel = b == k
            half[sel] = (m[sel] > m[sel].median()).long()
        b = b * 2 + half
    strata[idx] = b
    return strata


def matched_draws(target: Tensor, strata: Tensor, n_draws: int, generator: torch.Generator) -> Tensor:
    """`n_draws` random sets (bool [draws, n]) with the target's count in every stratum, from that stratum.

    Draws are from every latent of the stratum (the target's own members included): a stratified permutation
    of the target labels, the null under which stability says nothing beyond frequency. Target latents
    outside every stratum (dead) are not drawn for.
    """
    n = strata.numel()
    target = target.bool().cpu() & (strata >= 0)
    out = torch.zeros((n_draws, n), dtype=torch.bool)
    for k in strata[target].unique().tolist():
        members = torch.nonzero(strata == k).flatten()
        count = int((target & (strata == k)).sum())
        keys = torch.rand((n_draws, members.numel()), generator=generator)
        pick = torch.topk(keys, count, dim=1).indices
        out.scatter_(1, members[pick], True)
    return out


def empirical_p(observed: float, controls: Tensor, *, greater: bool = True) -> float:
    """(1 + #{control ≥ observed}) / (1 + draws) (or ≤ for `greater=False`); NaN without draws or observation."""
    if controls.numel() == 0 or not math.isfinite(observed):
        return math.nan
    hits = int((controls >= observed).sum()) if greater else int((controls <= observed).sum())
    return (1 + hits) / (1 + controls.numel())


def best_p(n_draws: int) -> float:
    """The smallest empirical p that `n_draws` control draws can give: 1 / (1 + draws)."""
    return 1.0 / (1 + n_draws)


# --------------------------------------------------------------------------------------------
# ablation from sufficient statistics


class AblationStats:
    """Streaming sufficient statistics for the exact FVU of *any* ablated set, without re-encoding or decoding.

    With x̂ = Σ_i f_i d_i + b_dec and r = x − x̂, ablating set S gives x − x̂_S = r + Σ_{i∈S} f_i d_i, so
    Σ_t ‖x − x̂_S‖² = Σ‖r‖² + 2 Σ_{i∈S} b_i + Σ_{i,j∈S} (d_i·d_j) C_ij with b_i = Σ_t f_ti (r_t·d_i) and
    C = FᵀF the latent co-activation matrix. One encode per batch; each set then costs one quadratic form.
    """

    def __init__(self, w_dec: Tensor) -> None:
        self.w_dec = w_dec.detach()
        n = w_dec.shape[0]
        if n > MAX_DENSE_LATENTS:
            raise DataError(f"AblationStats: {n} latents exceed the dense co-activation cap {MAX_DENSE_LATENTS}")
        self.n = n
        self.b = torch.zeros(n, dtype=torch.float64)
        self.coact = torch.zeros((n, n), dtype=torch.float64)
        self.resid = 0.0
        self.count = 0
        self.sum: Tensor | None = None
        self.sumsq = 0.0
        self.b_dec: Tensor | None = None

    def update(self, x: Tensor, values: Tensor, indices: Tensor, x_hat: Tensor) -> None:
        """Add one batch: inputs `x [B, d]`, the sparse code (`values`, `indices` [B, m]) and its reconstruction."""
        xd = x.double().cpu()
        r = (x.float() - x_hat.float()).to(self.w_dec.device)
        self.count += xd.shape[0]
        self.sum = xd.sum(0) if self.sum is None else self.sum + xd.sum(0)
        self.sumsq += float((xd**2).sum())
        self.resid += float((r.double() ** 2).sum())
        proj = (r @ self.w_dec.float().T).gather(1, indices.long().to(r.device))  # r_t · d_i at active entries
        vals = values.float().to(r.device)
        self.b.index_add_(0, indices.long().flatten().cpu(), (vals * proj).double().flatten().cpu())
        keep = vals != 0
        rows = torch.arange(vals.shape[0], device=vals.device).unsqueeze(1).expand_as(vals)[keep]
        cols = indices.long().to(vals.device)[keep]
        f = torch.sparse_coo_tensor(torch.stack([cols, rows]), vals[keep], (self.n, vals.shape[0]),
                                    check_invariants=False)
        dense = torch.zeros((vals.shape[0], self.n), dtype=torch.float32, device=vals.device)
        dense[rows, cols] = vals[keep]
        self.coact += torch.sparse.mm(f, dense).double().cpu()  # per batch in float32, summed in float64

    def total_variance(self) -> float:
        if self.sum is None or self.count == 0:
            raise DataError("ablation: no activations were given")
        total = self.sumsq - float((self.sum**2).sum()) / self.count
        if total <= 0:
            raise DataError("ablation: activations have zero variance; FVU is undefined")
        return total

    def fvu(self, masks: Tensor) -> Tensor:
        """FVU (float64 [R]) of the reconstruction with each set of `masks` (bool [R, n]) ablated."""
        total = self.total_variance()
        gram = self.w_dec.double().cpu() @ self.w_dec.double().cpu().T
        m = gram * self.coact
        z = masks.double().reshape(-1, self.n)
        err = self.resid + 2 * (z @ self.b) + ((z @ m) * z).sum(1)
        return err / total


# --------------------------------------------------------------------------------------------
# rank tests within strata


def stratified_rank_test(
    values: Tensor, high: Tensor, low: Tensor, strata: Tensor, n_draws: int, generator: torch.Generator
) -> dict[str, Any]:
    """Do `high` latents have larger `values` than `low` latents within strata? A van Elteren-weighted test.

    In each stratum k holding both groups, U_k counts (high, low) pairs with the high value larger (ties ½);
    the statistic is Σ_k (U_k − n_hk n_lk / 2) / (n_k + 1) (van Elteren's weights), its null the labels
    permuted within each stratum (`n_draws` draws; one-sided p). The effect size is the weighted
    probability of superiority Σ w_k U_k / Σ w_k n_hk n_lk (0.5: no difference), w_k = 1 / (n_k + 1).
    `p_min` is the smallest p the test can give: 1 / (1 + draws), or 1 / (the number of distinct label
    arrangements within strata, Π_k C(n_k, n_hk)) when that is larger (the exact permutation test's bound).
    """
    from scipy.stats import rankdata

    values = values.double().cpu()
    finite = torch.isfinite(values)
    high, low = high.bool().cpu() & finite & (strata >= 0), low.bool().cpu() & finite & (strata >= 0)
    stat_obs, stat_perm = 0.0, torch.zeros(n_draws, dtype=torch.float64)
    num, den = 0.0, 0.0
    used = 0
    log_arrangements = 0.0  # log of the number of distinct label arrangements within strata
    for k in strata[high | low].unique().tolist():
        members = torch.nonzero((strata == k) & (high | low)).flatten()
        labels = high[members].double()
        n_h, n_k = int(labels.sum()), members.numel()
        n_l = n_k - n_h
        if n_h == 0 or n_l == 0:
            continue
        used += 1
        log_arrangements += math.lgamma(n_k + 1) - math.lgamma(n_h + 1) - math.lgamma(n_l + 1)
        ranks = torch.from_numpy(rankdata(values[members].numpy())).double()
        w = 1.0 / (n_k + 1)
        u = float((labels * ranks).sum()) - n_h * (n_h + 1) / 2
        stat_obs += w * (u - n_h * n_l / 2)
        num += w * u
        den += w * n_h * n_l
        perm = torch.argsort(torch.rand((n_draws, n_k), generator=generator), dim=1)
        u_perm = (labels[perm] * ranks).sum(1) - n_h * (n_h + 1) / 2
        stat_perm += w * (u_perm - n_h * n_l / 2)
    if used == 0:
        return {"statistic": math.nan, "p": math.nan, "effect": math.nan, "strata_used": 0,
                "n_high": int(high.sum()), "n_low": int(low.sum())}
    return {
        "statistic": stat_obs,
        "p": empirical_p(stat_obs - 1e-12 * abs(stat_obs), stat_perm),
        "effect": num / den,
        "strata_used": used,
        "n_high": int(high.sum()),
        "n_low": int(low.sum()),
        "draws": n_draws,
        "p_min": max(best_p(n_draws), math.exp(-log_arrangements)),
    }


# --------------------------------------------------------------------------------------------
# per-seed tests


FIXED_SETS = ("none", "stable", "unstable", "all_but_stable", "all_but_unstable", "all")
"""The fixed ablated sets `ablation_test` evaluates first, in this order, before the random controls."""


def ablation_test(
    metric: Callable[[Tensor], Tensor],
    stable: Tensor,
    unstable: Tensor,
    strata: Tensor,
    n_draws: int,
    generator: torch.Generator,
    *,
    higher_is_worse: bool = True,
) -> dict[str, Any]:
    """Stable latents carry more, unstable less, than frequency-matched random sets of their sizes (one seed).

    `metric(masks [R, n]) -> [R]` evaluates ablated sets: the `FIXED_SETS` (none ablated, the alive stable set,
    the alive unstable set, every latent but the stable set, every latent but the unstable set, all), then
    `n_draws` controls like the stable set and `n_draws` like the unstable set. Harm = the change of the metric
    in the harmful direction. p_stable: P(control harm ≥ stable harm); p_unstable: P(control harm ≤ unstable
    harm); the seed's p is their maximum (both parts must hold: intersection-union). `descriptive` holds the
    shares the paper states (`descriptive_shares`), with no control.
    """
    n = strata.numel()
    stable, unstable = stable.bool().cpu() & (strata >= 0), unstable.bool().cpu() & (strata >= 0)
    if not stable.any() or not unstable.any():
        return {"p": math.nan, "note": "the seed has no alive stable or no alive unstable latent"}
    draws_s = matched_draws(stable, strata, n_draws, generator)
    draws_u = matched_draws(unstable, strata, n_draws, generator)
    fixed = torch.stack([torch.zeros(n, dtype=torch.bool), stable, unstable, ~stable, ~unstable,
                         torch.ones(n, dtype=torch.bool)])
    vals = metric(torch.cat([fixed, draws_s, draws_u])).double()
    sign = 1.0 if higher_is_worse else -1.0
    harm = sign * (vals - vals[0])
    k = len(FIXED_SETS)
    obs_s, obs_u = float(harm[1]), float(harm[2])
    ctrl_s, ctrl_u = harm[k : k + n_draws], harm[k + n_draws :]
    p_s = empirical_p(obs_s, ctrl_s, greater=True)
    p_u = empirical_p(obs_u, ctrl_u, greater=False)
    mean_s, mean_u = float(ctrl_s.mean()), float(ctrl_u.mean())
    return {
        "p": max(p_s, p_u),
        "p_stable": p_s,
        "p_unstable": p_u,
        "value_none": float(vals[0]),
        "harm_stable": obs_s,
        "harm_unstable": obs_u,
        "control_harm_like_stable": {"mean": mean_s, "std": float(ctrl_s.std()) if n_draws > 1 else math.nan},
        "control_harm_like_unstable": {"mean": mean_u, "std": float(ctrl_u.std()) if n_draws > 1 else math.nan},
        "effect": obs_s / mean_s if mean_s > 0 else math.nan,
        "effect_unstable": obs_u / mean_u if mean_u > 0 else math.nan,
        "n_stable": int(stable.sum()),
        "n_unstable": int(unstable.sum()),
        "draws": n_draws,
        "p_min": best_p(n_draws),
        "descriptive": descriptive_shares(harm[:k]),
    }


def descriptive_shares(harm: Tensor) -> dict[str, Any]:
    """What the paper states, with no control: the shares of the whole dictionary's effect the stable and the
    unstable latents carry (one seed), from the harms of the `FIXED_SETS` (harm of "none" is 0).

    - harm share of a set S: harm(S ablated) / harm(all ablated): how much of the loss of ablating every latent
      ablating S alone causes;
    - alone share of S: (harm(all) − harm(all but S)) / harm(all): how much of the SAE's effect S recovers on its
      own (for FVU: the variance S explains over the bias-only reconstruction, as a share of what the SAE explains).

    `stable_carry_most` (this seed): the stable set's share is above 1/2 and above the unstable set's, by both
    measures. Ablation harms need not add up, so shares of different sets need not sum to 1.
    """
    h = {name: float(v) for name, v in zip(FIXED_SETS, harm.tolist())}
    total = h["all"]
    if not (math.isfinite(total) and total > 0):
        return {"harm_all": total, "note": "ablating every latent does no harm: shares are undefined",
                "stable_carry_most": None}
    out: dict[str, Any] = {"harm_all": total}
    for group in ("stable", "unstable"):
        out[f"harm_share_{group}"] = h[group] / total
        out[f"alone_share_{group}"] = (total - h[f"all_but_{group}"]) / total
    out["stable_carry_most"] = bool(all(
        out[f"{m}_share_stable"] > 0.5 and out[f"{m}_share_stable"] > out[f"{m}_share_unstable"]
        for m in ("harm", "alone")))
    return out


# --------------------------------------------------------------------------------------------
# unstable spans, inside the orthogonal complement of the stable span

STABLE_SPAN_MAX_SHARE = 0.75
"""The stable span keeps at most this share of the d dimensions, so at least a quarter is left to test in."""


@dataclass(frozen=True)
class Complement:
    """An orthonormal basis of the orthogonal complement of the stable span, and how that span was chosen."""

    basis: Tensor
    """float64 [d, d_c], orthonormal columns."""
    stable_dim: int
    """k: dimensions of the stable span (d − d_c)."""
    stable_dim_wanted: int
    """The mean number of alive stable latents per seed, before the cap ⌊STABLE_SPAN_MAX_SHARE · d⌋."""
    stable_energy_outside: float
    """Share of the stable directions' energy (unit rows) left in the complement: 0 when the span holds them."""


def unit(rows: Tensor) -> Tensor:
    """Rows scaled to unit length (float64; zero rows stay zero)."""
    rows = rows.detach().double().cpu()
    return rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-30)


def stable_complement(stable_sets: Sequence[Tensor], d: int, *, max_share: float = STABLE_SPAN_MAX_SHARE
                      ) -> Complement:
    """The complement of the stable span: the top-k principal subspace of every seed's alive stable directions
    (unit rows, pooled over seeds: a stable feature's copies add up), k = the mean number of alive stable latents
    per seed (one dimension per stable feature), at most ⌊max_share · d⌋."""
    wanted = round(sum(s.shape[0] for s in stable_sets) / max(len(stable_sets), 1))
    k = min(wanted, int(max_share * d))
    rows = torch.cat([unit(s) for s in stable_sets]) if stable_sets else torch.zeros((0, d), dtype=torch.float64)
    if k == 0 or rows.shape[0] == 0:
        return Complement(torch.eye(d, dtype=torch.float64), 0, wanted, math.nan)
    evals, evecs = torch.linalg.eigh(rows.T @ rows)
    evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
    return Complement(evecs[:, k:].contiguous(), k, wanted, float(evals[k:].sum() / evals.sum()))


class DataDirections:
    """Random directions distributed like the activations, inside a complement: x ~ N(0, Σ) (Σ the activations'
    covariance), projected onto the complement and scaled to unit length there, in its coordinates. The
    data-matched null of the span tests (the unstable directions are projected and scaled the same way)."""

    def __init__(self, covariance: Tensor, complement: Tensor) -> None:
        basis = complement.double().cpu()
        evals, evecs = torch.linalg.eigh(basis.T @ covariance.double().cpu() @ basis)  # Σ seen in the complement
        self.map = evals.clamp_min(0).sqrt()[:, None] * evecs.T  # [d_c, d_c]: h ~ N(0, I) → h @ map ~ N(0, CᵀΣC)

    def sample(self, draws: int, count: int, generator: torch.Generator) -> Tensor:
        """[draws, count, d_c]: `count` such directions per draw."""
        h = torch.randn((draws, count, self.map.shape[0]), generator=generator, dtype=torch.float64)
        return unit(h @ self.map)


def top_bases(rows: Tensor, q: int) -> Tensor:
    """Top-q principal subspaces `[..., c, q]` of row sets `[..., m, c]` (rows as given, not re-normalised)."""
    _, vecs = torch.linalg.eigh(rows.transpose(-1, -2) @ rows)
    return vecs[..., -q:]


def participation_ratio(rows: Tensor) -> Tensor:
    """(Σλ)² / Σλ² of the squared singular values λ of row sets `[..., m, c]`: r for r equal directions."""
    lam = torch.linalg.eigvalsh(rows.transpose(-1, -2) @ rows).clamp_min(0)
    return lam.sum(-1) ** 2 / (lam**2).sum(-1).clamp_min(1e-300)


def span_overlap_test(
    sets: Sequence[Tensor], base: int, q: int, null: DataDirections, n_draws: int, generator: torch.Generator,
    *, chunk: int = 20,
) -> dict[str, Any]:
    """Seed `base`'s unstable span, inside the complement, is closer to the other seeds' unstable spans than
    data-matched random directions of the same count are.

    `sets`: each seed's alive unstable directions (unit rows) projected onto the complement, `[n_s, d_c]`.
    Statistic: mean over the other seeds of ‖Q_baseᵀ Q_o‖²_F / q (mean cos² of the principal angles between
    top-q subspaces). Control: the base's set replaced by `n_draws` draws of `null` directions of its size.
    """
    others = [top_bases(s, q) for i, s in enumerate(sets) if i != base]

    def score(bases: Tensor) -> Tensor:  # [R, c, q] → [R]
        return torch.stack([((bases.transpose(-1, -2) @ o) ** 2).sum((-1, -2)) / q for o in others]).mean(0)

    obs = float(score(top_bases(sets[base], q)[None])[0])
    ctrl = [score(top_bases(null.sample(min(chunk, n_draws - start), sets[base].shape[0], generator), q))
            for start in range(0, n_draws, chunk)]
    controls = torch.cat(ctrl) if ctrl else torch.zeros(0, dtype=torch.float64)
    return {
        "p": empirical_p(obs, controls),
        "mean_cos2_unstable": obs,
        "control_mean_cos2": {"mean": float(controls.mean()), "std": float(controls.std()) if n_draws > 1 else math.nan},
        "effect": obs - float(controls.mean()),
        "draws": n_draws,
        "p_min": best_p(n_draws),
    }


def low_rank_test(sets: Sequence[Tensor], null: DataDirections, n_draws: int, generator: torch.Generator,
                  *, chunk: int = 10) -> dict[str, Any]:
    """The union of every seed's unstable directions (in the complement) has a lower effective rank than the
    union of data-matched random directions of the same counts (every seed's set replaced): low rank across seeds.

    Statistic: participation ratio of the pooled rows; one-sided p = P(control ≤ observed).
    """
    obs = float(participation_ratio(torch.cat(list(sets))[None])[0])
    ctrl = []
    for start in range(0, n_draws, chunk):
        r = min(chunk, n_draws - start)
        ctrl.append(participation_ratio(torch.cat([null.sample(r, s.shape[0], generator) for s in sets], dim=1)))
    controls = torch.cat(ctrl) if ctrl else torch.zeros(0, dtype=torch.float64)
    return {
        "p": empirical_p(obs, controls, greater=False),
        "participation_ratio_unstable": obs,
        "control_participation_ratio": {"mean": float(controls.mean()),
                                        "std": float(controls.std()) if n_draws > 1 else math.nan},
        "effect": obs / float(controls.mean()) if controls.numel() else math.nan,
        "n_directions": int(sum(s.shape[0] for s in sets)),
        "draws": n_draws,
        "p_min": best_p(n_draws),
    }


# --------------------------------------------------------------------------------------------
# combination across seeds and Holm across claims


@dataclass
class ClaimSpec:
    """What a claim's verdict records besides its per-seed numbers."""

    test: str
    statistic: str
    effect_size: str
    control: str
    extra: dict[str, Any] = field(default_factory=dict)


COMBINATION = ("holds in every seed: the per-seed tests are combined by the intersection-union rule, "
               "combined p = max over seeds of the per-seed p; Holm then adjusts across the claims")


def combine_seeds(spec: ClaimSpec, seeds: Sequence[int], per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One claim's verdict across seeds (before Holm): combined p, effect size with a 95% t-interval over seeds."""
    rows = [{"seed": int(s), **r} for s, r in zip(seeds, per_seed)]
    out: dict[str, Any] = {
        "test": spec.test, "statistic": spec.statistic, "control": spec.control, "combination": COMBINATION,
        **spec.extra, "per_seed": rows,
    }
    ps = [r.get("p", math.nan) for r in rows]
    effects = torch.tensor([r.get("effect", math.nan) for r in rows], dtype=torch.float64)
    out["n"] = {"seeds": len(rows), "per_seed": [{k: v for k, v in r.items() if k.startswith("n_")} for r in rows]}
    out["effect_size"] = {"name": spec.effect_size, **_mean_ci(effects), "per_seed": effects.tolist()}
    missing = [r for r in rows if not math.isfinite(r.get("p", math.nan))]
    if len(rows) < 2:
        out.update(p_value=math.nan, holds=None, reason="needs at least two seeds")
    elif missing:
        out.update(p_value=math.nan, holds=None,
                   reason=f"undetermined in seed {missing[0]['seed']}: {missing[0].get('note', 'no test')}")
    else:
        out["p_value"] = max(ps)
        out["p_min"] = max(r.get("p_min", 0.0) for r in rows)  # the best the combined p (a max) can reach
    return out


def _mean_ci(x: Tensor) -> dict[str, Any]:
    x = x[torch.isfinite(x)]
    if x.numel() == 0:
        return {"mean": math.nan, "ci95": [math.nan, math.nan]}
    mean = float(x.mean())
    if x.numel() < 2:
        return {"mean": mean, "ci95": [math.nan, math.nan]}
    from scipy.stats import t

    half = float(t.ppf(0.975, x.numel() - 1)) * float(x.std()) / math.sqrt(x.numel())
    return {"mean": mean, "ci95": [mean - half, mean + half]}


def holm(claims: dict[str, dict[str, Any]], *, alpha: float = 0.05) -> dict[str, dict[str, Any]]:
    """Holm step-down adjustment across the claims with a p-value; sets `p_holm` and `holds` on each."""
    tested = {name: c["p_value"] for name, c in claims.items()
              if c.get("holds", True) is not None and math.isfinite(c.get("p_value", math.nan))}
    for name, adjusted in holm_adjust(tested).items():
        assert adjusted is not None  # every p in `tested` is finite
        claims[name]["p_holm"] = adjusted
        claims[name]["holds"] = bool(adjusted <= alpha)
        claims[name]["alpha"] = alpha
        claims[name]["holm_family"] = len(tested)
    for c in claims.values():
        c.setdefault("p_holm", math.nan)
        c.setdefault("holds", None)
        c.setdefault("alpha", alpha)
    return claims


def holm_over_decidable(claims: dict[str, dict[str, Any]], *, alpha: float = 0.05) -> list[str]:
    """Judge a configuration's claims together: Holm (`holm`) over the claims that can reach Holm's level
    (`decidable_family`; the others undetermined with the reason), every claim recording the family it was judged
    in (`holm_family`, `holm_members`; `p_holm` NaN and `holds` null outside it). Returns the family."""
    family = decidable_family(claims, alpha=alpha)
    holm({name: claims[name] for name in family}, alpha=alpha)
    for claim in claims.values():
        claim.setdefault("p_holm", math.nan)
        claim.setdefault("holds", None)
        claim.setdefault("alpha", alpha)
        claim["holm_family"] = len(family)
        claim["holm_members"] = family
    return family


_SLACK = 1e-9
"""Relative slack of p ≤ α/m (1/100 must pass 0.05/5 whatever the rounding)."""


def decidable_family(claims: dict[str, dict[str, Any]], *, alpha: float = 0.05, min_key: str = "p_min",
                     state_key: str = "holds", reason_key: str = "reason") -> list[str]:
    """The Holm family: the largest set of tested claims each of whose best reachable p is ≤ α/m, m its size.

    A claim enters Holm's step-down first at level α/m when its p is the smallest; a claim whose best reachable
    p (`p_min`) is above α/m could pass only if every other claim passed first, so with these draws its answer
    is not decided by its own data. Such claims are set undetermined (`null`, with the reason) and leave the
    family; the family is the m claims with the smallest `p_min` for the largest m with p_min_(m) ≤ α/m (claims
    tied at the cut all stay out). The family depends on the draws and group sizes only, never on the observed
    p-values. Returns the family's names (Holm is then applied to them alone).
    """
    tested = sorted((c.get(min_key, 0.0), name) for name, c in claims.items()
                    if c.get(state_key, True) is not None and math.isfinite(c.get("p_value", math.nan)))
    m = len(tested)
    while m > 0 and not (tested[m - 1][0] <= alpha / m * (1 + _SLACK)
                         and (m == len(tested) or tested[m][0] > tested[m - 1][0])):
        m -= 1
    for p_min, name in tested[m:]:
        size = sum(1 for other, _ in tested if other <= p_min)  # it, and every claim that can reach as small a p
        draws = sorted({r["draws"] for r in claims[name].get("per_seed", []) if isinstance(r.get("draws"), int)})
        how = f" ({', '.join(map(str, draws))} control draws)" if draws else ""
        claims[name].update({state_key: None, reason_key: (
            f"the smallest p its draws can reach is {p_min:.3g}{how}, above α/m = {alpha:g}/{size} = "
            f"{alpha / size:.3g}, the level Holm's first step needs in a family of the {size} claims that can reach "
            "as small a p (raise --n-random / --n-random-lm)")})
    return [name for _, name in tested[:m]]


def run_level_holm(families: dict[str, dict[str, dict[str, Any]]], *, alpha: float = 0.05) -> dict[str, Any]:
    """Holm across every configuration of a run: one family of all the claims decided in their configuration
    (`configuration: claim`), reachability checked again at the larger m (`decidable_family`). Each entry has
    p_value, p_holm and holds (null with the reason when it cannot reach α/m in the run's family)."""
    flat = {f"{cfg}: {name}": {"p_value": c["p_value"], "p_min": c.get("p_min", 0.0), "per_seed": c.get("per_seed", [])}
            for cfg, claims in families.items() for name, c in claims.items()
            if c.get("holds") is not None and math.isfinite(c.get("p_value", math.nan))}
    members = decidable_family(flat, alpha=alpha)
    adjusted = {key: float(p) for key, p in holm_adjust({k: flat[k]["p_value"] for k in members}).items()
                if p is not None}
    entries = {}
    for key, c in flat.items():
        entries[key] = ({"p_value": c["p_value"], "p_holm": adjusted[key], "holds": bool(adjusted[key] <= alpha)}
                        if key in adjusted else {"p_value": c["p_value"], "p_holm": math.nan, "holds": None,
                                                 "reason": c["reason"]})
    return {"alpha": alpha, "family": len(members), "members": members, "claims": entries,
            "rule": "Holm over every claim decided in its configuration, all configurations of the run together"}
