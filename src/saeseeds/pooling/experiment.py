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

from saeseeds.align.cross_seed import CrossSeedResult, same_weights
from saeseeds.align.pair import align_weights, sae_weights
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


@dataclass
class PoolSetup:
    """What every step of the experiment reads: the run's config, the seeds' SAEs (raw inputs, and in the trainer's
    space on the device), the held-out rows, the run's stream and the token budgets (`prepare`)."""

    run: Run
    result: CrossSeedResult
    opts: PoolOptions
    cfg: Any
    scale: float
    held_out: list[torch.Tensor]
    saes_raw: list[SparseAutoencoder]
    saes: list[SparseAutoencoder]
    sae_cfg: Any
    device: torch.device
    size: int
    run_tokens: int
    fit_tokens: int
    splits: list[tuple[list[int], list[int]]]
    baseline_tokens: int
    stream: RunStream
    contributions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def num_seeds(self) -> int:
        return len(self.saes)

    @property
    def half(self) -> int:
        """Seeds in each half of a split."""
        return self.num_seeds // 2

    def raw(self, sae: SparseAutoencoder) -> SparseAutoencoder:
        """An SAE of the trainer's space on raw inputs (the run's input scale folded in)."""
        return fold_input_scale(sae, self.scale)


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
    started = time.perf_counter() if started is None else started
    timings: dict[str, float] = {}
    setup = prepare(run, cross, opts, paths=paths, train_stream=train_stream)
    say(f"{cross.label}: {setup.num_seeds} seeds × {setup.saes[0].num_latents} latents; held-out rows "
        f"{sum(int(b.shape[0]) for b in setup.held_out):,}")

    t0 = time.perf_counter()
    select_rows = [x.to(setup.device, torch.float32) * setup.scale for x in setup.stream.batches(opts.select_tokens)]
    setup.contributions = [latent_contributions(s, select_rows) for s in setup.saes]
    timings["stream_and_contributions"] = time.perf_counter() - t0

    t0 = time.perf_counter()  # the pooled SAE from every seed
    say(f"pooling all {setup.num_seeds} seeds into {setup.size} latents; fit: {opts.fit}, {setup.fit_tokens:,} tokens")
    pooled_t, clusters, chosen, scores, fit_info = build_pooled(setup, list(range(setup.num_seeds)), "pooled SAE")
    pooled = setup.raw(pooled_t)
    timings["pool_all"] = time.perf_counter() - t0
    single_ev = [heldout(s, setup.held_out) for s in setup.saes_raw]
    pooled_ev = heldout(pooled, setup.held_out)

    t0 = time.perf_counter()  # stability: pooled SAEs of disjoint halves
    split_rows, split_saes = split_pools(setup, single_ev, say)
    timings["splits"] = time.perf_counter() - t0

    t0 = time.perf_counter()  # baseline: single seeds, same compute
    baseline_saes, baseline_info = train_baseline(setup, split_rows, say)
    timings["baseline"] = time.perf_counter() - t0

    verdicts = {
        "vs_single_seeds": judge(split_rows, against="single", ev_tolerance=opts.ev_tolerance, alpha=opts.alpha),
        "vs_longer_training": judge(split_rows, against="baseline", ev_tolerance=opts.ev_tolerance,
                                    alpha=opts.alpha),
    }
    split_raw = [(setup.raw(a), setup.raw(b)) for a, b in split_saes]
    baseline_raw = [setup.raw(s) for s in baseline_saes]
    recovery = _recovery(run, setup.saes_raw, pooled, split_raw, baseline_raw)
    timings["total"] = time.perf_counter() - started
    record = _record(setup, clusters=clusters, chosen=chosen, fit_info=fit_info, single_ev=single_ev,
                     pooled_ev=pooled_ev, split_rows=split_rows, baseline=baseline_info, verdicts=verdicts,
                     recovery=recovery, timings=timings)
    log.debug("pool timings (s): %s", {k: round(v, 2) for k, v in timings.items()})
    return PoolResult(pooled, clusters, chosen, record, split_saes=split_raw, baseline_saes=baseline_raw,
                      scores=scores, trained=Trained(pooled_t, split_saes, baseline_saes, setup.scale))


