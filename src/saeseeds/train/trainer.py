"""The lockstep trainer: every SAE of a run (seeds × configurations × hookpoints) steps on the same batch in turn.

Each SAE keeps its own parameters, optimizer and counters, so training S seeds together gives exactly the
parameters of S separate runs on the same stream; the data is read (or the LM run) once for all of them.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from saeseeds import __version__
from saeseeds.atomic import atomic_write, atomic_write_json
from saeseeds.config import RunConfig, to_dict
from saeseeds.data.arrays import check_batch
from saeseeds.data.batching import rebatch
from saeseeds.data.sources import SourcePair, as_mapping
from saeseeds.errors import CheckpointError, DataError
from saeseeds.sae.checkpoint import fold_input_scale, save_sae
from saeseeds.train.evaluate import evaluate_sae
from saeseeds.train.fingerprint import DataFingerprint, fingerprint_batches
from saeseeds.train.member import Member
from saeseeds.train.run_dir import MANIFEST, STATE_DIR, checkpoint_dir, read_manifest


class TrainResult(NamedTuple):
    """Where the run is and what it did."""

    run_dir: Path
    steps: int
    tokens: int
    fingerprint: str
    metrics: dict[str, dict[str, float | int]]


def resolve_device(name: str) -> torch.device:
    """'auto' → the first CUDA device if present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def library_versions() -> dict[str, str]:
    """Versions recorded in run.json so a result can be reproduced (read from metadata: no slow imports)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"saeseeds": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for package in ("numpy", "scipy", "safetensors", "transformers"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _input_scale(x: Tensor) -> float:
    """Constant that makes the mean squared norm of the rows equal to d_in."""
    mean_sq = float(x.double().pow(2).sum(-1).mean())
    if mean_sq <= 0:
        raise DataError("the first batch of activations is all zeros; cannot normalise")
    return (x.shape[1] / mean_sq) ** 0.5


class _Run:
    """State of one training run while it is in progress."""

    def __init__(self, cfg: RunConfig, pair: SourcePair, out_dir: Path, resume: bool) -> None:
        self.cfg = cfg
        self.pair = pair
        self.out = Path(out_dir)
        self.resume = resume
        self.device = resolve_device(cfg.train.device)
        self.members: list[Member] = []
        self.scales: dict[str, float] = {}
        self.d_in: dict[str, int] = {}
        self.fingerprint = DataFingerprint()
        self.step = 0
        self.history: dict[str, dict[str, float | int]] = {}
        self.eval_batches = [as_mapping(b, cfg.data.hookpoint) for b in pair.eval]
        self.eval_fingerprint = fingerprint_batches(self.eval_batches) if self.eval_batches else None

    # -------------------------------------------------------------- setup

    def check_out_dir(self) -> None:
        manifest = self.out / MANIFEST
        if self.resume:
            if not (self.out / STATE_DIR / "trainer.json").is_file():
                raise CheckpointError(f"--resume: {self.out} holds no interrupted run (no {STATE_DIR}/trainer.json)")
            return
        if manifest.exists():
            raise CheckpointError(
                f"{self.out} already holds a run; pass --resume to continue it or choose another --out"
            )

    def total_steps(self) -> int:
        steps = self.cfg.train.num_tokens // self.cfg.train.batch_size
        if steps <= 0:
            raise DataError(
                f"train.num_tokens={self.cfg.train.num_tokens} is less than one batch of {self.cfg.train.batch_size}"
            )
        return steps

    def build_members(self, first: dict[str, Tensor]) -> None:
        total = self.total_steps()
        for hookpoint, x in first.items():
            self.d_in[hookpoint] = int(x.shape[1])
            if hookpoint not in self.scales:
                self.scales[hookpoint] = _input_scale(x) if self.cfg.train.normalize_activations else 1.0
        for hookpoint, d_in in self.d_in.items():
            for sae_cfg in self.cfg.saes:
                for seed in self.cfg.train.seeds:
                    member = Member.create(hookpoint, sae_cfg, seed, d_in, self.cfg.train, total, self.device)
                    self.members.append(member)
        names = [m.key for m in self.members]
        if len(set(names)) != len(names):
            raise DataError("two SAE configurations resolve to the same name; give them distinct `name`s")
        if not self.resume:
            # Start b_dec at the mean of the first batch (scaled), the same for every member.
            for member in self.members:
                x = first[member.hookpoint].to(self.device, torch.float32) * self.scales[member.hookpoint]
                with torch.no_grad():
                    member.sae.b_dec.copy_(x.mean(0))

    # -------------------------------------------------------------- persistence

    def save_state(self) -> None:
        state_dir = self.out / STATE_DIR
        for member in self.members:
            path = state_dir / f"{member.key}.pt"
            atomic_write(path, lambda p, m=member: torch.save(m.state_dict(), p))
        atomic_write_json(
            state_dir / "trainer.json",
            {
                "step": self.step,
                "fingerprint": self.fingerprint.value,
                "scales": self.scales,
                "d_in": self.d_in,
                "members": [m.key for m in self.members],
            },
        )

    def load_state(self) -> dict[str, Any]:
        state_dir = self.out / STATE_DIR
        trainer = json.loads((state_dir / "trainer.json").read_text())
        self.scales = {k: float(v) for k, v in trainer["scales"].items()}
        return trainer

    def restore_members(self, trainer: dict[str, Any]) -> None:
        keys = [m.key for m in self.members]
        if keys != trainer["members"]:
            raise CheckpointError(
                f"--resume: the config's SAEs {keys} differ from the interrupted run's {trainer['members']}"
            )
        for member in self.members:
            path = self.out / STATE_DIR / f"{member.key}.pt"
            try:
                state = torch.load(path, map_location=self.device, weights_only=True)
            except Exception as err:
                raise CheckpointError(f"--resume: cannot read trainer state {path}: {err}") from err
            member.load_state_dict(state)

    def save_checkpoints(self, status: str) -> None:
        model_name = str(self.pair.info.get("model", ""))
        for member in self.members:
            folded = fold_input_scale(member.sae, self.scales[member.hookpoint])
            save_sae(
                folded,
                checkpoint_dir(self.out, member.hookpoint, member.name, member.seed),
                hookpoint=member.hookpoint,
                model=model_name,
                seed=member.seed,
            )
        self.save_state()
        self.write_manifest(status)

    def write_manifest(self, status: str) -> None:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        previous = read_manifest(self.out) if (self.out / MANIFEST).is_file() else {}
        manifest = {
            "saeseeds_version": __version__,
            "created": previous.get("created", created),
            "updated": created,
            "status": status,
            "step": self.step,
            "total_steps": self.total_steps(),
            "tokens": self.step * self.cfg.train.batch_size,
            "seeds": list(self.cfg.train.seeds),
            "config": to_dict(self.cfg),
            "data": self.pair.info,
            "fingerprint": {
                "algorithm": "sha256 chain over training batches (saeseeds.train.fingerprint)",
                "train": self.fingerprint.value,
                "batches": self.fingerprint.batches,
                "eval": self.eval_fingerprint,
            },
            "hookpoints": {h: {"d_in": self.d_in[h], "input_scale": self.scales[h]} for h in self.d_in},
            "saes": [
                {
                    "hookpoint": m.hookpoint,
                    "name": m.name,
                    "seed": m.seed,
                    "architecture": m.sae.architecture,
                    "num_latents": m.sae.num_latents,
                    "path": str(checkpoint_dir(Path("."), m.hookpoint, m.name, m.seed)),
                }
                for m in self.members
            ],
            "eval": self.history,
            "versions": library_versions(),
        }
        atomic_write_json(self.out / MANIFEST, manifest)

    # -------------------------------------------------------------- evaluation

    def evaluate(self) -> None:
        if not self.eval_batches:
            return
        for member in self.members:
            batches = [b[member.hookpoint] for b in self.eval_batches]
            metrics, _ = evaluate_sae(member.sae, batches, self.scales[member.hookpoint])
            record: dict[str, float | int] = metrics.as_dict() | {"step": self.step}
            record["train_dead_fraction"] = float(member.dead_mask().float().mean())
            self.history[member.key] = record
            with open(self.out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps({"key": member.key, **record}) + "\n")

    # -------------------------------------------------------------- the loop

    def batches(self) -> Iterator[dict[str, Tensor]]:
        for batch in rebatch(self.pair.train, self.cfg.train.batch_size, self.cfg.data.hookpoint):
            yield {k: check_batch(v, f"training batch {self.fingerprint.batches}") for k, v in batch.items()}

    def run(self) -> TrainResult:
        self.check_out_dir()
        self.out.mkdir(parents=True, exist_ok=True)
        trainer_state = self.load_state() if self.resume else None
        stream = self.batches()
        first = next(stream, None)
        if first is None:
            raise DataError(f"the activation source yielded fewer than {self.cfg.train.batch_size} rows")
        self.build_members(first)
        total = self.total_steps()
        cfg = self.cfg.train
        checkpoint_every = cfg.checkpoint_every or max(total // 10, 1)
        pending: Iterator[dict[str, Tensor]] = _chain_first(first, stream)
        if trainer_state is not None:
            self.restore_members(trainer_state)
            pending = self.skip_verified(pending, trainer_state)
        progress = tqdm(total=total, initial=self.step, desc="train", unit="step", disable=not cfg.progress, mininterval=1.0)
        last: dict[str, float] = {}
        for batch in pending:
            if self.step >= total:
                break
            self.fingerprint.update(batch)
            on_device = {h: t.to(self.device, torch.float32) * self.scales[h] for h, t in batch.items()}
            fvus = []
            for member in self.members:
                stats = member.step(on_device[member.hookpoint], self.step)
                fvus.append(stats.fvu)
                last = {"fvu": stats.fvu, "l0": stats.l0}
            self.step += 1
            progress.update(1)
            progress.set_postfix(mean_fvu=f"{sum(fvus) / len(fvus):.3f}", l0=f"{last['l0']:.1f}")
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < total:
                self.evaluate()
            if self.step % checkpoint_every == 0 and self.step < total:
                self.save_checkpoints("running")
        progress.close()
        if self.step < total:
            tqdm.write(f"note: the source ran out after {self.step} of {total} steps")
        self.evaluate()
        self.save_checkpoints("complete")
        return TrainResult(
            self.out, self.step, self.step * cfg.batch_size, self.fingerprint.value, dict(self.history)
        )

    def skip_verified(self, stream: Iterator[dict[str, Tensor]], state: dict[str, Any]) -> Iterator[dict[str, Tensor]]:
        """Re-read the batches the interrupted run already used and check they hash to its fingerprint."""
        target = int(state["step"])
        if target == 0:
            return stream
        # A manual bar: wrapping `stream` in tqdm would close the generator when we stop early.
        bar = tqdm(total=target, desc="resume: verify data", disable=not self.cfg.train.progress)
        for batch in stream:
            self.fingerprint.update(batch)
            bar.update(1)
            if self.fingerprint.batches == target:
                break
        bar.close()
        if self.fingerprint.batches < target or self.fingerprint.value != state["fingerprint"]:
            raise DataError(
                f"--resume: the data stream differs from the interrupted run's "
                f"(fingerprint after {self.fingerprint.batches} batches does not match)"
            )
        self.step = target
        return stream


def _chain_first(first: dict[str, Tensor], rest: Iterator[dict[str, Tensor]]) -> Iterator[dict[str, Tensor]]:
    yield first
    yield from rest


def train_run(cfg: RunConfig, pair: SourcePair, out_dir: str | Path, *, resume: bool = False) -> TrainResult:
    """Train every SAE of `cfg` in lockstep on `pair.train`; write checkpoints, run.json and metrics to `out_dir`."""
    return _Run(cfg, pair, Path(out_dir), resume).run()


def clear_state(run_dir: str | Path) -> None:
    """Remove the resume state of a finished run (it holds optimizer moments: large)."""
    shutil.rmtree(Path(run_dir) / STATE_DIR, ignore_errors=True)
