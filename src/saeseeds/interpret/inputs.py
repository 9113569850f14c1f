"""What `interpret` reads: the cross-seed results and the run each belongs to, from any of the outputs a user has.

- a run directory: its seed sets are aligned once (`api/interpret.py: cross_seed_results`, through
  `api.comparison.compare_all`), unless `compare` (a compare output of this run) is given;
- a compare output: its stored results;
- a demo output: its summary.json's `outputs.compare` (the comparison at the end of training);
- a study output: study.json's last milestone's `compare` (the end of training).

Each result's run is the run holding its checkpoints (`Run.containing`); its SAEs are loaded from the result's own
checkpoint paths and must have the weight digests the result records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saeseeds.errors import CheckpointError, DataError
from saeseeds.outputs import output_kind
from saeseeds.records import read_record, resolve_path
from saeseeds.training.run_dir import Run

ACCEPTED = "a run directory, or a saeseeds compare, study or demo output"


def compare_dir_of(source: Path) -> Path | None:
    """The comparison a compare, demo or study output points to (None for a run directory)."""
    kind = output_kind(source)
    if kind == "compare":
        return source
    if kind == "demo":
        summary = read_record(source / "summary.json", "saeseeds.demo/1", f"{source}: the demo's summary.json is "
                              "missing (an unfinished demo?)")
        compare = (summary.get("outputs") or {}).get("compare")
        if not compare:
            raise DataError(f"{source / 'summary.json'}: outputs.compare is missing")
        return resolve_path(compare, source)
    if kind == "study":
        study = read_record(source / "study.json", "saeseeds.study/1", f"{source}: study.json is missing (an "
                            "unfinished study?)")
        done = [m for m in study.get("milestones") or [] if m.get("compare")]
        if not done:
            raise DataError(f"{source / 'study.json'}: no milestone has a comparison yet")
        return resolve_path(max(done, key=lambda m: m.get("step", 0))["compare"], source)
    raise CheckpointError(f"{source} is not {ACCEPTED}")


def set_dirs(compare: Path) -> dict[str, Path]:
    """Each set label of a compare output → its cross-seed result's directory (what the report's latent pages read)."""
    summary = read_record(Path(compare) / "summary.json", "saeseeds.compare/1", f"{compare} is not a compare output")
    return {str(s.get("label", "")): resolve_path(str(s.get("dir", "")), compare) for s in summary.get("sets", [])}


def run_of(result: Any) -> Run:
    """The run whose checkpoints the result aligned."""
    if not result.paths:
        raise DataError(f"{result.label}: the cross-seed result names no checkpoints, so its run is unknown")
    run = Run.containing(result.paths[0])
    if run is None:
        raise DataError(f"{result.label}: {result.paths[0]} is not inside a run directory (interpret needs the "
                        "run's stored rows)")
    return run


def load_saes(result: Any) -> list[Any]:
    """The result's SAEs from its own checkpoint paths; DataError when their weights are not the ones aligned."""
    from saeseeds.align.cross_seed import same_weights
    from saeseeds.sae import load_sae

    saes = [load_sae(p) for p in result.paths]
    if not same_weights(result, saes):
        raise DataError(f"{result.label}: the checkpoints are not the weights the cross-seed result aligned "
                        "(digests differ); run compare again")
    return saes
