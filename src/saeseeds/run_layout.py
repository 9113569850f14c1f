"""The names of a run directory, each defined once: the trainer writes through them, `saeseeds.training.run_dir.Run`
reads through them, and base modules (outputs, names) that only look at a folder use them too.

    <run>/run.json                                   MANIFEST (schema RUN_SCHEMA)
    <run>/metrics.jsonl                              METRICS
    <run>/<hookpoint>/<sae-name>/seed<N>/            one checkpoint per SAE (SEED_DIR)
    <run>/milestones/step<NNNNNNNN>/...              MILESTONES (the same layout inside)
    <run>/eval/                                      EVAL_DIR: the stored held-out set, latent frequencies
    <run>/.state/trainer.json                        STATE_DIR, POINTER: resume state
    <run>/.saeseeds-lock                             LOCK_FILE
    <run>/tensorboard/, <run>/wandb/                 TENSORBOARD_DIR, WANDB_DIR (optional metric sinks)
    <run>/ground_truth.*                             synthetic runs (saeseeds.data.synthetic owns those names)
    <run>/lm_loss.json                               LM_LOSS (causal-LM runs, train.lm_loss)
    <run>/init_sample.safetensors                    INIT_SAMPLE (runs whose SAEs need data to initialise)
"""

from __future__ import annotations

import re
from pathlib import Path

MANIFEST = "run.json"
RUN_SCHEMA = "saeseeds.run/1"
"""run.json's `schema` (runs written before it have none; they read the same)."""
METRICS = "metrics.jsonl"
MILESTONES = "milestones"
EVAL_DIR = "eval"
LATENT_FREQUENCIES = f"{EVAL_DIR}/latents.safetensors"
"""Every SAE's per-latent firing frequency on the held-out set, one float64 tensor per `<hookpoint>/<name>/seed<N>`
(written by `training.eval_store` at each eval, read by `training.run_dir`)."""
STATE_DIR = ".state"
POINTER = "trainer.json"
"""The resume pointer inside STATE_DIR."""
STATE_SET = re.compile(r"step-\d+-[0-9a-f]{8}")
"""A state set's directory name inside STATE_DIR (`saeseeds.training.state.new_set_name`)."""
LOCK_FILE = ".saeseeds-lock"
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
LM_LOSS = "lm_loss.json"
"""Each SAE spliced into the run's causal LM on the stored held-out chunks (`saeseeds.analysis.lm_loss`)."""
INIT_SAMPLE = "init_sample.safetensors"
"""The first `train.init_sample_tokens` rows of the training stream, raw, one tensor per hookpoint
(`saeseeds.training.init_sample`): what data-dependent initialisation and rasae's candidates are computed from."""
CHECKPOINT_CONFIG = "cfg.json"
"""The file that makes a folder a checkpoint (sparsify layout)."""
RUN_TOP_LEVEL = frozenset({EVAL_DIR, MILESTONES, TENSORBOARD_DIR, WANDB_DIR, MANIFEST, METRICS, INIT_SAMPLE})
"""What a run directory holds beside its hookpoint folders (its `.state/` is hidden, so refused anyway): a
hookpoint of one of these names would mix its checkpoints with the run's own files."""
SEED_DIR = re.compile(r"^seed(-?\d+)$")
"""A seed's checkpoint folder: `seed<N>`."""


def seed_dir_name(seed: int) -> str:
    """`seed<N>`: the folder of one seed's checkpoint."""
    return f"seed{int(seed)}"


def milestone_dir(run_dir: str | Path, step: int) -> Path:
    """`<run>/milestones/step<NNNNNNNN>`: the copy of every SAE at a `train.milestones` step (run layout inside)."""
    return Path(run_dir) / MILESTONES / f"step{step:08d}"
