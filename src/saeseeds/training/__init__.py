"""The lockstep multi-seed trainer, its run directory (checkpoints, held-out set, resumable state) and resume."""

from saeseeds.training.run_dir import (
    CheckpointRef,
    list_checkpoints,
    load_latent_frequencies,
    read_manifest,
)
from saeseeds.training.trainer import TrainResult, train_run

__all__ = ["CheckpointRef", "TrainResult", "list_checkpoints", "load_latent_frequencies", "read_manifest", "train_run"]
