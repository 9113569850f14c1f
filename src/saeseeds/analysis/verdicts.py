"""Verdicts on the claims of the seed-dependence study, with honest statistics (docs/definitions.md, "Verdicts").

Every claim is tested **per seed** (each seed in turn is the base; latents are never pooled across seeds), by an
empirical p-value against random control draws, `p = (1 + #{control ≥ observed}) / (1 + draws)`:

- controls are **matched on firing frequency**: random latent sets drawn stratified by frequency bins, so a
  control set has, bin by bin, as many latents as the tested set (a stratified permutation of the labels);
- **dead latents** (never firing on the analysis tokens) are excluded from every test and counted per seed;
- rank statistics are compared **within frequency strata** (a van Elteren-weighted rank-sum, with a stratified
  permutation p-value);
- a claim holds across seeds when it holds **in every seed** (intersection-union test: combined p = max over
  seeds), then **Holm** corrects across the claims; effect sizes get a t-interval over seeds.

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
    """
    from scipy.stats import rankdata

    values = values.double().cpu()
    finite = torch.isfinite(values)
    high, low = high.bool().cpu() & finite & (strata >= 0), low.bool().cpu() & finite & (strata >= 0)
    stat_obs, stat_perm = 0.0, torch.zeros(n_draws, dtype=torch.float64)
    num, den = 0.0, 0.0
    used = 0
    for k in strata[high | low].unique().tolist():
        members = torch.nonzero((strata == k) & (high | low)).flatten()
        labels = high[members].double()
        n_h, n_k = int(labels.sum()), members.numel()
        n_l = n_k - n_h
        if n_h == 0 or n_l == 0:
            continue
        used += 1
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
    }


# --------------------------------------------------------------------------------------------
# per-seed tests


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

    `metric(masks [R, n]) -> [R]` evaluates ablated sets (row 0 of the call is the empty set). Harm = the change
    of the metric in the harmful direction. p_stable: P(control harm ≥ stable harm); p_unstable: P(control
    harm ≤ unstable harm); the seed's p is their maximum (both parts must hold: intersection-union).
    """
    n = strata.numel()
    stable, unstable = stable.bool().cpu() & (strata >= 0), unstable.bool().cpu() & (strata >= 0)
    if not stable.any() or not unstable.any():
        return {"p": math.nan, "note": "the seed has no alive stable or no alive unstable latent"}
    draws_s = matched_draws(stable, strata, n_draws, generator)
    draws_u = matched_draws(unstable, strata, n_draws, generator)
    masks = torch.cat([torch.zeros((1, n), dtype=torch.bool), stable[None], unstable[None], draws_s, draws_u])
    vals = metric(masks).double()
    sign = 1.0 if higher_is_worse else -1.0
    harm = sign * (vals - vals[0])
    obs_s, obs_u = float(harm[1]), float(harm[2])
    ctrl_s, ctrl_u = harm[3 : 3 + n_draws], harm[3 + n_draws :]
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
    }


def principal_bases(rows: Tensor, q: int) -> Tensor:
    """Top-q principal subspaces `[..., d, q]` of unit-normalised row sets `[..., m, d]` (float32 eigh, float64 out)."""
    u = rows.float() / rows.float().norm(dim=-1, keepdim=True).clamp_min(1e-30)
    gram = u.transpose(-1, -2) @ u
    _, vecs = torch.linalg.eigh(gram)
    return vecs[..., -q:].double()


def spans_test(
    decoders: Sequence[Tensor],
    unstable: Sequence[Tensor],
    strata: Sequence[Tensor],
    base: int,
    q: int,
    n_draws: int,
    generator: torch.Generator,
    *,
    chunk: int = 50,
) -> dict[str, Any]:
    """Seed `base`'s unstable span is closer to the other seeds' unstable spans than frequency-matched random sets.

    Statistic: mean over the other seeds of the mean cos² of the principal angles between top-q subspaces,
    ‖Q_aᵀ Q_b‖²_F / q. Control: the base's unstable set replaced by matched random sets of the base's latents.
    """
    dec = decoders[base].double()
    target = unstable[base].bool() & (strata[base] >= 0)
    if int(target.sum()) < q or q == 0:
        return {"p": math.nan, "note": f"fewer than q = {q} alive unstable latents in this seed"}
    others = [principal_bases(d.double()[u.bool() & (s >= 0)], q)
              for i, (d, u, s) in enumerate(zip(decoders, unstable, strata)) if i != base]

    def score(bases: Tensor) -> Tensor:  # [R, d, q] → [R]
        return torch.stack([((bases.transpose(-1, -2) @ o) ** 2).sum((-1, -2)) / q for o in others]).mean(0)

    obs = float(score(principal_bases(dec[target], q)[None])[0])
    draws = matched_draws(target, strata[base], n_draws, generator)
    ctrl = []
    for start in range(0, n_draws, chunk):
        block = draws[start : start + chunk]
        idx = torch.stack([torch.nonzero(m).flatten() for m in block])
        ctrl.append(score(principal_bases(dec[idx], q)))
    controls = torch.cat(ctrl) if ctrl else torch.zeros(0, dtype=torch.float64)
    return {
        "p": empirical_p(obs, controls),
        "mean_cos2_unstable": obs,
        "control_mean_cos2": {"mean": float(controls.mean()), "std": float(controls.std()) if n_draws > 1 else math.nan},
        "analytic_random_q_over_d": q / dec.shape[1],
        "effect": obs - float(controls.mean()),
        "n_unstable": int(target.sum()),
        "dim": q,
        "draws": n_draws,
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
    tested = sorted((c["p_value"], name) for name, c in claims.items()
                    if c.get("holds", True) is not None and math.isfinite(c.get("p_value", math.nan)))
    m = len(tested)
    running = 0.0
    for i, (p, name) in enumerate(tested):
        running = max(running, min(1.0, (m - i) * p))
        claims[name]["p_holm"] = running
        claims[name]["holds"] = bool(running <= alpha)
        claims[name]["alpha"] = alpha
        claims[name]["holm_family"] = m
    for c in claims.values():
        c.setdefault("p_holm", math.nan)
        c.setdefault("holds", None)
        c.setdefault("alpha", alpha)
    return claims