def prepare(run: Run, result: CrossSeedResult, opts: PoolOptions, *, paths: Sequence[str | Path] | None = None,
            train_stream: Iterable[Any] | None = None) -> PoolSetup:
    """Read the run once for the experiment: its held-out rows, the seeds' checkpoints (checked against the
    cross-seed result's digests, unfolded to the trainer's space), the budgets (checked) and the stream."""
    paths = [Path(p) for p in (paths if paths is not None else result.paths)]
    cfg, hookpoint = run.config, result.hookpoint
    run_tokens = int(run.manifest.get("tokens", cfg.train.num_tokens))
    check_stream_budget(opts, len(paths), run_tokens, result.label)  # the asked budgets first: one line, nothing read
    scale = run.input_scale(hookpoint)
    run.check_held_out()
    if train_stream is None:  # the stream is re-read from the run's data file: the one it was trained on, or refused
        run.check_data()
    folded = [_folded_into(p, scale) for p in paths]  # each checkpoint's recorded scale checked before any loads
    saes_raw = [load_sae(p) for p in paths]
    if not same_weights(result, saes_raw):
        raise DataError(f"{result.label}: the cross-seed result was computed on other weights than the checkpoints "
                        "now in the run (digests differ); run compare again")
    device = resolve_device(opts.device, field="device")
    saes = [unfold_input_scale(s, scale, f).to(device) for s, f in zip(saes_raw, folded)]
    held_out = run.held_out_rows(hookpoint)
    batch = int(cfg.train.batch_size)
    fit_tokens = opts.fit_tokens if opts.fit_tokens >= 0 else (run_tokens // 4) // batch * batch
    splits = half_splits(len(saes), opts.splits)
    baseline_tokens = len(saes) // 2 * run_tokens + fit_tokens
    need = max(fit_tokens, opts.select_tokens, baseline_tokens if opts.baseline_seeds and splits else 0)
    return PoolSetup(run, result, opts, cfg, scale, held_out, saes_raw, saes,
                     run.sae_config(result.sae_name, saes_raw[0].d_in), device, opts.size or saes[0].num_latents,
                     run_tokens, fit_tokens, splits, baseline_tokens,
                     RunStream(run, hookpoint, train_stream=train_stream, max_tokens=need))


def build_pooled(setup: PoolSetup, seeds: Sequence[int], tag: str
                 ) -> tuple[SparseAutoencoder, Clusters, np.ndarray, np.ndarray, dict[str, Any]]:
    """The pooled SAE of `seeds` (trainer's space): their clusters, the `size` best by contribution, built and fit
    on the run's stream; with the clusters, the chosen ones, every cluster's score and the fit's record."""
    opts, absolute = setup.opts, setup.opts.rule.absolute
    clusters = cluster_latents(setup.result, edges=opts.edges, seeds=seeds)
    scores = cluster_scores(clusters, [setup.contributions[s][opts.rank_by] for s in seeds])
    members = [setup.saes[s] for s in seeds]
    directions = cluster_directions(members, clusters, absolute=absolute)
    chosen = choose_clusters(clusters, scores, setup.size, directions=directions, unique_cos=opts.unique_threshold,
                             absolute=absolute)
    init = pooled_sae(members, clusters, chosen, absolute=absolute)
    before = heldout(setup.raw(init), setup.held_out)  # the initialisation, on raw inputs
    fitted, info = fit_sae(init, setup.stream.batches(setup.fit_tokens), tokens=setup.fit_tokens,
                           train_cfg=setup.cfg.train, scale=setup.scale, fit=opts.fit, progress=opts.progress,
                           desc=f"fit {tag}")
    info["heldout_before_fit"] = before
    return fitted, clusters, chosen, scores, info


def split_pools(setup: PoolSetup, single_ev: list[dict[str, float]], say: Callable[[str], None]
                ) -> tuple[list[dict[str, Any]], list[tuple[SparseAutoencoder, SparseAutoencoder]]]:
    """Per split of the seeds into disjoint halves: the two halves' pooled SAEs (trainer's space), and how they
    compare with each other and with single seeds (shared fraction, reappearance in the other half, held-out)."""
    result, opts = setup.result, setup.opts
    tau, absolute = opts.rule.threshold, opts.rule.absolute
    single_dec = [decoder_rows(s) for s in setup.saes_raw]
    rows: list[dict[str, Any]] = []
    saes: list[tuple[SparseAutoencoder, SparseAutoencoder]] = []
    for k, (a, b) in enumerate(setup.splits):
        say(f"split {k + 1}/{len(setup.splits)}: pools of seeds {[result.names[i] for i in a]} and "
            f"{[result.names[i] for i in b]}")
        ta, *_, info_a = build_pooled(setup, a, f"split {k} a")
        tb, *_, info_b = build_pooled(setup, b, f"split {k} b")
        saes.append((ta, tb))
        pa, pb = setup.raw(ta), setup.raw(tb)
        al = align_weights(*sae_weights(pa), *sae_weights(pb), rule=opts.rule)
        ev_a, ev_b = heldout(pa, setup.held_out), heldout(pb, setup.held_out)
        singles = cross_pair_stats(result, a, b)
        reap = np.mean([reappears_in(decoder_rows(pa), [single_dec[j] for j in b], threshold=tau, absolute=absolute),
                        reappears_in(decoder_rows(pb), [single_dec[i] for i in a], threshold=tau, absolute=absolute)])
        rows.append({
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
    return rows, saes


def train_baseline(setup: PoolSetup, split_rows: list[dict[str, Any]], say: Callable[[str], None]
                   ) -> tuple[list[SparseAutoencoder], dict[str, Any] | None]:
    """Fresh single seeds trained for a split pool's total compute (trainer's space), and how stable and good they
    are; each split row gets the baseline's numbers. None without --baseline-seeds or splits."""
    opts, cfg = setup.opts, setup.cfg
    if not (opts.baseline_seeds and setup.splits):
        return [], None
    base_seeds = [BASELINE_SEED0 + k for k in range(opts.baseline_seeds)]
    if set(base_seeds) & set(cfg.train.seeds):
        raise ConfigError(f"baseline seeds {base_seeds} collide with the run's seeds {cfg.train.seeds}")
    saes, runs = [], []
    for seed in base_seeds:
        say(f"baseline: seed {seed} trained for {setup.baseline_tokens:,} tokens (= {setup.half} seeds × "
            f"{setup.run_tokens:,} + fit {setup.fit_tokens:,})")
        sae, info = train_single(setup.sae_cfg, setup.saes[0].d_in, setup.stream.batches(setup.baseline_tokens),
                                 tokens=setup.baseline_tokens, train_cfg=cfg.train, scale=setup.scale, seed=seed,
                                 device=setup.device, progress=opts.progress)
        saes.append(sae)
        runs.append(info | {"heldout": heldout(setup.raw(sae), setup.held_out)})
    base_raw = [setup.raw(s) for s in saes]
    sf_pairs = [align_weights(*sae_weights(base_raw[i]), *sae_weights(base_raw[j]), rule=opts.rule).shared_fraction
                for i in range(len(base_raw)) for j in range(i + 1, len(base_raw))]
    single_dec = [decoder_rows(s) for s in setup.saes_raw]
    info = {
        "seeds": base_seeds, "tokens": setup.baseline_tokens, "runs": runs,
        "sf": float(np.mean(sf_pairs)) if sf_pairs else None, "sf_pairs": sf_pairs,
        "ev": float(np.mean([r["heldout"]["explained_variance"] for r in runs])),
        "l0": float(np.mean([r["heldout"]["l0"] for r in runs])),
        "reappears_in_run_seeds": float(np.mean([reappears_in(decoder_rows(s), single_dec, threshold=opts.rule.threshold,
                                                              absolute=opts.rule.absolute) for s in base_raw])),
    }
    for row in split_rows:
        row["sf_baseline"], row["ev_baseline"] = info["sf"], info["ev"]
        row["reappears_baseline"] = info["reappears_in_run_seeds"]
    return saes, info


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


def _record(setup: PoolSetup, *, clusters: Clusters, chosen: np.ndarray, fit_info: dict[str, Any],
            single_ev: list[dict[str, float]], pooled_ev: dict[str, float], split_rows: list[dict[str, Any]],
            baseline: dict[str, Any] | None, verdicts: dict[str, Any], recovery: dict[str, Any] | None,
            timings: dict[str, float]) -> dict[str, Any]:
    """pool.json: a `summary` block first (verdicts and headline numbers), then the details."""
    result, run, opts, size = setup.result, setup.run.path, setup.opts, setup.size
    run_tokens, fit_tokens, half, baseline_tokens = setup.run_tokens, setup.fit_tokens, setup.half, setup.baseline_tokens
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

