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
from typing import Any

import torch
from torch import Tensor

from saeseeds.align.cross_seed import CrossSeedResult, SeedSet, weights_digest
from saeseeds.align.pair import sae_weights
from saeseeds.analysis.eval_data import EvalData, load_eval_data
from saeseeds.analysis.instability import AnalyzeOptions, ConfigAnalysis, analyze_config
from saeseeds.analysis.token_budget import analysis_tokens
from saeseeds.analysis.token_budget import describe as describe_tokens
from saeseeds.analysis.verdicts import run_level_holm
from saeseeds.api.comparison import compare_all, load_comparison
from saeseeds.api.discovery import slug
from saeseeds.atomic import atomic_dir
from saeseeds.errors import CheckpointError, DataError
from saeseeds.names import name_problem, safe_slug
from saeseeds.outputs import check_output_dir, mark_output
from saeseeds.records import relative_path, write_record
from saeseeds.sae import load_sae
from saeseeds.training.run_dir import Run

FORMAT = "saeseeds.analyze/1"
TABLES = ("stability", "triggers", "ablation", "subspaces", "claims")
"""Per-configuration JSON tables; each file `<name>.json` has schema `saeseeds.<name>/1` (and latents.json)."""
KIND = "analyze"
log = logging.getLogger(__name__)


def analyze(
    run_dir: Run | str | Path,
    *,
    cross: Sequence[CrossSeedResult] | str | Path | None = None,
    options: AnalyzeOptions | None = None,
    configs: Sequence[str] = (),
    eval_data: EvalData | None = None,
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
    re-running the LM for them. By default no LM or model forward runs. `eval_data`, when given, is used as the held-out set.
    The claims are judged with `options.rule`'s stability estimator (default: Gerasimov et al.'s `reappears`)
    and, with `options.alternate`, with the other one beside it; Holm over all configurations together is added
    to each verdict (`run_holm`, `attach_run_holm`).
    Status lines go to `say` when given, else to the `saeseeds` logger; the results (verdicts, file written) to
    `say` too, else at DEBUG (the CLI prints them itself: `claim_line`).
    """
    status, result_line = (say, say) if say is not None else (log.info, log.debug)
    run = Run.open(run_dir)  # a run directory, or one line saying it is not
    sets = [s for s in run.seed_sets() if len(s) >= 2 and (not configs or s.sae_name in set(configs))]
    if not sets:
        named = f" named {list(configs)}" if configs else ""
        raise CheckpointError(f"{run.path}: no SAE configuration with two or more seeds to analyse{named}")
    if train_stream is None:  # training rows come from the run's data file: the one it was trained on, or refused
        run.check_data()
    opts = options or AnalyzeOptions()
    if out is not None:
        check_output_dir(out, KIND, overwrite=overwrite)
    computed = False
    if cross is None:
        results = compare_all(sets, rule=opts.rule, progress=opts.progress)
        computed = True
    else:
        results = load_comparison(cross) if isinstance(cross, (str, Path)) else list(cross)
    t0 = time.perf_counter()
    cfg = run.config
    if eval_data is None:
        # any model: a causal LM for LM loss, an encoder for output recovered
        eval_data = load_eval_data(run, need_model=opts.lm_loss, any_model=True, max_chunks=max_eval_chunks,
                                   progress=opts.progress)
    hook_input = bool(getattr(cfg.lm, "hook_input", False)) and cfg.data.source == "lm"
    tokens, token_info = analysis_tokens(run, eval_data, max_tokens=opts.max_tokens,
                                         lm_train_rows=opts.lm_train_rows, train_stream=train_stream,
                                         progress=opts.progress)
    status(f"evaluation data: {len(eval_data.batches)} held-out batches; {describe_tokens(token_info)}; hookpoints "
           f"{', '.join(eval_data.hookpoints)} ({time.perf_counter() - t0:.1f}s)")
    analyses = []
    for seed_set in sets:
        t1 = time.perf_counter()
        saes = [load_sae(p) for p in seed_set.paths]
        result = _matching_result(seed_set, saes, results)
        res = analyze_config(seed_set.hookpoint, seed_set.sae_name, [int(s) for s in seed_set.seeds if s is not None],
                             saes, eval_data, opts, result, hook_input=hook_input, tokens=tokens)
        res.tables["seconds"] = time.perf_counter() - t1
        res.tables["analysis_tokens"] = token_info
        analyses.append((res, result))
        status(f"{seed_set.hookpoint}/{seed_set.sae_name}: {len(saes)} seeds analysed in "
               f"{res.tables['seconds']:.1f}s")
        for claim, verdict in res.tables["claims"].items():
            result_line(f"  {claim_line(claim, verdict)}")
    attach_run_holm([a for a, _ in analyses], alpha=opts.alpha)
    if out is not None:
        write_analysis(run.path, [a for a, _ in analyses], Path(out),
                       cross=[r for _, r in analyses] if computed else None)
        result_line(f"wrote {Path(out) / 'analysis.json'}")
    return [a for a, _ in analyses]


STATES = {True: "holds", False: "does not hold", None: "undetermined"}


def claim_line(claim: str, verdict: Mapping[str, Any]) -> str:
    """One verdict of claims.json as a line: `unstable_rarer [reappears]: holds (p = 0.01, Holm 0.03)`, then the
    paper's descriptive answer where there is one, and the answer under the other stability estimator."""
    detail = (f"p = {verdict['p_value']:.3g}, Holm {verdict['p_holm']:.3g}" if verdict["holds"] is not None
              else verdict.get("reason", ""))
    estimator = (verdict.get("stability") or {}).get("estimator")
    line = f"{claim}{f' [{estimator}]' if estimator else ''}: {STATES[verdict['holds']]} ({detail})"
    desc = verdict.get("descriptive")
    if isinstance(desc, Mapping):
        share = desc.get("harm_share_stable")
        carried = f", stable carry {share['mean']:.0%} of the ablation harm" if isinstance(share, Mapping) else ""
        line += f"; as the paper states it: {STATES[desc.get('holds')]}{carried}"
    alt = verdict.get("alternate")
    if isinstance(alt, Mapping):
        line += f"; under {alt['stability']['estimator']}: {STATES[alt.get('holds')]}"
        if verdict.get("estimator_changes_answer"):
            line += f" (changes: {', '.join(verdict.get('estimator_changes') or ['the answer'])})"
    return line


