"""Pool cross-seed features into one SAE and judge it fairly (`saeseeds pool`, `ss.pool`).

From the seeds of one configuration and their cross-seed result: cluster the latents (one per seed at most),
build the pooled SAE from the clusters with the most support, fit it on the run's stream, and evaluate it against
single seeds on the run's held-out rows, by the stability of pooled SAEs built from disjoint halves of the seeds,
and against fresh single seeds trained for the same total compute. docs/pooling.md describes the procedure.

Output layout (schema `saeseeds.pooling/1`, docs/formats.md; paths in it relative to the file holding them):

    pool.json        summary (verdicts, headline numbers), options, clusters, compute, per-split numbers, ...
    clusters.npz     members [C, S], support, edges, weight, contribution, chosen (the pooled latents' clusters)
    pooled/          the pooled SAE from every seed: a checkpoint (sparsify layout), provenance in cfg.json
    splits/<k>/a, b  the pooled SAEs of each split's two halves
    baseline/seed<N> the single seeds trained for a pooled SAE's total compute
    figures/         PNG figures with the numbers behind them as JSON
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saeseeds.align.cross_seed import CrossSeedResult, SeedSet, weights_digest
from saeseeds.align.pair import align_weights, sae_weights
from saeseeds.analysis.eval_data import check_stored_eval
from saeseeds.api.comparison import compare, load_comparison
from saeseeds.api.discovery import seed_sets
from saeseeds.atomic import atomic_dir, atomic_write_npz
from saeseeds.data.sources import check_run_data
from saeseeds.data.types import as_mapping
from saeseeds.device import resolve_device
from saeseeds.errors import CheckpointError, ConfigError, DataError
from saeseeds.outputs import check_output_dir, mark_output, output_kind
from saeseeds.pooling.build import (
    choose_clusters,
    cluster_directions,
    cluster_scores,
    latent_contributions,
    pooled_sae,
)
from saeseeds.pooling.clusters import Clusters, cluster_latents
from saeseeds.pooling.evaluate import (
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
from saeseeds.records import relative_path, write_record
from saeseeds.sae import load_sae, save_sae
from saeseeds.sae.checkpoint import fold_input_scale, unfold_input_scale
from saeseeds.sae.model import SparseAutoencoder
from saeseeds.training.run_dir import (
    MANIFEST,
    eval_batches_for_run,
    is_run_dir,
    load_run_config,
    read_manifest,
)

FORMAT = "saeseeds.pooling/1"
KIND = "pool"
log = logging.getLogger(__name__)
BASELINE_SEED0 = 10_000
"""Seeds of the longer-trained baseline: 10000, 10001, ... (never a run seed in practice; checked)."""


@dataclass
class PoolResult:
    """What `pool` built and measured: the pooled SAE (raw inputs), its clusters and the pool.json record."""

    sae: SparseAutoencoder
    clusters: Clusters
    chosen: np.ndarray
    record: dict[str, Any]
    out: Path | None = None
    split_saes: list[tuple[SparseAutoencoder, SparseAutoencoder]] = field(default_factory=list)
    baseline_saes: list[SparseAutoencoder] = field(default_factory=list)


def _find_run(paths: Sequence[str]) -> Path | None:
    """The run directory holding these checkpoints (the nearest parent with a run.json)."""
    for p in paths:
        path = Path(p)
        if not path.exists():
            continue
        for parent in path.resolve().parents:
            if (parent / MANIFEST).is_file():
                return parent
    return None


def _pick(items: Sequence[Any], config: str | None, label: Callable[[Any], str], where: str) -> Any:
    """The one configuration to pool: the only one, or the one named `config` (its SAE name or label)."""
    if config:
        found = [x for x in items if config in (label(x), label(x).split("/")[-1])]
        if len(found) != 1:
            raise ConfigError(f"--config {config!r}: {where} holds {', '.join(label(x) for x in items)}")
        return found[0]
    if len(items) != 1:
        raise ConfigError(f"{where} holds {len(items)} configurations ({', '.join(label(x) for x in items)}); "
                          "name one with --config")
    return items[0]


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


def resolve_source(source: str | Path, *, config: str | None, rule: Any, run_dir: str | Path | None,
                   say: Callable[[str], None]) -> tuple[CrossSeedResult, Path, list[Path]]:
    """The cross-seed result, the run directory and the checkpoints of the configuration to pool."""
    source = Path(source)
    if not source.exists():
        raise CheckpointError(f"{source} does not exist")
    if is_run_dir(source):
        sets = [s for s in seed_sets(source) if len(s) >= 2]
        if not sets:
            raise CheckpointError(f"{source}: no SAE configuration with two or more seeds")
        chosen: SeedSet = _pick(sets, config, lambda s: s.label, str(source))
        say(f"aligning the {len(chosen)} seeds of {chosen.label} (each pair once)")
        result = compare(chosen, rule=rule)
        return result, source, list(chosen.paths)
    if output_kind(source) == "compare" or (source / "summary.json").is_file():
        results = load_comparison(source)
        result = _pick(results, config, lambda r: r.label, str(source))
        run = Path(run_dir) if run_dir is not None else _find_run(result.paths)
        if run is None or not is_run_dir(run):
            raise CheckpointError(f"{source}: cannot find the run of {result.label} from its checkpoint paths; "
                                  "pass the run directory (--run)")
        paths = [Path(p) for p in result.paths]
        if not all(p.exists() for p in paths):
            by_name = {s.sae_name: s for s in seed_sets(run) if s.hookpoint == result.hookpoint}
            if result.sae_name not in by_name:
                raise CheckpointError(f"{run}: no checkpoints of {result.label}")
            paths = list(by_name[result.sae_name].paths)
        return result.with_rule(rule), run, paths
    raise CheckpointError(f"{source} is neither a run directory (no run.json) nor a compare output (no summary.json)")


def pool(
    source: str | Path,
    *,
    out: str | Path | None = None,
    options: PoolOptions | None = None,
    config: str | None = None,
    run_dir: str | Path | None = None,
    overwrite: bool = False,
    say: Callable[[str], None] | None = None,
    train_stream: Iterable[Any] | None = None,
) -> PoolResult:
    """Pool the seeds of one configuration of a run (`source`: the run, or a compare output of it).

    `config` names the configuration when there are several; `train_stream` (the run's training stream, e.g. an
    in-memory replay) saves rebuilding it. With `out`, everything is written there (format `saeseeds.pooling/1`).
    Status lines go to `say` when given (the verdicts too: `headline`), else to the `saeseeds` logger.
    """
    caller_say, say = say, say or log.info
    opts = options or PoolOptions()
    if out is not None:
        check_output_dir(out, KIND, overwrite=overwrite)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def raw(sae: SparseAutoencoder) -> SparseAutoencoder:
        return fold_input_scale(sae, scale)

    result, run, paths = resolve_source(source, config=config, rule=opts.rule, run_dir=run_dir, say=say)
    manifest = read_manifest(run)
    cfg = load_run_config(run)
    if train_stream is None:  # the stream is re-read from the run's data file: the one it was trained on, or refused
        check_run_data(cfg, manifest, run)
    check_stored_eval(run, manifest)
    hookpoint = result.hookpoint
    saes_raw = [load_sae(p) for p in paths]
    digests = [weights_digest(*sae_weights(s)) for s in saes_raw]
    if result.digests and result.digests != digests:
        raise DataError(f"{result.label}: the cross-seed result was computed on other weights than the checkpoints "
                        "now in the run (digests differ); run compare again")
    try:
        scale = float(manifest["hookpoints"][hookpoint]["input_scale"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{run / MANIFEST}: no input_scale for hookpoint {hookpoint!r}") from err
    seeds_cfg = [s for s in cfg.saes if s.resolved_name(saes_raw[0].d_in) == result.sae_name]
    if not seeds_cfg:
        raise CheckpointError(f"{run / MANIFEST}: no [[sae]] named {result.sae_name!r} in the run's config")
    sae_cfg = seeds_cfg[0]
    device = resolve_device(opts.device, field="device")
    saes = [unfold_input_scale(s, scale, _folded_into(p, scale)).to(device) for s, p in zip(saes_raw, paths)]
    num_seeds, n = len(saes), saes[0].num_latents
    size = opts.size or n
    run_tokens = int(manifest.get("tokens", cfg.train.num_tokens))
    check_stream_budget(opts, num_seeds, run_tokens, result.label)
    batch = int(cfg.train.batch_size)
    fit_tokens = opts.fit_tokens if opts.fit_tokens >= 0 else (run_tokens // 4) // batch * batch
    splits = half_splits(num_seeds, opts.splits)
    half = num_seeds // 2
    baseline_tokens = half * run_tokens + fit_tokens
    need = max(fit_tokens, opts.select_tokens, baseline_tokens if opts.baseline_seeds and splits else 0)
    stream = RunStream(cfg, hookpoint, train_stream=train_stream, max_tokens=need, manifest=manifest)
    held_out = [as_mapping(b, cfg.data.hookpoint)[hookpoint] for b in eval_batches_for_run(run)]
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
    record = _record(result, run, opts, size, n, fit_tokens, run_tokens, half, baseline_tokens, clusters, chosen,
                     fit_info, single_ev, pooled_ev, split_rows, baseline_info, verdicts, recovery, timings)
    log.debug("pool timings (s): %s", {k: round(v, 2) for k, v in timings.items()})
    if caller_say is not None:  # the CLI prints the verdicts itself, on stdout
        caller_say(headline(record))
    pooled_result = PoolResult(pooled, clusters, chosen, record, None, [(raw(a), raw(b)) for a, b in split_saes],
                               [raw(s) for s in baseline_saes])
    if out is not None:
        trained = _Trained(pooled_t, split_saes, baseline_saes, scale)
        _write(Path(out), pooled_result, trained, scores, result, hookpoint, manifest)
        pooled_result.out = Path(out)
    return pooled_result


def _recovery(run: Path, singles: Sequence[SparseAutoencoder], pooled: SparseAutoencoder,
              split_saes: Sequence[tuple[SparseAutoencoder, SparseAutoencoder]],
              baseline: Sequence[SparseAutoencoder]) -> dict[str, Any] | None:
    """Synthetic runs: true features recovered by single seeds, pooled SAEs and baselines, by kind."""
    if not (run / "ground_truth.safetensors").is_file():
        return None
    from saeseeds.data.synthetic import load_ground_truth
    from saeseeds.pooling.evaluate import RECOVERY_THRESHOLD

    truth = load_ground_truth(run)
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


def _record(result: CrossSeedResult, run: Path, opts: PoolOptions, size: int, n: int, fit_tokens: int,
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


def headline(record: dict[str, Any]) -> str:
    s = record["summary"]
    ev = s["explained_variance"]
    lines = [f"pooled SAE ({s['pooled_latents']} latents): explained variance {ev['pooled_all']:.4f} vs single seeds "
             f"{ev['single_seeds']['mean']:.4f} ± {ev['single_seeds']['std']:.4f}"]
    sf = s["shared_fraction"]
    if sf["pooled_pairs"]:
        lines.append(f"shared fraction: pooled pairs {sf['pooled_pairs']['mean']:.3f} ± {sf['pooled_pairs']['std']:.3f}"
                     f" vs single pairs {sf['single_pairs']['mean']:.3f} ± {sf['single_pairs']['std']:.3f}"
                     + (f" vs baseline {sf['baseline_pairs']:.3f}" if sf["baseline_pairs"] is not None else ""))
    for v in s["verdicts"].values():
        state = {True: "holds", False: "does not hold", None: "undetermined"}[v["holds"]]
        lines.append(f"{v['claim']}: {state}" + (f" (p = {v['p_value']:.3g})" if v["p_value"] is not None else "")
                     + (f" — {v['reason']}" if v.get("reason") else ""))
    return "\n".join(lines)


@dataclass
class _Trained:
    """The SAEs in the trainer's space, saved like the trainer saves them (input scale folded in by save_sae)."""

    pooled: SparseAutoencoder
    splits: list[tuple[SparseAutoencoder, SparseAutoencoder]]
    baseline: list[SparseAutoencoder]
    scale: float


