"""`ss.interpret`: explanations and detection scores for frequency-matched samples of shared / unshared and stable /
unstable latents, and the interpretability claims tested per seed (docs/definitions.md, "Interpretability").

Reads a run directory (aligning its seeds once, or a given `compare` output) or a compare, study or demo output
(`interpret.inputs`); contexts come from the run's stored held-out token rows and activations (no LM forward;
`analysis_tokens` adds an LM run's training rows only when asked). Output: `interpret.outputs` (docs/formats.md).
With `from_delphi`, the explanations and scores are those EleutherAI delphi wrote (`interpret.delphi`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saeseeds.align.sharing import SharingRule
from saeseeds.api.comparison import compare_all, load_comparison
from saeseeds.errors import CheckpointError, ConfigError, DataError
from saeseeds.interpret.choose import check_spec, choose
from saeseeds.interpret.contexts import Corpus, corpus_of
from saeseeds.interpret.delphi import read_delphi_seeds
from saeseeds.interpret.inputs import ACCEPTED, compare_dir_of, load_saes, run_of, set_dirs
from saeseeds.interpret.interface import Explainer, Scorer
from saeseeds.interpret.journal import Journal
from saeseeds.interpret.outputs import CACHE_DIR, check_out, open_out, write_output
from saeseeds.interpret.pipeline import (
    Backend,
    DelphiSource,
    InterpretOptions,
    SetRun,
    interpret_set,
)
from saeseeds.records import relative_path
from saeseeds.training.run_dir import Run

log = logging.getLogger(__name__)
LEXICAL = "lexical baseline"


@dataclass
class InterpretResult:
    """What `interpret` found: the record written as interpret.json, and one row per latent explained."""

    record: dict[str, Any]
    rows: list[dict[str, Any]]
    out: Path | None = None


def cross_seed_results(source: str | Path, *, compare: str | Path | None, rule: SharingRule,
                       configs: Sequence[str] = (), progress: bool = False,
                       say: Callable[[str], None] = lambda _m: None,
                       before_aligning: Callable[[list[Any]], None] = lambda _sets: None,
                       ) -> tuple[list[Any], dict[str, Any]]:
    """(results with at least two seeds, what was read: `source`, `compare` or `computed`); `before_aligning` sees
    the seed sets first (so a bad input is refused before minutes of alignment)."""
    source = Path(source)
    if not source.is_dir():
        raise CheckpointError(f"{source} does not exist or is not a directory ({ACCEPTED} is needed)")
    if Run.is_run(source):
        run = Run.open(source)
        if compare is None:
            sets = [s for s in run.seed_sets() if len(s) >= 2 and (not configs or s.sae_name in set(configs))]
            if not sets:
                raise CheckpointError(f"{run.path}: no SAE configuration with two or more seeds to interpret")
            before_aligning(sets)
            say(f"aligning the seeds of {len(sets)} configuration(s) (no --compare given)")
            results, where = compare_all(sets, rule=rule, progress=progress), {"computed": True}
        else:
            results, where = load_comparison(compare), {"compare": Path(compare)}
    else:
        if compare is not None:
            raise CheckpointError(f"--compare is for a run directory; {source} is an output that names its own")
        found = compare_dir_of(source)
        assert found is not None
        results, where = load_comparison(found), {"compare": found}
    if "compare" in where:
        where["set_dirs"] = set_dirs(where["compare"])
    results = [r for r in results if r.num_seeds >= 2 and (not configs or r.sae_name in set(configs))]
    if not results:
        named = f" named {list(configs)}" if configs else ""
        raise CheckpointError(f"{source}: no cross-seed result with two or more seeds{named}")
    return results, where


def _rows_of(run: Run, analysis_tokens: int | None, window: int, progress: bool
             ) -> tuple[Any, Corpus, dict[str, Any]]:
    """The run's analysis rows (stored held-out rows; training rows only when asked), their windows, and what was used."""
    from saeseeds.analysis.eval_data import load_eval_data

    data = load_eval_data(run, need_tokenizer=True)
    rows = sum(int(b.token_ids.numel()) for b in data.batches if b.token_ids is not None)
    info: dict[str, Any] = {"tokens": rows, "held_out_rows": rows, "train_rows": 0, "lm_forward": False,
                            "note": "the run's stored held-out rows only, no LM forward (more: --analysis-tokens N)"}
    if analysis_tokens:
        from saeseeds.analysis.token_budget import analysis_tokens as extend

        data, info = extend(run, data, max_tokens=analysis_tokens, lm_train_rows=True, progress=progress)
    if data.chunks is None:
        raise DataError(f"{run.path}: interpret needs the run's token ids, and this run stores none "
                        f"(source {run.data.get('source', '?')!r}: not a language-model run)")
    return data, corpus_of(data, window), info


