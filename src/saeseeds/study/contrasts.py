"""Study-level claims judged by a test over seeds and reruns, not read by eye off ± of a few seed pairs.

The claims (docs/findings.md, "The study"): (a) narrower SAEs share more, (b) a smaller k shares more, (c) longer
training shares more, (d) ReLU shares more than TopK at matched L0. Each is a set of *steps* (adjacent sizes,
adjacent k, adjacent milestones of every set, each ReLU set against the TopK set of its size and k), and a step's
outcome is the shared-fraction difference Δ (the side the claim says shares more, minus the other).

The unit of replication is a **disjoint seed pair of one rerun**: a rerun is the study trained again on its own
seeds and data order, and within it seeds (0, 1), (2, 3), … share no seed, so the units are independent. (Every
other pair of a rerun shares a seed with these; those pairs enter the descriptive spreads only.) A rerun that
differs only in its thread count has the same seeds and data: it measures numerical spread and is not a unit.

Per step: the exact sign-flip test of mean Δ > 0 over the units (`saeseeds.signflip`). A claim holds when every
step does (intersection-union: its p is the largest step p), with Holm's correction over the claims the study can
test. A claim is undetermined (`null`, with the reason) when the study has none of its steps, or when its units
are too few for any outcome to pass Holm's first level α/m (n units give p ≥ 2^-n).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from saeseeds.align.cross_seed import CrossSeedResult
from saeseeds.signflip import holm_adjust, sign_flip_test, units_needed

Key = tuple[str, str, int]
"""A seed set at a milestone: (hookpoint, SAE name, step)."""
Unit = tuple[str, int, int]
"""One independent replicate: (rerun name, first seed index, second seed index) of a disjoint pair."""

CLAIMS = {
    "narrower_shares_more": "(a) narrower SAEs share more (adjacent sizes, TopK, end of training)",
    "smaller_k_shares_more": "(b) a smaller k shares more (adjacent k, TopK, end of training)",
    "longer_training_shares_more": "(c) longer training shares more (adjacent milestones, every set)",
    "relu_shares_more_at_matched_l0": "(d) ReLU shares more than TopK at matched L0 (same size, end of training)",
}


@dataclass(frozen=True)
class Step:
    """One comparison inside a claim: `more` is said to share more than `less`."""

    more: Key
    less: Key

    def label(self) -> str:
        """`<set>@<step> > <set>@<step>`, short enough for a table."""
        return f"{self.more[1]}@{self.more[2]} > {self.less[1]}@{self.less[2]}"


def disjoint_pairs(num_seeds: int) -> list[tuple[int, int]]:
    """Seed pairs that share no seed: (0, 1), (2, 3), …; an odd last seed is left out."""
    return [(i, i + 1) for i in range(0, num_seeds - 1, 2)]


def unit_values(rerun: str, results: Sequence[CrossSeedResult], step: int) -> dict[Key, dict[Unit, float]]:
    """Each set's shared fraction for every disjoint seed pair of one rerun at one milestone step (the mean of
    the pair's two directions, equal for equal sizes)."""
    out: dict[Key, dict[Unit, float]] = {}
    for result in results:
        key = (result.hookpoint, result.sae_name, int(step))
        out[key] = {(rerun, i, j): 0.5 * (result.alignments[(i, j)].shared_fraction
                                          + result.alignments[(j, i)].shared_fraction)
                    for i, j in disjoint_pairs(result.num_seeds)}
    return out


