"""The pooling experiment (`run_pool`): from the seeds of one configuration of a run and their cross-seed
result, cluster the latents (one per seed at most), build the pooled SAE from the clusters with the most support,
fit it on the run's stream, and evaluate it against single seeds on the run's held-out rows, by the stability of
pooled SAEs built from disjoint halves of the seeds, and against fresh single seeds trained for the same total
compute. docs/pooling.md describes the procedure; `saeseeds.api.pooling` finds the source and writes the result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saeseeds.align.cross_seed import CrossSeedResult, weights_digest
from saeseeds.align.pair import align_weights, sae_weights
from saeseeds.data.types import as_mapping
from saeseeds.device import resolve_device
from saeseeds.errors import CheckpointError, ConfigError, DataError
from saeseeds.pooling.build import (
    choose_clusters,
    cluster_directions,
    cluster_scores,
    latent_contributions,
    pooled_sae,
)
from saeseeds.pooling.clusters import Clusters, cluster_latents
from saeseeds.pooling.evaluate import (
    RECOVERY_THRESHOLD,
    cross_pair_stats,
    decoder_rows,
    feature_kinds,
    half_splits,
    heldout,
    mean_std,
    reappears_in,
    recovery_counts,
)
from saeseeds.pooling.fit import fit_sae, train_single
from saeseeds.pooling.options import PoolOptions
from saeseeds.pooling.stream import RunStream
from saeseeds.pooling.verdict import judge
from saeseeds.run_layout import CHECKPOINT_CONFIG
from saeseeds.sae import load_sae
from saeseeds.sae.checkpoint import fold_input_scale, read_checkpoint_cfg, unfold_input_scale
from saeseeds.sae.model import SparseAutoencoder
from saeseeds.training.run_dir import Run

log = logging.getLogger(__name__)
BASELINE_SEED0 = 10_000
"""Seeds of the longer-trained baseline: 10000, 10001, ... (never a run seed in practice; checked)."""


@dataclass
class Trained:
    """The SAEs in the trainer's space, saved like the trainer saves them (input scale folded in by save_sae)."""

    pooled: SparseAutoencoder
    splits: list[tuple[SparseAutoencoder, SparseAutoencoder]]
    baseline: list[SparseAutoencoder]
    scale: float


@dataclass
class PoolResult:
    """What `run_pool` built and measured: the pooled SAE (raw inputs), its clusters and the pool.json record."""

    sae: SparseAutoencoder
    clusters: Clusters
    chosen: np.ndarray
    record: dict[str, Any]
    out: Path | None = None
    split_saes: list[tuple[SparseAutoencoder, SparseAutoencoder]] = field(default_factory=list)
    baseline_saes: list[SparseAutoencoder] = field(default_factory=list)
    scores: np.ndarray | None = field(default=None, repr=False)
    """Every cluster's contribution score (clusters.npz `contribution`)."""
    trained: Trained | None = field(default=None, repr=False)


def stream_limit(num_seeds: int, run_tokens: int) -> int:
    """The most tokens pooling reads from the run's stream for one fit or selection: what all the seeds of the
    configuration were trained on together (a fit beyond it costs more than training them again), and at least the
    default selection (so a tiny run keeps its defaults)."""
    return max(num_seeds * run_tokens, PoolOptions.select_tokens)


def check_stream_budget(opts: PoolOptions, num_seeds: int, run_tokens: int, label: str) -> None:
    """ConfigError naming the flag when --fit-tokens or --select-tokens asks more of the stream than `stream_limit`."""
    limit = stream_limit(num_seeds, run_tokens)
    for name, value in (("fit_tokens", opts.fit_tokens), ("select_tokens", opts.select_tokens)):
        if value > limit:
            raise ConfigError(
                f"--{name.replace('_', '-')} ({name}) = {value:,} is more than pooling reads of the run's stream; "
                f"allowed: at most {limit:,} (the larger of {PoolOptions.select_tokens:,} and the {num_seeds} seeds of "
                f"{label} x {run_tokens:,} training tokens each)")


