"""Pool cross-seed features into one SAE and judge it fairly (`saeseeds pool`, `ss.pool`): find the run and the
cross-seed result of the configuration to pool (`resolve_source`), run the experiment (`saeseeds.pooling.experiment.
run_pool`, docs/pooling.md) and write what it built and measured (`saeseeds.pooling.output.write_pool`).

Output layout (schema `saeseeds.pooling/1`, docs/formats.md; paths in it relative to the file holding them):

    pool.json        summary (verdicts, headline numbers), options, clusters, compute, per-split numbers, ...
    clusters.npz     members [C, S], support, edges, weight, contribution, chosen (the pooled latents' clusters)
    pooled/          the pooled SAE from every seed: a checkpoint (sparsify layout), provenance in saeseeds.json
    splits/<k>/a, b  the pooled SAEs of each split's two halves
    baseline/seed<N> the single seeds trained for a pooled SAE's total compute
    figures/         PNG figures with the numbers behind them as JSON
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from saeseeds.align.cross_seed import CrossSeedResult, SeedSet
from saeseeds.api.comparison import compare_all, load_comparison
from saeseeds.errors import CheckpointError, ConfigError
from saeseeds.outputs import check_output_dir
from saeseeds.pooling.experiment import PoolResult, run_pool
from saeseeds.pooling.options import PoolOptions
from saeseeds.pooling.output import FORMAT, KIND, write_pool
from saeseeds.signflip import VERDICT_WORDS
from saeseeds.training.run_dir import Run

__all__ = ["FORMAT", "KIND", "PoolResult", "headline", "pool", "resolve_source"]
log = logging.getLogger(__name__)


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


def resolve_source(source: str | Path, *, config: str | None, rule: Any, run_dir: str | Path | None,
                   say: Callable[[str], None]) -> tuple[CrossSeedResult, Run, list[Path]]:
    """The cross-seed result, the run and the checkpoints of the configuration to pool."""
    source = Path(source)
    if not source.exists():
        raise CheckpointError(f"{source} does not exist")
    if Run.is_run(source):
        run = Run.open(source)
        sets = [s for s in run.seed_sets() if len(s) >= 2]
        if not sets:
            raise CheckpointError(f"{source}: no SAE configuration with two or more seeds")
        chosen: SeedSet = _pick(sets, config, lambda s: s.label, str(source))
        say(f"aligning the {len(chosen)} seeds of {chosen.label} (each pair once)")
        return compare_all([chosen], rule=rule)[0], run, list(chosen.paths)
    if (source / "summary.json").is_file():  # a compare output: its results read once, the run found from them
        results = load_comparison(source)
        result = _pick(results, config, lambda r: r.label, str(source))
        found = _run_of(result, run_dir)
        if found is None:
            raise CheckpointError(f"{source}: cannot find the run of {result.label} from its checkpoint paths; "
                                  "pass the run directory (--run)")
        paths = [Path(p) for p in result.paths]
        if not all(p.exists() for p in paths):
            by_name = {s.sae_name: s for s in found.seed_sets() if s.hookpoint == result.hookpoint}
            if result.sae_name not in by_name:
                raise CheckpointError(f"{found.path}: no checkpoints of {result.label}")
            paths = list(by_name[result.sae_name].paths)
        return result.with_rule(rule), found, paths
    raise CheckpointError(f"{source} is neither a run directory (no run.json) nor a compare output (no summary.json)")


def _run_of(result: CrossSeedResult, run_dir: str | Path | None) -> Run | None:
    """The run named by --run, else the run holding the result's checkpoints; None when there is none."""
    if run_dir is not None:
        return Run.open(run_dir) if Run.is_run(run_dir) else None
    return next(filter(None, map(Run.containing, result.paths)), None)


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

    result, run, paths = resolve_source(source, config=config, rule=opts.rule, run_dir=run_dir, say=say)
    pooled = run_pool(run, result, opts, paths=paths, train_stream=train_stream, say=say, started=started)
    if caller_say is not None:  # the CLI prints the verdicts itself, on stdout
        caller_say(headline(pooled.record))
    if out is not None:
        from saeseeds.report.pool_plots import plot_pool  # matplotlib only when figures are drawn

        write_pool(Path(out), pooled, result, run.data, draw=plot_pool)
        pooled.out = Path(out)
    return pooled


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
        state = VERDICT_WORDS[v["holds"]]
        lines.append(f"{v['claim']}: {state}" + (f" (p = {v['p_value']:.3g})" if v["p_value"] is not None else "")
                     + (f" — {v['reason']}" if v.get("reason") else ""))
    return "\n".join(lines)
