"""Why latents are unstable, for every configuration of a run: reads the cross-seed result (never re-aligns
when one is given) and the run's stored held-out set, runs the analyses, writes JSON tables, figures and the
contexts page.

Output layout (schema `saeseeds.analyze/1`): `analysis.json` (run_dir relative to it; per configuration: verdicts,
timings, files), `<hookpoint>/<sae-name>/` (stability.json, triggers.json, ablation.json, subspaces.json,
claims.json, latents.json: schemas `saeseeds.<name>/1`; figures, contexts.html) and `cross_seed/<slug>/` when the
cross-seed result was computed here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from torch import Tensor

from saeseeds.align.cross_seed import CrossSeedResult
from saeseeds.analysis.eval_data import with_model
from saeseeds.analysis.instability import (
    KIND,
    AnalyzeOptions,
    ConfigAnalysis,
    analyze_config,
    result_for,
    write_analysis,
)
from saeseeds.analysis.tables.claims import attach_run_holm
from saeseeds.analysis.token_budget import analysis_tokens
from saeseeds.analysis.token_budget import describe as describe_tokens
from saeseeds.api.comparison import compare_all, load_comparison
from saeseeds.errors import CheckpointError
from saeseeds.outputs import check_output_dir
from saeseeds.sae import load_sae
from saeseeds.training.run_dir import Run

log = logging.getLogger(__name__)


def analyze(
    run_dir: Run | str | Path,
    *,
    cross: Sequence[CrossSeedResult] | str | Path | None = None,
    options: AnalyzeOptions | None = None,
    configs: Sequence[str] = (),
    max_eval_chunks: int = 0,
    out: str | Path | None = None,
    overwrite: bool = False,
    say: Callable[[str], None] | None = None,
    train_stream: Iterable[Mapping[str, Tensor]] | None = None,
) -> list[ConfigAnalysis]:
    """Analyse every configuration of a run (or those named in `configs`).

    `cross`: the cross-seed results (objects, or a `compare` output directory) — then nothing is aligned; when
    None the run's seed sets are aligned here once. The rule of `options` re-judges a stored result (no new
    alignment unless signed/absolute differs, which is an error). With `out`, results are written there.

    Firing, trigger and ablation statistics use `options.max_tokens` analysis tokens: the held-out rows, then
    distinct training rows (`saeseeds.analysis.token_budget`); an LM run's training rows only with
    `options.lm_train_rows`, and `train_stream` (the run's training stream, e.g. an in-memory replay) then saves
    re-running the LM for them. By default no LM or model forward runs.
    The claims are judged with `options.rule`'s stability estimator (default: Gerasimov et al.'s `reappears`)
    and, with `options.alternate`, with the other one beside it; Holm over all configurations together is added
    to each verdict (`run_holm`, `tables.claims.attach_run_holm`).
    Status lines go to `say` when given, else to the `saeseeds` logger; the results (verdicts, file written) to
    `say` too, else at DEBUG (the CLI prints them itself: `Verdict.line`).
    """
    status, result_line = (say, say) if say is not None else (log.info, log.debug)
    opts = options or AnalyzeOptions()
    run = Run.open(run_dir)  # a run directory, or one line saying it is not; its data is read here, once
    sets = [s for s in run.seed_sets() if len(s) >= 2 and (not configs or s.sae_name in set(configs))]
    if not sets:
        named = f" named {list(configs)}" if configs else ""
        raise CheckpointError(f"{run.path}: no SAE configuration with two or more seeds to analyse{named}")
    t0 = time.perf_counter()
    # training rows come from the run's data file (unless replayed): the one it was trained on, or refused now
    held_out = run.held_out(max_chunks=max_eval_chunks, progress=opts.progress, check_data=train_stream is None)
    read_s = time.perf_counter() - t0
    if out is not None:
        check_output_dir(out, KIND, overwrite=overwrite)
    computed = cross is None
    if cross is None:
        results = compare_all(sets, rule=opts.rule, progress=opts.progress)
    else:
        results = load_comparison(cross) if isinstance(cross, (str, Path)) else list(cross)
    t0 = time.perf_counter()
    # any model: a causal LM for LM loss, an encoder for output recovered
    held_out = with_model(held_out, run, need_model=opts.lm_loss, any_model=True)
    tokens, token_info = analysis_tokens(run, held_out, max_tokens=opts.max_tokens,
                                         lm_train_rows=opts.lm_train_rows, train_stream=train_stream,
                                         progress=opts.progress)
    status(f"evaluation data: {len(held_out.batches)} held-out batches; {describe_tokens(token_info)}; hookpoints "
           f"{', '.join(held_out.hookpoints)} ({read_s + time.perf_counter() - t0:.1f}s)")
    cfg = run.config
    hook_input = bool(getattr(cfg.lm, "hook_input", False)) and cfg.data.source == "lm"
    analyses = []
    for seed_set in sets:
        t1 = time.perf_counter()
        saes = [load_sae(p) for p in seed_set.paths]
        result = result_for(seed_set, results)
        res = analyze_config(seed_set.hookpoint, seed_set.sae_name, [int(s) for s in seed_set.seeds if s is not None],
                             saes, held_out, opts, result, hook_input=hook_input, tokens=tokens)
        res.seconds, res.analysis_tokens = time.perf_counter() - t1, token_info
        analyses.append((res, result))
        status(f"{seed_set.hookpoint}/{seed_set.sae_name}: {len(saes)} seeds analysed in {res.seconds:.1f}s")
        for name, verdict in res.claims.items():
            result_line(f"  {verdict.line(name)}")
    run_holm = attach_run_holm({f"{a.hookpoint}/{a.sae_name}": a.claims for a, _ in analyses}, alpha=opts.alpha)
    for a, _ in analyses:
        a.run_holm = run_holm
    if out is not None:
        # the report draws the figures (matplotlib imported only now)
        from saeseeds.report.analysis_plots import draw_config

        write_analysis(run.path, [a for a, _ in analyses], Path(out), draw=draw_config,
                       cross=[r for _, r in analyses] if computed else None)
        result_line(f"wrote {Path(out) / 'analysis.json'}")
    return [a for a, _ in analyses]
