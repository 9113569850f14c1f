"""Train every SAE of a run config in lockstep (the Python face of `saeseeds train`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from saeseeds.config import RunConfig, apply_overrides, load_config
from saeseeds.data.sources import build_source
from saeseeds.distributed import launched
from saeseeds.outputs import check_train_out, removed_if_failed_fresh, run_worth_keeping
from saeseeds.training import TrainResult, train_run


def train(
    config: RunConfig | str | Path | None,
    out: str | Path,
    *,
    overrides: Sequence[str] = (),
    resume: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Train `config` (a RunConfig, a TOML path, or None for the defaults) into the run directory `out`.

    `overrides` are `--section.field value` strings applied on top of a file, as on the command line.
    `overwrite` replaces only an earlier saeseeds run in `out` (never other files, nor a run whose config or data
    lie inside it); bad data found before the first checkpoint removes a fresh `out` again.
    """
    if isinstance(config, RunConfig):
        cfg = apply_overrides(config, list(overrides)) if overrides else config
    else:
        cfg = load_config(config, list(overrides))
    check_train_out(out, cfg, None if isinstance(config, RunConfig) else config, overwrite=overwrite)
    with launched(cfg.train.device) as world:  # under torchrun: joins the group, members spread over ranks
        pair = build_source(cfg)
        with removed_if_failed_fresh(out, enabled=not resume and not world.active,
                                     keep=run_worth_keeping):
            return train_run(cfg, pair, out, resume=resume, overwrite=overwrite)