def interpret(
    source: str | Path,
    *,
    out: str | Path | None = None,
    compare: str | Path | None = None,
    explainer: str | tuple[Explainer, Scorer] = "tokens",
    options: InterpretOptions | None = None,
    configs: Sequence[str] = (),
    analysis_tokens: int | None = None,
    overwrite: bool = False,
    backend_options: dict[str, Any] | None = None,
    from_delphi: str | Path | None = None,
    say: Callable[[str], None] | None = None,
) -> InterpretResult:
    """Interpret every configuration with two or more seeds (or those named in `configs`) of `source`.

    `explainer`: a spec (`tokens`, `hf:PATH`, `openai:URL[#MODEL]`) or an (Explainer, Scorer) pair. With `out`,
    every latent is journaled there as soon as it is scored, a rerun of the same call continues from the journal,
    and the finished output replaces `out` whole (`overwrite` replaces an earlier finished one).
    `from_delphi`: delphi's results/ folder (docs/ecosystem.md); its explanations and scores are used instead of
    `explainer`, and only the latents delphi scored are sampled.
    """
    status = say or log.info
    opts = options or InterpretOptions()
    t0 = time.perf_counter()
    if isinstance(explainer, str):
        check_spec(explainer)
    if from_delphi is not None:
        _check_delphi(from_delphi, explainer)
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        check_out(out_path, overwrite=overwrite)
    backend: tuple[Explainer, Scorer] | None = None
    if from_delphi is None:  # first: a model that cannot be used is refused before minutes of alignment
        backend = choose(explainer, cache_dir=out_path / CACHE_DIR if out_path else None,
                         **(backend_options or {})) if isinstance(explainer, str) else explainer
    delphi: dict[tuple[str, str, tuple[str, ...]], Any] = {}

    def read_delphi_of(sets: Sequence[Any]) -> None:
        for s in sets:
            key = (s.sae_name, s.hookpoint, tuple(s.names))
            if from_delphi is not None and key not in delphi:
                delphi[key] = read_delphi_seeds(from_delphi, s.sae_name, s.hookpoint, list(s.names))

    results, where = cross_seed_results(source, compare=compare, rule=opts.rule, configs=configs,
                                        progress=opts.progress, say=status, before_aligning=read_delphi_of)
    read_delphi_of(results)
    runs: dict[Path, tuple[Any, Corpus, dict[str, Any]]] = {}
    sets = []
    for result in results:
        run = run_of(result)
        if run.path not in runs:
            runs[run.path] = _rows_of(run, analysis_tokens, opts.sampling.window, opts.progress)
        data = runs[run.path][0]
        if result.hookpoint not in data.hookpoints:
            raise DataError(f"{result.label}: hookpoint {result.hookpoint!r} is not in {run.path}'s stored rows")
        sets.append((result, run, load_saes(result)))
    backends: list[Backend]
    if backend is None:
        backends = [DelphiSource("delphi", delphi[(r.sae_name, r.hookpoint, tuple(r.names))]) for r, _, _ in sets]
        name, scorer_name = "delphi", "delphi detection / fuzz"
    else:
        backends = [backend] * len(sets)
        name = getattr(backend[0], "name", type(backend[0]).__name__)
        scorer_name = getattr(backend[1], "name", type(backend[1]).__name__)
    lexical = name == "tokens"
    settings = {"explainer": name, "options": opts.to_dict(), "tokens": [v[2] for v in runs.values()],
                "sets": [[r.label, list(r.digests)] for r, _, _ in sets],
                **({"delphi": str(Path(from_delphi).resolve())} if from_delphi is not None else {})}
    journal = None
    done: dict[str, dict[str, Any]] = {}
    if out_path is not None:
        open_out(out_path)
        journal = Journal(out_path, settings)
        done = journal.load()
    records = {}
    for index, (result, run, saes) in enumerate(sets):
        data, corpus, _ = runs[run.path]
        work = SetRun(result.label, index, result, corpus, opts, done, journal, status)
        records[result.label] = interpret_set(work, saes, data, backends[index])
        rel = (lambda p: relative_path(p, out_path)) if out_path is not None else str
        records[result.label]["run_dir"] = rel(run.path)
        cross = where.get("set_dirs", {}).get(result.label)
        records[result.label]["cross_seed"] = rel(cross) if cross is not None else None
    record = {
        "explainer": {"name": name, "scorer": scorer_name, "lexical": lexical,
                      "label": LEXICAL if lexical else "LLM explanations (delphi)" if from_delphi is not None
                      else "LLM explanations"},
        "inputs": {**_inputs(source, where, out_path),
                   "delphi": (relative_path(from_delphi, out_path) if out_path is not None else str(from_delphi))
                   if from_delphi is not None else None},
        "analysis_rows": [{"run_dir": relative_path(p, out_path) if out_path else str(p), **v[2]}
                          for p, v in runs.items()],
        "options": opts.to_dict(),
        "sets": records,
        "seconds": time.perf_counter() - t0,
    }
    rows = [done[k] for k in sorted(done)]
    if out_path is not None:
        write_output(out_path, record, rows)
    return InterpretResult(record, rows, out_path)


def _check_delphi(root: str | Path, explainer: str | tuple[Explainer, Scorer]) -> None:
    """`from_delphi` is a directory and no explainer was asked for beside it (one line otherwise)."""
    if explainer != "tokens":
        raise ConfigError("--from-delphi and --explainer are alternatives: delphi's files hold the explanations")
    if not Path(root).is_dir():
        raise DataError(f"--from-delphi {root}: not a directory (give delphi's results/ folder)")


def _inputs(source: str | Path, where: dict[str, Any], out: Path | None) -> dict[str, Any]:
    """The source and the comparison read (paths relative to interpret.json), or that it was computed here."""
    rel = (lambda p: relative_path(p, out)) if out is not None else str
    return {"source": rel(source), "compare": rel(where["compare"]) if "compare" in where else None,
            "computed": bool(where.get("computed"))}