def attach_run_holm(analyses: Sequence[ConfigAnalysis], *, alpha: float) -> dict[str, Any]:
    """Holm across the run's configurations (`verdicts.run_level_holm`): stored as `tables["run_holm"]` and, per
    claim, as `run_holm` beside the configuration-level verdict."""
    run = run_level_holm({f"{a.hookpoint}/{a.sae_name}": a.tables["claims"] for a in analyses}, alpha=alpha)
    for a in analyses:
        a.tables["run_holm"] = run
        for name, claim in a.tables["claims"].items():
            entry = run["claims"].get(f"{a.hookpoint}/{a.sae_name}: {name}")
            claim["run_holm"] = ({**entry, "family": run["family"]} if entry is not None else
                                 {"holds": None, "family": run["family"], "reason": "undetermined in its configuration"})
    return run


def _matching_result(seed_set: SeedSet, saes: list[Any], results: Sequence[CrossSeedResult]) -> CrossSeedResult:
    """The result for this seed set; its checkpoints must be the ones aligned (weight digests match)."""
    for result in results:
        if (result.hookpoint, result.sae_name) == (seed_set.hookpoint, seed_set.sae_name) and \
                result.names == list(seed_set.names):
            digests = [weights_digest(*sae_weights(s)) for s in saes]
            if result.digests and result.digests != digests:
                raise DataError(
                    f"{seed_set.label}: the cross-seed result was computed on other weights than the checkpoints "
                    "now in the run (digests differ); run compare again"
                )
            return result
    raise DataError(f"{seed_set.label}: no cross-seed result for this configuration and its seeds "
                    f"{list(seed_set.names)} among {[r.label for r in results]}")


def write_analysis(run_dir: Path, analyses: Sequence[ConfigAnalysis], out: Path,
                   cross: Sequence[CrossSeedResult] | None = None) -> None:
    """Write every configuration's tables, figures and page, and analysis.json, into `out` (swapped in whole)."""
    with atomic_dir(out) as tmp:
        mark_output(tmp, KIND)
        summary: dict[str, Any] = {"run_dir": relative_path(run_dir, tmp), "configs": {}}  # tmp lies beside out
        if analyses:
            summary["analysis_tokens"] = analyses[0].tables.get("analysis_tokens")
            summary["holm_run"] = analyses[0].tables.get("run_holm")
        for res in analyses:
            rel = Path(_safe(res.hookpoint)) / _safe(res.sae_name)
            files = write_config_outputs(res, tmp / rel)
            summary["configs"][f"{res.hookpoint}/{res.sae_name}"] = {
                "dir": str(rel), "seeds": res.seeds, "seconds": res.tables.get("seconds"),
                "timings_s": res.tables["timings_s"], "files": files,
                "analysis_tokens": res.tables.get("analysis_tokens"),
                "claims": {name: _brief(c) for name, c in res.tables["claims"].items()},
            }
        for result in cross or []:
            result.save(tmp / "cross_seed" / slug(result.label))
        write_record(tmp / "analysis.json", FORMAT, summary)