def _folded_into(path: Path, scale: float) -> str | None:
    """How a checkpoint holds its input scale (cfg.json `input_scale_folded_into`); its recorded scale must be
    the run's."""
    cfg = json.loads((Path(path) / "cfg.json").read_text())
    recorded = cfg.get("input_scale")
    if recorded is not None and not np.isclose(float(recorded), scale, rtol=1e-6):
        raise CheckpointError(f"{path / 'cfg.json'}: input_scale {recorded} differs from the run's {scale}")
    folded = cfg.get("input_scale_folded_into")
    return str(folded) if folded else None


def _write(out: Path, res: PoolResult, trained: _Trained, scores: np.ndarray, result: CrossSeedResult,
           hookpoint: str, manifest: dict[str, Any]) -> None:
    """Everything into `out`, built aside and swapped in whole."""
    from saeseeds.pooling.plots import plot_pool

    model = str(manifest.get("data", {}).get("model", ""))
    data = manifest.get("data", {}) if isinstance(manifest.get("data"), dict) else {}
    provenance = {"schema": FORMAT, "run_dir": res.record["run_dir"], "config": result.label,
                  "seeds": list(result.names), "digests": list(result.digests),
                  "options": res.record["options"], "fit": res.record["fit"]}

    def save(sae: SparseAutoencoder, path: Path, seed: int | None, extra: dict[str, Any] | None) -> None:
        save_sae(sae, path, hookpoint=hookpoint, model=model, seed=seed, input_scale=trained.scale, data=data)
        if extra is not None:  # a normal checkpoint whose cfg.json also records where its latents came from
            cfg = json.loads((path / "cfg.json").read_text())
            cfg["pooling"] = extra | {"run_dir": relative_path(extra["run_dir"], path)}
            write_record(path / "cfg.json", cfg["schema"], cfg)

    with atomic_dir(out) as tmp:
        mark_output(tmp, KIND)
        c = res.clusters
        atomic_write_npz(tmp / "clusters.npz", members=c.members, support=c.support, edges=c.edges, weight=c.weight,
                         contribution=scores, chosen=res.chosen.astype(np.int64))
        save(trained.pooled, tmp / "pooled", None, provenance | {"from": "every seed"})
        for k, (a, b) in enumerate(trained.splits):
            row = res.record["splits"][k]
            save(a, tmp / "splits" / str(k) / "a", None, provenance | {"seeds": row["a"], "fit": row["fit"]["a"]})
            save(b, tmp / "splits" / str(k) / "b", None, provenance | {"seeds": row["b"], "fit": row["fit"]["b"]})
        baseline = res.record.get("baseline") or {}
        for sae, seed in zip(trained.baseline, baseline.get("seeds", [])):
            save(sae, tmp / "baseline" / f"seed{seed}", seed, None)
        res.record["figures"] = [str(p.relative_to(tmp)) for p in plot_pool(res.record, c, res.chosen,
                                                                             tmp / "figures")]
        write_record(tmp / "pool.json", FORMAT, _on_disk(res.record, tmp))  # tmp lies beside out


def _on_disk(record: dict[str, Any], base: Path) -> dict[str, Any]:
    """pool.json as stored in `base`: `run_dir` and the cross-seed checkpoint paths relative to it."""
    cross = record["cross_seed"] | {"paths": [relative_path(p, base) for p in record["cross_seed"]["paths"]]}
    return record | {"run_dir": relative_path(record["run_dir"], base), "cross_seed": cross}
