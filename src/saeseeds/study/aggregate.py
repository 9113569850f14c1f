"""One table row per (seed set, milestone) from a stored `CrossSeedResult` and the run's evaluation metrics:
sharing spread over ordered seed pairs, decoder-only sharing, MMCS, stability quantiles under both stability
definitions, the found-only-in-base curve, and FVU / L0 / dead fraction over seeds (docs/definitions.md). Dead
latents (never fired on the held-out rows) count as unstable and as found only in the base in the all-latent
columns; the `*_alive` columns and `dead_latents_mean` report them apart."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from saeseeds.align.cross_seed import ORDERINGS, CrossSeedResult, only_in_base_curve, pw_mcc
from saeseeds.align.pair import Alignment
from saeseeds.align.sharing import STABILITY_KINDS

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
"""Stability quantiles reported per row (over every latent of every seed)."""
METRICS = ("fvu", "l0", "dead_fraction")
"""Evaluation metrics averaged over seeds (held-out set, at the milestone step)."""
FREQ_EDGES = np.linspace(-5.0, 0.0, 11)
"""log10 firing-frequency bin edges of the similarity-vs-frequency curve (below 1e-5, dead included, is bin 0)."""


def decoder_shared(al: Alignment) -> np.ndarray:
    """Latents of a whose decoder partner (Hungarian on decoders alone) has cosine above τ."""
    cos = np.abs(al.dec_cos) if al.absolute else al.dec_cos
    return np.nan_to_num(cos, nan=-np.inf) > al.threshold


def spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (NaN, NaN when empty)."""
    arr = np.asarray(values, dtype=np.float64)
    return (float(arr.mean()), float(arr.std())) if arr.size else (float("nan"), float("nan"))


def sharing_stats(result: CrossSeedResult) -> dict[str, float]:
    """Shared fraction, decoder-only shared fraction, MMCS and PW-MCC: mean ± sd over all ordered seed pairs."""
    pairs = [result.alignments[key] for key in sorted(result.alignments)]
    row: dict[str, float] = {"n_seeds": result.num_seeds, "n_pairs": len(pairs)}
    for name, values in (
        ("shared_fraction", [al.shared_fraction for al in pairs]),
        ("decoder_shared_fraction", [float(decoder_shared(al).mean()) for al in pairs]),
        ("mmcs", [al.mmcs for al in pairs]),
        ("pw_mcc", [pw_mcc(al) for al in pairs]),
    ):
        row[f"{name}_mean"], row[f"{name}_sd"] = spread(values)
    fractions = [al.shared_fraction for al in pairs]
    row["shared_fraction_min"] = float(min(fractions)) if fractions else float("nan")
    row["shared_fraction_max"] = float(max(fractions)) if fractions else float("nan")
    return row


def stability_stats(result: CrossSeedResult) -> dict[str, float]:
    """Quantiles and mean of per-latent stability (all latents of all seeds) under `shared` and `reappears`,
    and the stable / unstable fractions under the rule's own estimator and cut."""
    row: dict[str, float] = {}
    for kind in STABILITY_KINDS:
        values = np.concatenate([result.stability(i, kind) for i in range(result.num_seeds)])
        row[f"stability_{kind}_mean"] = float(values.mean())
        for q in QUANTILES:
            row[f"stability_{kind}_q{round(q * 100):02d}"] = float(np.quantile(values, q))
    summary = result.stability_summary()
    row["stable_fraction"] = summary["stable_fraction"]
    row["unstable_fraction"] = summary["unstable_fraction"]
    row.update(dead_stats(summary, result.num_seeds))
    return row


DEAD_COLUMNS = ("dead_latents_mean", "unstable_dead_fraction", "stable_fraction_alive", "unstable_fraction_alive")
"""Dead latents apart (NaN where the result holds no firing frequencies, e.g. at a milestone before the end)."""


def dead_stats(summary: Mapping[str, Any], num_seeds: int) -> dict[str, float]:
    """From `stability_summary()`: dead latents per seed, the share of all latents that are dead (and so counted
    in `unstable_fraction`), and the stable / unstable shares of the alive latents."""
    def number(value: Any) -> float:
        return float("nan") if value is None else float(value)

    dead = summary.get("dead")
    return {
        "dead_latents_mean": number(None if dead is None else dead / max(num_seeds, 1)),
        "unstable_dead_fraction": number(None if dead is None else summary["unstable_dead"] / summary["latents"]),
        "stable_fraction_alive": number(summary.get("stable_fraction_alive")),
        "unstable_fraction_alive": number(summary.get("unstable_fraction_alive")),
    }


