"""The synthetic experiment's measurement: each configuration of a run trained on known ground truth, aligned
across its seeds and scored against that truth (feature and subspace recovery; the composed model's classes).

It reads a finished run and returns numbers; training the run, the figures and the files are
`saeseeds.api.synthetic_experiment`'s (docs/synthetic.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from saeseeds.align.cross_seed import CrossSeedResult, align_seeds
from saeseeds.align.pair import sae_weights
from saeseeds.align.sharing import SharingRule
from saeseeds.analysis.composed import ComposedClassification, classify_latents, summarize_composed
from saeseeds.analysis.recovery import RecoveryResult, evaluate_recovery, summarize_recovery
from saeseeds.analysis.subspace_angles import random_subspace_angles
from saeseeds.data.synthetic import GroundTruth, SyntheticModel, derive_seed
from saeseeds.errors import CheckpointError
from saeseeds.sae import load_sae
from saeseeds.training.run_dir import Run, group_by_config

GROUP_INPUT_ROWS = 200_000
"""Rows drawn to collect each group's pure inputs (about rows · firing probability per group)."""
LIVENESS_ROWS = 16_384
"""Composed model: evaluation rows on which a latent must fire at least once to count as alive."""
COMPOSED_THRESHOLD = 0.9
"""Composed model: decoder cosine at which a latent counts as aligned with a true or composed direction."""
log = logging.getLogger(__name__)


@dataclass
class ConfigRecovery:
    """One configuration's seeds scored against the ground truth."""

    hookpoint: str
    sae_name: str
    cross: CrossSeedResult
    result: RecoveryResult
    summary: dict[str, Any]
    """JSON-ready: `summarize_recovery`'s, with `seeds` and (composed model) `composed`."""
    classes: list[ComposedClassification] | None = None
    """Composed model: each seed's latent classes."""

    @property
    def key(self) -> str:
        """`hookpoint/sae_name`, the configuration's name in recovery.json."""
        return f"{self.hookpoint}/{self.sae_name}"


def check_ground_truth(run: Run, truth: GroundTruth) -> None:
    """CheckpointError unless `run` was trained on `truth` (the fingerprint its run.json records)."""
    recorded = run.data.get("ground_truth_sha256") or _find_key(run.manifest, "ground_truth_sha256")
    if recorded is None:
        raise CheckpointError(f"{run.path}: not a synthetic run (run.json records no ground truth)")
    if recorded != truth.fingerprint():
        raise CheckpointError(f"{run.path}: the run was trained on another ground truth than this config describes")


def _find_key(data: Any, key: str) -> Any:
    """First value of `key` anywhere in nested dicts (run.json's layout of the source info is the trainer's)."""
    if isinstance(data, dict):
        if key in data:
            return data[key]
        for value in data.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    return None


def random_baseline_deg(d_in: int, rank: int) -> float:
    """Median largest principal angle between a random rank-`rank` subspace and another, in `d_in` dimensions."""
    angles = random_subspace_angles(d_in, rank, rank, num_samples=200, generator=torch.Generator().manual_seed(0))
    return float(torch.rad2deg(angles.max(dim=1).values).median())


def recover_run(run: Run, model: SyntheticModel, rule: SharingRule) -> Iterator[ConfigRecovery]:
    """Score every configuration of the run with at least two seeds (one seed: a warning, and it is skipped)."""
    truth, composed = model.truth, model.cfg.kind == "composed"
    eval_generator = torch.Generator().manual_seed(derive_seed(model.cfg.seed, "eval"))
    group_inputs = [] if composed else model.group_inputs(GROUP_INPUT_ROWS, eval_generator)
    liveness_rows = model.sample(LIVENESS_ROWS, eval_generator) if composed else None
    for (hookpoint, sae_name), refs in group_by_config(run.checkpoints()).items():
        saes = [load_sae(ref.path) for ref in refs]
        if len(saes) < 2:
            log.warning("%s/%s: only %d seed; cross-seed sharing needs at least 2", hookpoint, sae_name, len(saes))
            continue
        weights = [sae_weights(s) for s in saes]
        cross = align_seeds(weights, [f"seed{ref.seed}" for ref in refs], rule=rule, label=f"{hookpoint}/{sae_name}",
                            hookpoint=hookpoint, sae_name=sae_name, paths=[ref.path for ref in refs])
        with torch.no_grad():
            result = evaluate_recovery(
                truth, weights, cross=cross, encoders=[s.encode_dense for s in saes], group_inputs=group_inputs,
            )
        summary = summarize_recovery(truth, result)
        summary["seeds"] = [ref.seed for ref in refs]
        classes = None
        if liveness_rows is not None:
            with torch.no_grad():
                alive = [(s.encode_dense(liveness_rows) > 0).any(dim=0).cpu() for s in saes]
            classes = [classify_latents(truth, dec, threshold=COMPOSED_THRESHOLD, alive=a)
                       for (dec, _), a in zip(weights, alive)]
            summary["composed"] = summarize_composed(truth, classes, cross, threshold=COMPOSED_THRESHOLD)
        yield ConfigRecovery(hookpoint, sae_name, cross, result, summary, classes)
