"""Train every SAE of a run config in lockstep (the Python face of `saeseeds train`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from saeseeds.config import RunConfig, apply_overrides, load_config
from saeseeds.data.sources import build_source
from saeseeds.distributed import launched
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
    """
    if isinstance(config, RunConfig):
        cfg = apply_overrides(config, list(overrides)) if overrides else config
    else:
        cfg = load_config(config, list(overrides))
    with launched(cfg.train.device):  # under torchrun: joins the group, members spread over ranks
        return train_run(cfg, build_source(cfg), out, resume=resume, overwrite=overwrite)