def _number(value: Any) -> float | None:
    """A grid value (k, target_l0) as a number, None when absent (None or NaN)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def claim_steps(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Step]]:
    """The steps of each claim that the study's table rows (one rerun's) allow; an empty list when none."""
    final = max(int(r["step"]) for r in rows)
    key = {id(r): (str(r["hookpoint"]), str(r["sae_name"]), int(r["step"])) for r in rows}
    end = [r for r in rows if int(r["step"]) == final]
    topk = [r for r in end if _number(r.get("k")) is not None and _number(r.get("target_l0")) is None]
    steps: dict[str, list[Step]] = {name: [] for name in CLAIMS}

    def adjacent(claim: str, group_by: Sequence[str], axis: str) -> None:
        groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
        for r in topk:
            groups.setdefault(tuple(r.get(g) for g in (*group_by, "hookpoint")), []).append(r)
        for members in groups.values():
            ordered = sorted(members, key=lambda r: float(r[axis]))
            steps[claim] += [Step(key[id(a)], key[id(b)]) for a, b in zip(ordered, ordered[1:])
                             if float(a[axis]) < float(b[axis])]

    adjacent("narrower_shares_more", ("architecture", "k"), "num_latents")
    adjacent("smaller_k_shares_more", ("architecture", "num_latents"), "k")
    by_set: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        by_set.setdefault((str(r["hookpoint"]), str(r["sae_name"])), []).append(r)
    for members in by_set.values():
        ordered = sorted(members, key=lambda r: int(r["step"]))
        steps["longer_training_shares_more"] += [Step(key[id(b)], key[id(a)]) for a, b in zip(ordered, ordered[1:])]
    for r in end:
        target = _number(r.get("target_l0"))
        if target is None:
            continue
        for t in topk:
            if (t["hookpoint"], int(t["num_latents"])) == (r["hookpoint"], int(r["num_latents"])) and \
                    _number(t.get("k")) == target:
                steps["relu_shares_more_at_matched_l0"].append(Step(key[id(r)], key[id(t)]))
    return steps


def judge_claims(values: Mapping[Key, Mapping[Unit, float]], steps: Mapping[str, Sequence[Step]], *,
                 alpha: float = 0.05) -> dict[str, dict[str, Any]]:
    """Every claim's verdict: per step the sign-flip test over the units both sides have, then every step must
    hold (p = max), Holm over the claims the units can decide; `holds` null with `reason` otherwise."""
    tested = {name: [_step_test(values, s) for s in claim] for name, claim in steps.items()}
    family = [name for name, rows in tested.items() if rows and all(r["n"] for r in rows)]
    level = alpha / max(len(family), 1)
    out: dict[str, dict[str, Any]] = {}
    for name, rows in tested.items():
        verdict: dict[str, Any] = {"claim": CLAIMS[name], "alpha": alpha, "steps": rows, "holm_family": len(family),
                                   "unit": "disjoint seed pair of one rerun"}
        if not rows:
            verdict.update(holds=None, p_value=None, reason="the study has no configurations for this claim")
        elif name not in family:
            verdict.update(holds=None, p_value=None, reason="a step has no unit with both sides")
        else:
            verdict["p_value"] = max(r["p_value"] for r in rows)
            verdict["min_p"] = max(r["min_p"] for r in rows)
            worst = min(rows, key=lambda r: r["mean"])
            verdict["effect"] = {"name": "smallest mean Δ shared fraction over the steps", "step": worst["step"],
                                 "mean": worst["mean"], "ci95": worst["ci95"], "positive": worst["positive"]}
            if verdict["min_p"] > level:
                need = units_needed(level)
                verdict.update(holds=None, reason=f"{min(r['n'] for r in rows)} units give at best "
                                                  f"p = {verdict['min_p']:.3g} > α/m = {level:.3g} (Holm over "
                                                  f"{len(family)} claims); ≥ {need} units needed (more reruns or "
                                                  "seeds: units are disjoint seed pairs)")
        out[name] = verdict
    decided = {n: v["p_value"] for n, v in out.items() if v.get("p_value") is not None and "reason" not in v}
    for name, p in holm_adjust(decided).items():
        out[name].update(p_holm=p, holds=bool(p is not None and p <= alpha), holm_family=len(decided))
    return out


def _step_test(values: Mapping[Key, Mapping[Unit, float]], step: Step) -> dict[str, Any]:
    """One step's units, Δ and sign-flip test (n = 0 when no unit has both sides)."""
    more, less = values.get(step.more, {}), values.get(step.less, {})
    units = sorted(set(more) & set(less))
    row: dict[str, Any] = {"step": step.label(), "more": list(step.more), "less": list(step.less), "n": len(units)}
    if units:
        test = sign_flip_test([more[u] - less[u] for u in units])
        row.update(test.to_dict())
    return row


def spread_rows(pair_values: Mapping[str, Mapping[Key, Sequence[float]]], *, reruns: Sequence[str],
                numeric: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """Per set and step: the shared fraction's spread over seed pairs (within a rerun), over reruns (seeds and
    data order) and, with `numeric` = (rerun, same rerun at another thread count), from numerics alone.

    `pair_values[rerun][key]` lists the shared fraction of every ordered seed pair of that rerun."""
    keys = sorted({k for r in reruns for k in pair_values.get(r, {})})
    out = []
    for key in keys:
        runs = [np.asarray(pair_values[r][key], dtype=np.float64) for r in reruns if key in pair_values.get(r, {})]
        means = np.array([v.mean() for v in runs])
        row: dict[str, Any] = {
            "hookpoint": key[0], "set": key[1], "step": key[2], "reruns": len(runs),
            "mean": float(means.mean()),
            "pair_sd": float(np.mean([v.std() for v in runs])),
            "rerun_sd": float(means.std(ddof=1)) if len(runs) > 1 else math.nan,
            "rerun_range": [float(means.min()), float(means.max())],
        }
        if numeric is not None and key in pair_values.get(numeric[0], {}) and key in pair_values.get(numeric[1], {}):
            a = np.asarray(pair_values[numeric[0]][key], dtype=np.float64)
            b = np.asarray(pair_values[numeric[1]][key], dtype=np.float64)
            row["thread_delta"] = float(b.mean() - a.mean())
            row["thread_pair_abs_delta"] = float(np.mean(np.abs(b - a))) if a.shape == b.shape else math.nan
        out.append(row)
    return out
