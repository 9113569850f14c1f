"""Why latents are unstable: the analyses of one SAE configuration across seeds, composed.

For each configuration (hookpoint, SAE name) of a run: per-latent stability across seeds, trigger statistics
and top contexts, ablation of stable / unstable / random sets (FVU and LM loss), and the reproducibility
of the unstable latents' decoder spans. Every claim names its paper and is judged with that paper's stability
estimator (Gerasimov et al.'s decoder reappearance by default), and again with the other estimator beside it;
each is tested per seed against frequency-matched (or, for spans, data-matched) controls and judged across
seeds with Holm's correction (`saeseeds.analysis.verdicts`, docs/definitions.md "Verdicts").

Each analysis is one module of `saeseeds.analysis.tables` with a typed result and the `update(batch)` /
`result(done)` seam (`tables.seam.Analysis`); `ANALYSES` lists them. Adding one: its module, a line here, and
its field on `ConfigAnalysis`. `saeseeds analyze` writes the results (`tables.seam.write_tables`) and figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from saeseeds.align.cross_seed import CrossSeedResult, SeedSet, same_weights
from saeseeds.analysis.eval_data import EvalData
from saeseeds.analysis.options import CLAIMS_ESTIMATOR, AnalyzeOptions
from saeseeds.analysis.tables.ablation import AblationAnalysis, AblationTable
from saeseeds.analysis.tables.claims import Claims, ClaimsAnalysis
from saeseeds.analysis.tables.seam import Analysis, Batch, Inputs, SeedCode, write_tables
from saeseeds.analysis.tables.stability import StabilityAnalysis, StabilityTable
from saeseeds.analysis.tables.subspaces import SubspaceAnalysis, SubspaceTable
from saeseeds.analysis.tables.triggers import TriggerAnalysis, TriggerTable
from saeseeds.analysis.triggers import sparse_from_code
from saeseeds.atomic import atomic_dir
from saeseeds.errors import DataError
from saeseeds.names import name_problem, safe_slug
from saeseeds.outputs import mark_output
from saeseeds.records import relative_path, write_record
from saeseeds.sae.model import SparseAutoencoder

FORMAT = "saeseeds.analyze/1"
"""analysis.json's schema: `saeseeds analyze`'s output directory."""
KIND = "analyze"
"""The output marker of that directory (`saeseeds.outputs`)."""

__all__ = ["ANALYSES", "CLAIMS_ESTIMATOR", "KIND", "AnalyzeOptions", "ConfigAnalysis", "analyze_config", "result_for",
           "write_analysis", "write_results"]

ANALYSES: tuple[type[Analysis], ...] = (
    StabilityAnalysis, TriggerAnalysis, AblationAnalysis, SubspaceAnalysis, ClaimsAnalysis,
)
"""Every analysis of a configuration, in the order their files are written (each runs after what it `needs`)."""


@dataclass
class ConfigAnalysis:
    """Everything measured for one configuration: one typed result per analysis (`ANALYSES`), and what the run
    adds (its analysis tokens, the time it took, Holm over the run's configurations)."""

    hookpoint: str
    sae_name: str
    seeds: list[int]
    stability: StabilityTable | None = None
    triggers: TriggerTable | None = None
    ablation: AblationTable | None = None
    subspaces: SubspaceTable | None = None
    claims: Claims | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None
    analysis_tokens: dict[str, Any] | None = None
    run_holm: dict[str, Any] | None = None


def analyze_config(
    hookpoint: str,
    sae_name: str,
    seeds: Sequence[int],
    saes: Sequence[SparseAutoencoder],
    data: EvalData,
    opts: AnalyzeOptions,
    cross: CrossSeedResult,
    *,
    hook_input: bool = False,
    tokens: EvalData | None = None,
) -> ConfigAnalysis:
    """Run every analysis for one configuration; every seed is a base for the verdicts (seed 0 for contexts).

    `data` is the held-out set (model-based ablation); `tokens` the analysis tokens for firing, triggers and
    ablation FVU (default: `data`). Stability comes from `cross` (judged by `opts.rule`): nothing is aligned.
    """
    check_seeds(f"{hookpoint}/{sae_name}", saes, cross)
    inputs = Inputs(hookpoint, sae_name, list(seeds), list(saes), data, tokens if tokens is not None else data, opts,
                    cross, hook_input)
    res = ConfigAnalysis(hookpoint, sae_name, list(seeds))
    analyses = [cls(inputs) for cls in ANALYSES]
    clock = time.perf_counter()
    with torch.no_grad():
        for batch in encoded_batches(inputs):
            for analysis in analyses:
                analysis.update(batch)
    res.timings_s["encode"] = time.perf_counter() - clock
    for analysis in in_order(analyses):
        clock = time.perf_counter()
        setattr(res, analysis.name, analysis.result(res))
        res.timings_s[analysis.name] = time.perf_counter() - clock
    return res


def result_for(seed_set: SeedSet, results: Sequence[CrossSeedResult]) -> CrossSeedResult:
    """The cross-seed result of a seed set (same configuration and seeds); `check_seeds` then checks that it was
    computed on these very checkpoints (weight digests)."""
    for result in results:
        if (result.hookpoint, result.sae_name) == (seed_set.hookpoint, seed_set.sae_name) and \
                result.names == list(seed_set.names):
            return result
    raise DataError(f"{seed_set.label}: no cross-seed result for this configuration and its seeds "
                    f"{list(seed_set.names)} among {[r.label for r in results]}")


def check_seeds(label: str, saes: Sequence[SparseAutoencoder], cross: CrossSeedResult) -> None:
    """DataError unless there are two seeds or more and `cross` is their cross-seed result (count, sizes and, where
    it recorded them, the digests of the weights it aligned)."""
    if len(saes) < 2:
        raise DataError(f"{label}: stability needs at least two seeds, found {len(saes)}")
    if cross.num_seeds != len(saes) or cross.num_latents != [s.num_latents for s in saes]:
        raise DataError(
            f"{label}: the cross-seed result has {cross.num_seeds} seeds of sizes "
            f"{cross.num_latents}, the analysis got {len(saes)} of sizes {[s.num_latents for s in saes]}"
        )
    if not same_weights(cross, saes):
        raise DataError(f"{label}: the cross-seed result was computed on other weights than the checkpoints now in "
                        "the run (digests differ); run compare again")


def encoded_batches(inputs: Inputs) -> Iterator[Batch]:
    """Each batch of analysis tokens, encoded once by every seed's SAE (call under `torch.no_grad`)."""
    for x, batch in zip(inputs.tokens.acts(inputs.hookpoint), inputs.tokens.batches):
        token_ids = batch.token_ids if batch.token_ids is not None else torch.zeros(x.shape[0], dtype=torch.long)
        codes = []
        for sae in inputs.saes:
            code = sae.encode(x.to(sae.device))
            codes.append(SeedCode(sparse_from_code(*code), code))
        yield Batch(x.to(inputs.saes[0].device), token_ids, batch.positions, codes)


def in_order(analyses: Sequence[Any]) -> list[Any]:
    """The analyses in `ANALYSES` order, each moved after the analyses it `needs`."""
    done: set[str] = set()
    ordered: list[Any] = []
    pending = list(analyses)
    while pending:
        ready = next((a for a in pending if set(a.needs) <= done), None)
        if ready is None:
            raise DataError(f"analyses {[a.name for a in pending]} need each other or an analysis not listed")
        pending.remove(ready)
        ordered.append(ready)
        done.add(ready.name)
    return ordered


def write_results(res: ConfigAnalysis, target: Path) -> list[str]:
    """The one writer of a configuration's results: `<name>.json` per analysis (`ANALYSES` order), then
    latents.json (the first seed's per-latent stability and trigger statistics); returns the file names."""
    files = write_tables(res, [cls.name for cls in ANALYSES], target)
    assert res.stability is not None and res.triggers is not None
    latents = {"seed": res.seeds[0], "stability": res.stability.groups[0].stability.tolist(),
               **res.triggers.stats[0].table()}
    write_record(target / "latents.json", "saeseeds.latents/1", latents)
    return [*files, "latents.json"]


def write_analysis(run_dir: Path, analyses: Sequence[ConfigAnalysis], out: Path, *,
                   draw: Callable[[ConfigAnalysis, Path], list[str]] | None = None,
                   cross: Sequence[CrossSeedResult] | None = None) -> None:
    """Write `saeseeds analyze`'s output directory (swapped in whole): every configuration's results
    (`write_results`) and, with `draw` (the report's figure and page drawer, injected), its figures;
    analysis.json; and `cross_seed/<slug>/` for cross-seed results computed by the analysis itself."""
    with atomic_dir(out) as tmp:
        mark_output(tmp, KIND)
        summary: dict[str, Any] = {"run_dir": relative_path(run_dir, tmp), "configs": {}}  # tmp lies beside out
        if analyses:
            summary["analysis_tokens"] = analyses[0].analysis_tokens
            summary["holm_run"] = analyses[0].run_holm
        for res in analyses:
            rel = Path(_safe(res.hookpoint)) / _safe(res.sae_name)
            files = write_results(res, tmp / rel) + (draw(res, tmp / rel) if draw is not None else [])
            summary["configs"][f"{res.hookpoint}/{res.sae_name}"] = {
                "dir": str(rel), "seeds": res.seeds, "seconds": res.seconds, "timings_s": res.timings_s,
                "files": files, "analysis_tokens": res.analysis_tokens,
                "claims": {name: verdict.brief() for name, verdict in res.claims.items()},
            }
        for result in cross or []:
            result.save(tmp / "cross_seed" / safe_slug(result.label))
        write_record(tmp / "analysis.json", FORMAT, summary)


def _safe(name: str) -> str:
    """A path component from a hookpoint or SAE name (saeseeds.names.safe_slug: it never leaves or hides)."""
    return name if name_problem(name) is None else safe_slug(name)