def only_in_base_fractions(result: CrossSeedResult) -> tuple[list[float], list[float]]:
    """The found-only-in-base curve (M = 0 .. S-1 other seeds) as fractions of the base's latents."""
    mean, std = result.only_in_base()
    n = float(np.mean(result.num_latents))
    return (mean / n).tolist(), (std / n).tolist()


def only_in_base_alive_fractions(result: CrossSeedResult) -> list[float]:
    """The found-only-in-base curve over the base's alive latents only (dead ones, found nowhere by construction,
    left out), as fractions of them, mean over bases; NaN for every M when the firing frequencies are unknown."""
    dead = result.dead()
    curves = []
    for i in range(result.num_seeds if dead is not None else 0):
        alive = ~dead[i]  # type: ignore[index]
        if alive.any():
            mean, _ = only_in_base_curve([f[alive] for f in result.found_with(i)], orderings=ORDERINGS, seed=i)
            curves.append(mean / alive.sum())
    if not curves:
        return [float("nan")] * result.num_seeds
    width = min(len(c) for c in curves)
    return np.mean(np.stack([c[:width] for c in curves]), axis=0).tolist()


def metric_stats(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """FVU, L0 and dead fraction: mean ± sd over the seeds' evaluation records (NaN when none)."""
    row: dict[str, float] = {}
    for name in METRICS:
        values = [float(r[name]) for r in records if r.get(name) is not None]
        row[f"{name}_mean"], row[f"{name}_sd"] = spread(values)
    coefs = [float(r["penalty_coefficient"]) for r in records if r.get("penalty_coefficient") is not None]
    row["penalty_coefficient_mean"] = spread(coefs)[0]
    return row


def similarity_by_frequency(result: CrossSeedResult) -> dict[str, Any] | None:
    """Matched decoder cosine vs log10 firing frequency, averaged over every ordered seed pair (Figure 3 of
    Paulo & Belrose over all seeds): per bin, the mean over pairs of each pair's bin mean, and their sd."""
    if not result.frequencies or any(f is None for f in result.frequencies):
        return None
    per_pair = []
    for (i, _j), al in sorted(result.alignments.items()):
        freq = np.asarray(result.frequencies[i], dtype=np.float64)
        log = np.log10(np.maximum(freq, 1e-12))
        bins = np.clip(np.digitize(log, FREQ_EDGES[1:-1]), 0, len(FREQ_EDGES) - 2)
        cos = np.nan_to_num(al.dec_cos, nan=0.0)
        per_pair.append([float(cos[bins == b].mean()) if (bins == b).any() else np.nan
                         for b in range(len(FREQ_EDGES) - 1)])
    table = np.asarray(per_pair)
    counts = np.sum(~np.isnan(table), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a bin empty in every pair stays NaN
        mean, sd = np.nanmean(table, axis=0), np.nanstd(table, axis=0)
    centres = (FREQ_EDGES[:-1] + FREQ_EDGES[1:]) / 2
    return {"log10_frequency": centres.tolist(), "edges": FREQ_EDGES.tolist(), "mean": mean.tolist(),
            "sd": sd.tolist(), "pairs": counts.tolist()}


def study_row(result: CrossSeedResult, point: Mapping[str, Any], milestone: Mapping[str, Any],
              records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One flat row: the grid point, the milestone, sharing, stability, found-only-in-base, metrics."""
    row: dict[str, Any] = {
        "set": result.label,
        "hookpoint": result.hookpoint,
        "sae_name": result.sae_name,
        **{k: point.get(k) for k in ("architecture", "k", "target_l0")},
        "num_latents": int(np.mean(result.num_latents)),
        "milestone": float(milestone["fraction"]),
        "step": int(milestone["step"]),
        "tokens": int(milestone["tokens"]),
    }
    row.update(sharing_stats(result))
    row.update(stability_stats(result))
    curve, _ = only_in_base_fractions(result)
    row.update({f"only_in_base_m{m}": v for m, v in enumerate(curve)})
    row.update({f"only_in_base_alive_m{m}": v for m, v in enumerate(only_in_base_alive_fractions(result))})
    row.update(metric_stats(records))
    return row