def _brief(claim: dict[str, Any]) -> dict[str, Any]:
    """A claim's verdict for analysis.json (claims.json holds the per-seed numbers)."""
    keys = ("paper", "question", "holds", "reason", "test", "p_value", "p_holm", "alpha", "effect_size", "control",
            "n", "run_holm", "estimator_changes_answer")
    out = {k: claim[k] for k in keys if k in claim}
    if "effect_size" in out:
        out["effect_size"] = {k: v for k, v in out["effect_size"].items() if k != "per_seed"}
    if "stability" in claim:
        out["stability"] = claim["stability"]["estimator"]
    if "descriptive" in claim:
        out["descriptive"] = {k: v for k, v in claim["descriptive"].items() if k in ("question", "holds", "reason")
                              or k.endswith("_share_stable") or k.endswith("_share_unstable")}
    if "alternate" in claim:
        alt = claim["alternate"]
        out["alternate"] = {"stability": alt["stability"]["estimator"], "holds": alt.get("holds"),
                            "p_value": alt.get("p_value"), "reason": alt.get("reason"),
                            "descriptive_holds": (alt.get("descriptive") or {}).get("holds")}
    return out


def write_config_outputs(res: ConfigAnalysis, target: Path) -> list[str]:
    """JSON tables, figures and the contexts page of one configuration; returns the file names."""
    from saeseeds.report.analysis_plots import (
        plot_ablation,
        plot_group_ranks,
        plot_principal_angle_curves,
        plot_stability_vs_stat,
    )
    from saeseeds.report.contexts_html import LatentSection, write_contexts_page

    files = []
    for key in TABLES:
        write_record(target / f"{key}.json", f"saeseeds.{key}/1", res.tables[key])
        files.append(f"{key}.json")
    base = res.stability[0]
    latents = {"seed": res.seeds[0], "stability": base.stability.tolist(), **res.triggers[0].table()}
    write_record(target / "latents.json", "saeseeds.latents/1", latents)
    files.append("latents.json")
    stab = torch.cat([torch.from_numpy(g.stability) for g in res.stability])
    fired = torch.cat([t.fire_count for t in res.triggers]) > 0
    freq = torch.cat([t.frequency for t in res.triggers])
    config = f"{res.hookpoint}/{res.sae_name}"  # named in every figure's title
    plot_stability_vs_stat(stab[fired], freq[fired], target / "stability_vs_frequency.png",
                           ylabel="firing frequency", log=True, config=config)
    files.append("stability_vs_frequency.png")
    if "contexts" in res.tables:  # token statistics exist
        for stat, label in (("top_token_share", "top token share"), ("entropy", "trigger entropy (nats)")):
            vals = torch.cat([getattr(t, stat) for t in res.triggers])
            plot_stability_vs_stat(stab[fired], vals[fired], target / f"stability_vs_{stat}.png", ylabel=label,
                                   config=config)
            files.append(f"stability_vs_{stat}.png")
    rows = res.tables["ablation"]["rows"]
    for metric in ("fvu", "loss_recovered", "kl", "output_recovered"):
        if rows and metric in rows[0]["metrics"]:
            plot_ablation(rows, metric, target / f"ablation_{metric}.png", config=config)
            files.append(f"ablation_{metric}.png")
    sub = res.tables["subspaces"]
    if "overlaps" in sub:
        curves = {k: v["cos2_curve"] for k, v in sub["overlaps"].items()}
        plot_principal_angle_curves(curves, target / "principal_angles.png",
                                    analytic={"r/d": sub["expected_random_mean_cos2"]}, config=config)
        files.append("principal_angles.png")
        grp = sub["groups"]["groups"]
        plot_group_ranks([g["size"] for g in grp], [g["rank90"] for g in grp], target / "group_ranks.png",
                         config=config)
        files.append("group_ranks.png")
    if res.contexts:
        def section(latent: int) -> LatentSection:
            t = res.triggers[0]
            line = (f"stability {float(base.stability[latent]):.2f} · frequency {float(t.frequency[latent]):.2e} · "
                    f"top-token share {float(t.top_token_share[latent]):.2f} · entropy {float(t.entropy[latent]):.2f}")
            return LatentSection(latent, line, res.contexts.get(latent, []))

        ctx = res.tables["contexts"]
        write_contexts_page(
            target / "contexts.html", f"{res.hookpoint} / {res.sae_name} (seed {res.seeds[0]})",
            {"least stable": [section(i) for i in ctx["least_stable"]],
             "most stable": [section(i) for i in ctx["most_stable"]]},
        )
        files.append("contexts.html")
    return files


def _safe(name: str) -> str:
    """A path component from a hookpoint or SAE name (saeseeds.names.safe_slug: it never leaves or hides)."""
    return name if name_problem(name) is None else safe_slug(name)

