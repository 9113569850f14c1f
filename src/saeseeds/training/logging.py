"""Training metrics where users already look: `<run>/metrics.jsonl` lines, TensorBoard event files, wandb.

The trainer makes one `TrainLogger` per run (`TrainLogger.create` in its `start()`), hands it every member's
step statistics, and calls `step_done()` after each step: every `log_every` steps the interval's means
(loss, FVU, L0, and the learning rate at the last step) go to every sink. Evaluations go to TensorBoard and wandb
through `log_eval` (the trainer writes their metrics.jsonl lines itself). The open interval's sums are part of the
trainer's committed state (`state()` / `restore()`), so a resumed run writes exactly the lines an uninterrupted
run would have written (docs/formats.md, metrics.jsonl).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from saeseeds.atomic import json_text
from saeseeds.errors import ConfigError
from saeseeds.run_layout import METRICS, TENSORBOARD_DIR, WANDB_DIR
from saeseeds.training.diskspace import disk_full_guard

WANDB_ID_FILE = "run_id"
TRAIN_FIELDS = ("loss", "fvu", "l0")
"""Per-step statistics averaged over the logging interval (`lr` is the value at the interval's last step)."""
MAX_LINES_PER_SAE = 1000
"""`train.log_every = 0` picks an interval that writes at most about this many lines per SAE."""
MIN_LOG_EVERY = 10
TENSORBOARD_MISSING = ("train.tensorboard = true needs the tensorboard package: pip install 'saeseeds[logging]' "
                       "(or pip install tensorboard)")


def wandb_missing(project: str) -> str:
    """The one-line error for `train.wandb_project` without wandb installed."""
    return (f"train.wandb_project = {project!r} needs the wandb package: pip install wandb "
            "(or set train.wandb_project = '' to log to metrics.jsonl only)")


def _available(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def check_sinks(train_cfg: Any) -> None:
    """ConfigError (one line) when the config asks for a sink whose package is missing; run before a run
    writes anything, so a refused run leaves no directory behind."""
    if train_cfg.tensorboard and not _available("tensorboard"):
        raise ConfigError(TENSORBOARD_MISSING)
    if train_cfg.wandb_project and not _available("wandb"):
        raise ConfigError(wandb_missing(train_cfg.wandb_project))


def resolve_log_every(log_every: int, total_steps: int) -> int:
    """The logging interval in steps: `log_every`, or max(10, total_steps // 1000) when it is 0."""
    return log_every if log_every > 0 else max(MIN_LOG_EVERY, total_steps // MAX_LINES_PER_SAE)


class Sink(Protocol):
    """Where logged scalars go. `scalars` maps '<hookpoint>/<name>/seed<k>' to {metric: value}."""

    def log(self, kind: str, step: int, scalars: Mapping[str, Mapping[str, float]]) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """Appends one `{"kind": "train", "step", "key", "loss", "fvu", "l0", "lr"}` line per SAE per log point."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def log(self, kind: str, step: int, scalars: Mapping[str, Mapping[str, float]]) -> None:
        if kind != "train":
            return  # evaluation lines are the trainer's (they also feed run.json)
        text = "".join(json_text({"kind": "train", "step": step, "key": key, **values}, indent=None)
                       for key, values in scalars.items())  # one line each; NaN is written as null
        append_text(self.path, text)

    def close(self) -> None:
        pass


def append_text(path: Path, text: str) -> None:
    """Append `text` (UTF-8) to metrics.jsonl; a full disk is one DiskFullError line (a resume rewrites the file)."""
    with disk_full_guard(path, len(text.encode("utf-8"))), open(path, "a", encoding="utf-8") as fh:
        fh.write(text)


class TensorBoardSink:
    """Scalars '<key>/<kind>/<metric>' in TensorBoard event files under `<run>/tensorboard/`."""

    def __init__(self, log_dir: Path, resume_step: int | None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ConfigError(TENSORBOARD_MISSING) from err
        # on resume, TensorBoard hides what the interrupted run logged after the resumed step
        purge = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge)

    def log(self, kind: str, step: int, scalars: Mapping[str, Mapping[str, float]]) -> None:
        for key, values in scalars.items():
            for name, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(f"{key}/{kind}/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    """One wandb run per saeseeds run (its id kept in `<run>/wandb/run_id`, so `--resume` continues it)."""

    def __init__(self, project: str, run_dir: Path, config: dict[str, Any], resume_step: int | None) -> None:
        try:
            import wandb
        except ImportError as err:
            raise ConfigError(wandb_missing(project)) from err
        directory = run_dir / WANDB_DIR
        directory.mkdir(parents=True, exist_ok=True)
        id_file = directory / WANDB_ID_FILE
        run_id = id_file.read_text().strip() if resume_step is not None and id_file.is_file() else None
        self.run = wandb.init(project=project, dir=str(run_dir), name=run_dir.resolve().name, config=config,
                              id=run_id or None, resume="allow")
        stored = getattr(self.run, "id", None) or run_id  # a new run: the id wandb made
        if stored:
            id_file.write_text(f"{stored}\n")

    def log(self, kind: str, step: int, scalars: Mapping[str, Mapping[str, float]]) -> None:
        data = {f"{key}/{kind}/{name}": value for key, values in scalars.items() for name, value in values.items()
                if isinstance(value, (int, float)) and math.isfinite(value)}
        self.run.log(data, step=step)

    def close(self) -> None:
        self.run.finish()


@dataclass
class TrainLogger:
    """Averages each SAE's step statistics over `every` steps and sends them to the sinks."""

    every: int
    sinks: list[Sink] = field(default_factory=list)
    gather: Callable[[Any], list[Any]] | None = None
    """Under torchrun: every rank's object on every rank (`World.gather_objects`); ranks log their own SAEs."""
    order: list[str] = field(default_factory=list)
    """Every SAE key of the run in run order (lines are written in it)."""
    sums: dict[str, list[float]] = field(default_factory=dict)
    """key → sums of TRAIN_FIELDS over the open interval."""
    lrs: dict[str, float] = field(default_factory=dict)
    count: int = 0
    """Steps in the open interval."""

    @classmethod
    def create(cls, run_dir: Path, train_cfg: Any, total_steps: int, *, resume_step: int | None,
               config: dict[str, Any], main: bool = True, gather: Callable[[Any], list[Any]] | None = None,
               order: list[str] | None = None) -> TrainLogger:
        """The logger a run's config asks for: metrics.jsonl always, TensorBoard and wandb when enabled
        (sinks only on the `main` rank; `gather` brings the other ranks' statistics to it)."""
        sinks: list[Sink] = []
        if main:
            sinks.append(JsonlSink(run_dir / METRICS))
            if train_cfg.tensorboard:
                sinks.append(TensorBoardSink(run_dir / TENSORBOARD_DIR, resume_step))
            if train_cfg.wandb_project:
                sinks.append(WandbSink(train_cfg.wandb_project, run_dir, config, resume_step))
        return cls(resolve_log_every(train_cfg.log_every, total_steps), sinks, gather, list(order or []))

    def record(self, key: str, loss: float, fvu: float, l0: float, lr: float) -> None:
        """Add one SAE's statistics of the current step (call `step_done` once all SAEs stepped)."""
        sums = self.sums.setdefault(key, [0.0, 0.0, 0.0])
        sums[0] += loss
        sums[1] += fvu
        sums[2] += l0
        self.lrs[key] = lr

    def step_done(self, step: int, total_steps: int) -> None:
        """Close the step; at every `every`-th step (and the last one) log the interval's means."""
        self.count += 1
        if step % self.every == 0 or step == total_steps:
            self.flush(step)

    def flush(self, step: int) -> None:
        """Log the open interval's means at `step` (nothing when it is empty) and start a new interval."""
        if not self.count:
            return
        scalars = self._merged({
            key: {name: total / self.count for name, total in zip(TRAIN_FIELDS, sums)} | {"lr": self.lrs[key]}
            for key, sums in self.sums.items()
        })
        for sink in self.sinks:
            sink.log("train", step, scalars)
        self.sums, self.lrs, self.count = {}, {}, 0

    def log_eval(self, step: int, records: Mapping[str, Mapping[str, float]]) -> None:
        """Evaluation metrics to TensorBoard / wandb (metrics.jsonl has them from the trainer already)."""
        for sink in self.sinks:
            sink.log("eval", step, records)

    def _merged(self, local: dict[str, Any]) -> dict[str, Any]:
        """`local` (this rank's SAEs) merged with the other ranks', in run order."""
        parts = self.gather(local) if self.gather is not None else [local]
        merged = {k: v for part in parts for k, v in part.items()}
        ordered = {k: merged[k] for k in self.order if k in merged}
        return ordered | {k: v for k, v in merged.items() if k not in ordered}

    def state(self) -> dict[str, Any]:
        """The open interval of every SAE of the run (collective under torchrun), committed with the trainer
        state so a resume continues it exactly."""
        return {"every": self.every, "count": self.count, "sums": self._merged(self.sums),
                "lrs": self._merged(self.lrs)}

    def restore(self, state: Mapping[str, Any] | None, keys: list[str]) -> None:
        """Continue the interval `state()` saved for the SAEs `keys` of this rank (an older run without one,
        or another interval length, starts a new interval)."""
        if not state or int(state.get("every", -1)) != self.every:
            return
        self.count = int(state["count"])
        self.sums = {k: [float(x) for x in v] for k, v in state["sums"].items() if k in keys}
        self.lrs = {k: float(v) for k, v in state["lrs"].items() if k in keys}

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