def run_pool(
    run: Run,
    cross: CrossSeedResult,
    opts: PoolOptions,
    *,
    paths: Sequence[str | Path] | None = None,
    train_stream: Iterable[Any] | None = None,
    say: Callable[[str], None] = log.info,
    started: float | None = None,
) -> PoolResult:
    """Pool the seeds of `cross` (one configuration of `run`; checkpoints at `paths`, default the result's own)
    and judge the pooled SAE. `train_stream` (the run's training stream, e.g. an in-memory replay) saves
    rebuilding it; `started` is when the caller's clock started (pool.json's total seconds)."""
    result = cross
    paths = [Path(p) for p in (paths if paths is not None else result.paths)]
    started = time.perf_counter() if started is None else started
    timings: dict[str, float] = {}

    def raw(sae: SparseAutoencoder) -> SparseAutoencoder:
        return fold_input_scale(sae, scale)

    cfg, hookpoint = run.config, result.hookpoint
    scale = run.input_scale(hookpoint)
    run.check_held_out()
    if train_stream is None:  # the stream is re-read from the run's data file: the one it was trained on, or refused
        run.check_data()
    held_out = [as_mapping(b, cfg.data.hookpoint)[hookpoint] for b in run.held_out_batches()]
    saes_raw = [load_sae(p) for p in paths]
    digests = [weights_digest(*sae_weights(s)) for s in saes_raw]
    if result.digests and result.digests != digests:
        raise DataError(f"{result.label}: the cross-seed result was computed on other weights than the checkpoints "
                        "now in the run (digests differ); run compare again")
    sae_cfg = run.sae_config(result.sae_name, saes_raw[0].d_in)
    device = resolve_device(opts.device, field="device")
    saes = [unfold_input_scale(s, scale, _folded_into(p, scale)).to(device) for s, p in zip(saes_raw, paths)]
    num_seeds, n = len(saes), saes[0].num_latents
    size = opts.size or n
    run_tokens = int(run.manifest.get("tokens", cfg.train.num_tokens))
    check_stream_budget(opts, num_seeds, run_tokens, result.label)
    batch = int(cfg.train.batch_size)
    fit_tokens = opts.fit_tokens if opts.fit_tokens >= 0 else (run_tokens // 4) // batch * batch
    splits = half_splits(num_seeds, opts.splits)
    half = num_seeds // 2
    baseline_tokens = half * run_tokens + fit_tokens
    need = max(fit_tokens, opts.select_tokens, baseline_tokens if opts.baseline_seeds and splits else 0)
    stream = RunStream(run, hookpoint, train_stream=train_stream, max_tokens=need)
    say(f"{result.label}: {num_seeds} seeds × {n} latents; held-out rows {sum(int(b.shape[0]) for b in held_out):,}")

    t0 = time.perf_counter()
    select_rows = [x.to(device, torch.float32) * scale for x in stream.batches(opts.select_tokens)]
    contributions = [latent_contributions(s, select_rows) for s in saes]
    timings["stream_and_contributions"] = time.perf_counter() - t0

    def build(seeds: Sequence[int], tag: str) -> tuple[SparseAutoencoder, Clusters, np.ndarray, np.ndarray,
                                                        dict[str, Any]]:
        clusters = cluster_latents(result, edges=opts.edges, seeds=seeds)
        scores = cluster_scores(clusters, [contributions[s][opts.rank_by] for s in seeds])
        members = [saes[s] for s in seeds]
        directions = cluster_directions(members, clusters, absolute=opts.rule.absolute)
        chosen = choose_clusters(clusters, scores, size, directions=directions, unique_cos=opts.unique_threshold,
                                 absolute=opts.rule.absolute)
        init = pooled_sae(members, clusters, chosen, absolute=opts.rule.absolute)
        before = heldout(raw(init), held_out)  # the initialisation, on raw inputs
        fitted, info = fit_sae(init, stream.batches(fit_tokens), tokens=fit_tokens, train_cfg=cfg.train,
                               scale=scale, fit=opts.fit, progress=opts.progress, desc=f"fit {tag}")
        info["heldout_before_fit"] = before
        return fitted, clusters, chosen, scores, info

    # ------------------------------------------------------------------ the pooled SAE from every seed
    t0 = time.perf_counter()
    say(f"pooling all {num_seeds} seeds into {size} latents; fit: {opts.fit}, {fit_tokens:,} tokens")
    pooled_t, clusters, chosen, scores, fit_info = build(list(range(num_seeds)), "pooled SAE")
    pooled = raw(pooled_t)
    timings["pool_all"] = time.perf_counter() - t0
    single_ev = [heldout(s, held_out) for s in saes_raw]
    pooled_ev = heldout(pooled, held_out)

    # ------------------------------------------------------------------ stability: pooled SAEs of disjoint halves
    t0 = time.perf_counter()
    split_rows: list[dict[str, Any]] = []
    split_saes: list[tuple[SparseAutoencoder, SparseAutoencoder]] = []
    tau, absolute = opts.rule.threshold, opts.rule.absolute
    single_dec = [decoder_rows(s) for s in saes_raw]
    for k, (a, b) in enumerate(splits):
        say(f"split {k + 1}/{len(splits)}: pools of seeds {[result.names[i] for i in a]} and "
            f"{[result.names[i] for i in b]}")
        ta, *_, info_a = build(a, f"split {k} a")
        tb, *_, info_b = build(b, f"split {k} b")
        split_saes.append((ta, tb))
        pa, pb = raw(ta), raw(tb)
        al = align_weights(*sae_weights(pa), *sae_weights(pb), rule=opts.rule)
        ev_a, ev_b = heldout(pa, held_out), heldout(pb, held_out)
        singles = cross_pair_stats(result, a, b)
        reap = np.mean([reappears_in(decoder_rows(pa), [single_dec[j] for j in b], threshold=tau, absolute=absolute),
                        reappears_in(decoder_rows(pb), [single_dec[i] for i in a], threshold=tau, absolute=absolute)])
        split_rows.append({
            "a": [result.names[i] for i in a], "b": [result.names[i] for i in b],
            "latents": [pa.num_latents, pb.num_latents],
            "sf_pooled": al.shared_fraction, "sf_single": singles["sf"], "sf_single_pairs": singles["sf_pairs"],
            "reappears_pooled": float(reap), "reappears_single": singles["reappears"],
            "ev_pooled": (ev_a["explained_variance"] + ev_b["explained_variance"]) / 2,
            "ev_single": float(np.mean([single_ev[i]["explained_variance"] for i in (*a, *b)])),
            "l0_pooled": (ev_a["l0"] + ev_b["l0"]) / 2,
            "l0_single": float(np.mean([single_ev[i]["l0"] for i in (*a, *b)])),
            "heldout_pooled": {"a": ev_a, "b": ev_b}, "fit": {"a": info_a, "b": info_b},
        })
    timings["splits"] = time.perf_counter() - t0

    # ------------------------------------------------------------------ baseline: single seeds, same compute
    t0 = time.perf_counter()
    baseline_saes: list[SparseAutoencoder] = []
    baseline_info: dict[str, Any] | None = None
    if opts.baseline_seeds and splits:
        base_seeds = [BASELINE_SEED0 + k for k in range(opts.baseline_seeds)]
        if set(base_seeds) & set(cfg.train.seeds):
            raise ConfigError(f"baseline seeds {base_seeds} collide with the run's seeds {cfg.train.seeds}")
        runs = []
        for seed in base_seeds:
            say(f"baseline: seed {seed} trained for {baseline_tokens:,} tokens (= {half} seeds × {run_tokens:,} "
                f"+ fit {fit_tokens:,})")
            sae, info = train_single(sae_cfg, saes[0].d_in, stream.batches(baseline_tokens), tokens=baseline_tokens,
                                     train_cfg=cfg.train, scale=scale, seed=seed, device=device,
                                     progress=opts.progress)
            baseline_saes.append(sae)
            runs.append(info | {"heldout": heldout(raw(sae), held_out)})
        base_raw = [raw(s) for s in baseline_saes]
        sf_pairs = [align_weights(*sae_weights(base_raw[i]), *sae_weights(base_raw[j]),
                                  rule=opts.rule).shared_fraction
                    for i in range(len(base_raw)) for j in range(i + 1, len(base_raw))]
        baseline_info = {
            "seeds": base_seeds, "tokens": baseline_tokens, "runs": runs,
            "sf": float(np.mean(sf_pairs)) if sf_pairs else None, "sf_pairs": sf_pairs,
            "ev": float(np.mean([r["heldout"]["explained_variance"] for r in runs])),
            "l0": float(np.mean([r["heldout"]["l0"] for r in runs])),
            "reappears_in_run_seeds": float(np.mean([reappears_in(decoder_rows(s), single_dec, threshold=tau,
                                                                  absolute=absolute) for s in base_raw])),
        }
        for row in split_rows:
            row["sf_baseline"], row["ev_baseline"] = baseline_info["sf"], baseline_info["ev"]
            row["reappears_baseline"] = baseline_info["reappears_in_run_seeds"]
    timings["baseline"] = time.perf_counter() - t0

    verdicts = {
        "vs_single_seeds": judge(split_rows, against="single", ev_tolerance=opts.ev_tolerance, alpha=opts.alpha),
        "vs_longer_training": judge(split_rows, against="baseline", ev_tolerance=opts.ev_tolerance,
                                    alpha=opts.alpha),
    }
    recovery = _recovery(run, saes_raw, pooled, [(raw(a), raw(b)) for a, b in split_saes],
                         [raw(s) for s in baseline_saes])
    timings["total"] = time.perf_counter() - started
    record = _record(result=result, run=run.path, opts=opts, size=size, fit_tokens=fit_tokens,
                     run_tokens=run_tokens, half=half, baseline_tokens=baseline_tokens, clusters=clusters,
                     chosen=chosen, fit_info=fit_info, single_ev=single_ev, pooled_ev=pooled_ev,
                     split_rows=split_rows, baseline=baseline_info, verdicts=verdicts, recovery=recovery,
                     timings=timings)
    log.debug("pool timings (s): %s", {k: round(v, 2) for k, v in timings.items()})
    return PoolResult(pooled, clusters, chosen, record, None, [(raw(a), raw(b)) for a, b in split_saes],
                      [raw(s) for s in baseline_saes], scores=scores,
                      trained=Trained(pooled_t, split_saes, baseline_saes, scale))


def _recovery(run: Run, singles: Sequence[SparseAutoencoder], pooled: SparseAutoencoder,
              split_saes: Sequence[tuple[SparseAutoencoder, SparseAutoencoder]],
              baseline: Sequence[SparseAutoencoder]) -> dict[str, Any] | None:
    """Synthetic runs: true features recovered by single seeds, pooled SAEs and baselines, by kind."""
    truth = run.ground_truth()
    if truth is None:
        return None
    single = [recovery_counts(truth, decoder_rows(s)) for s in singles]
    halves = [recovery_counts(truth, decoder_rows(s)) for pair in split_saes for s in pair]
    base = [recovery_counts(truth, decoder_rows(s)) for s in baseline]

    def spread(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        if not rows:
            return None
        kinds = rows[0]["by_kind"]
        return {"recovered": mean_std([r["recovered"] for r in rows]),
                "by_kind": {k: mean_std([r["by_kind"][k] for r in rows]) for k in kinds}}

    return {"recovery_threshold": RECOVERY_THRESHOLD, "features": feature_kinds(truth),
            "num_features": int(truth.num_features), "single_seeds": single, "single_seeds_spread": spread(single),
            "pooled_all": recovery_counts(truth, decoder_rows(pooled)), "split_pooled": halves,
            "split_pooled_spread": spread(halves), "baseline": base, "baseline_spread": spread(base)}


def _record(*, result: CrossSeedResult, run: Path, opts: PoolOptions, size: int, fit_tokens: int,
            run_tokens: int, half: int, baseline_tokens: int, clusters: Clusters, chosen: np.ndarray,
            fit_info: dict[str, Any], single_ev: list[dict[str, float]], pooled_ev: dict[str, float],
            split_rows: list[dict[str, Any]], baseline: dict[str, Any] | None, verdicts: dict[str, Any],
            recovery: dict[str, Any] | None, timings: dict[str, float]) -> dict[str, Any]:
    """pool.json: a `summary` block first (verdicts and headline numbers), then the details."""
    evs = [e["explained_variance"] for e in single_ev]

    def spread_of(key: str) -> dict[str, float] | None:
        vals = [r[key] for r in split_rows if r.get(key) is not None]
        return mean_std(vals) if vals else None

    summary: dict[str, Any] = {
        "config": result.label,
        "seeds": list(result.names),
        "pooled_latents": int(chosen.size),
        "requested_latents": size,
        "explained_variance": {"pooled_all": pooled_ev["explained_variance"], "single_seeds": mean_std(evs),
                               "baseline": baseline["ev"] if baseline else None},
        "l0": {"pooled_all": pooled_ev["l0"], "single_seeds": mean_std([e["l0"] for e in single_ev])},
        "shared_fraction": {"pooled_pairs": spread_of("sf_pooled"), "single_pairs": spread_of("sf_single"),
                            "baseline_pairs": baseline["sf"] if baseline else None},
        "reappears_in_held_out_seeds": {"pooled": spread_of("reappears_pooled"),
                                        "single": spread_of("reappears_single"),
                                        "baseline": baseline["reappears_in_run_seeds"] if baseline else None},
        "verdicts": {k: {"claim": v["claim"], "holds": v["holds"], "p_value": v.get("p_value"),
                         "delta_shared_fraction": v.get("delta_sf"), "delta_explained_variance": v.get("delta_ev"),
                         "reason": v.get("reason")} for k, v in verdicts.items()},
        "seconds": timings["total"],
    }
    if recovery is not None:
        summary["recovered_features"] = {
            "of": recovery["num_features"], "pooled_all": recovery["pooled_all"]["recovered"],
            "single_seeds": recovery["single_seeds_spread"]["recovered"],
            "split_pooled": recovery["split_pooled_spread"]["recovered"] if recovery["split_pooled_spread"] else None,
            "baseline": recovery["baseline_spread"]["recovered"] if recovery["baseline_spread"] else None,
        }
    support = clusters.support
    return {
        "summary": summary,
        "run_dir": str(run),
        "hookpoint": result.hookpoint,
        "sae_name": result.sae_name,
        "options": opts.to_dict(),
        "clusters": {
            "count": clusters.num_clusters, "edges": clusters.edge_kind, "threshold": clusters.threshold,
            "support_histogram": clusters.support_histogram(),
            "chosen_support_histogram": clusters.support_histogram(chosen),
            "mean_cohesion_multi": _nanmean(clusters.cohesion[support >= 2]),
            "file": "clusters.npz",
        },
        "compute": {
            "unit": "SAE training tokens (one SAE update per token; every SAE here has the same size)",
            "single_seed": run_tokens,
            "pooled_all": num_seeds_tokens(len(result.names), run_tokens, fit_tokens),
            "split_pooled": num_seeds_tokens(half, run_tokens, fit_tokens),
            "baseline": baseline_tokens if baseline else None,
            "fit_tokens": fit_tokens,
            "seconds": timings,
        },
        "heldout": {"single_seeds": {name: e for name, e in zip(result.names, single_ev)}, "pooled_all": pooled_ev,
                    "pooled_all_before_fit": fit_info.get("heldout_before_fit")},
        "fit": {k: v for k, v in fit_info.items() if k != "heldout_before_fit"},
        "splits": split_rows,
        "baseline": baseline,
        "verdicts": verdicts,
        "recovery": recovery,
        "cross_seed": {"label": result.label, "rule": result.rule.to_dict(),
                       "shared_fraction": result.shared_fraction_stats(), "paths": list(result.paths)},
        "pooled_checkpoint": "pooled",
    }


def num_seeds_tokens(seeds: int, run_tokens: int, fit_tokens: int) -> int:
    """Compute of a pooled SAE: its seeds' training plus its fit."""
    return seeds * run_tokens + fit_tokens


def _nanmean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _folded_into(path: Path, scale: float) -> str | None:
    """How a checkpoint holds its input scale (cfg.json `input_scale_folded_into`); its recorded scale must be
    the run's."""
    cfg = read_checkpoint_cfg(path)  # cfg.json with saeseeds.json beside it
    recorded = cfg.get("input_scale")
    if recorded is not None and not np.isclose(float(recorded), scale, rtol=1e-6):
        raise CheckpointError(f"{path / CHECKPOINT_CONFIG}: input_scale {recorded} differs from the run's {scale}")
    folded = cfg.get("input_scale_folded_into")
    return str(folded) if folded else None

