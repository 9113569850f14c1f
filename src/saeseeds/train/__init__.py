"""The lockstep multi-seed trainer, its run directory and resume."""

from saeseeds.train.run_dir import CheckpointRef, list_checkpoints, read_manifest
from saeseeds.train.trainer import TrainResult, train_run

__all__ = ["CheckpointRef", "TrainResult", "list_checkpoints", "read_manifest", "train_run"]
