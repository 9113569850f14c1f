"""Run a study from Python (the face of `saeseeds study`): train the grid, compare every milestone, aggregate."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from saeseeds.align.sharing import SharingRule
from saeseeds.study.runner import StudyResult, run_study


def study(
    config: str | Path,
    out: str | Path,
    *,
    overrides: Sequence[str] = (),
    rule: SharingRule | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str | None = None,
) -> StudyResult:
    """Run the study of the TOML `config` (its `[study]` axes over the base config) into `out`.

    `overrides` are `--section.field value` strings (`--study.k 8,16`, `--train.num_tokens 50000`); `resume`
    continues an interrupted study (finished passes and stored comparisons are kept, never redone).
    """
    return run_study(config, out, overrides=list(overrides), rule=rule, resume=resume, overwrite=overwrite,
                     device=device)
