"""Train every SAE of a run config in lockstep (the Python face of `saeseeds train`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from saeseeds.config import RunConfig, apply_overrides, load_config
from saeseeds.data.sources import build_source
from saeseeds.data.types import SourcePair
from saeseeds.distributed import launched
from saeseeds.outputs import check_creatable, check_train_out, removed_if_failed_fresh
from saeseeds.training import TrainResult, train_run
from saeseeds.training.logging import check_sinks
from saeseeds.training.run_lock import run_worth_keeping
from saeseeds.training.trainer import check_out_dir

log = logging.getLogger(__name__)


def train(
    config: RunConfig | str | Path | None,
    out: str | Path,
    *,
    overrides: Sequence[str] = (),
    resume: bool = False,
    overwrite: bool = False,
    config_file: str | Path | None = None,
) -> TrainResult:
    """Train `config` (a RunConfig, a TOML path, or None for the defaults) into the run directory `out`.

    `overrides` are `--section.field value` strings applied on top of a file, as on the command line.
    `overwrite` replaces only an earlier saeseeds run in `out` (never other files, nor a run whose config or data
    lie inside it); bad data found before the first checkpoint removes a fresh `out` again. Every check of `out`
    and of the config's sinks runs before any data is read (an LM is never loaded for a run that cannot start).
    `config_file`: the TOML file a RunConfig `config` was read from (a path `config` is its own), which
    `overwrite` never lets the run replace.
    """
    if isinstance(config, RunConfig):
        cfg = apply_overrides(config, list(overrides)) if overrides else config
    else:
        cfg, config_file = load_config(config, list(overrides)), config
    out, config_file = Path(out), None if config_file is None else Path(config_file)
    check_creatable(out)
    check_train_out(out, cfg, config_file, overwrite=overwrite)  # recover; the run's inputs never inside it
    check_out_dir(out, resume=resume, overwrite=overwrite)  # refused mixes and a live writer (the run's lock)
    check_sinks(cfg.train)  # train.tensorboard / train.wandb_project without their package
    with launched(cfg.train.device) as world:  # under torchrun: members spread over ranks (docs/distributed.md)
        started = time.perf_counter()
        pair = build_source(cfg)
        log.debug("activation source %s ready in %.1fs", cfg.data.source, time.perf_counter() - started)
        # bad data found before the first checkpoint: a fresh out is removed again (docs/cli.md)
        with removed_if_failed_fresh(out, enabled=not resume and not world.active, keep=run_worth_keeping):
            return train_run(cfg, pair, out, resume=resume, overwrite=overwrite, on_complete=lm_loss_hook(cfg))


def lm_loss_hook(cfg: RunConfig) -> Callable[[Path, SourcePair], None] | None:
    """LM loss recovered of the finished run (<run>/lm_loss.json) with the source's own model: a causal-LM run
    with `train.lm_loss` on; None otherwise."""
    if not cfg.train.lm_loss or cfg.data.source not in ("lm", "cache"):
        return None

    def write(out: Path, pair: SourcePair) -> None:
        if pair.info.get("is_causal"):
            from saeseeds.analysis.lm_loss import write_lm_loss

            stream = getattr(pair.train, "stream", pair.train)  # a Replay wraps the LM stream
            write_lm_loss(out, getattr(stream, "model", None), progress=cfg.train.progress)

    return write
