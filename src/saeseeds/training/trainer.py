"""The lockstep trainer: every SAE of a run (seeds × configurations × hookpoints) steps on the same batch in turn.

Each SAE keeps its own parameters, optimizer and counters, so training S seeds together gives exactly the
parameters of S separate runs on the same stream; the data is read (or the LM run) once for all of them.
Crash safety: the resumable state is committed as one unit (`saeseeds.training.state`), first at step 0, so
`--resume` after a kill at any instant continues exactly or refuses; the held-out set and per-latent firing
frequencies are kept in `<run>/eval/` (`saeseeds.training.eval_store`).
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from saeseeds.atomic import TEMP_SUFFIX, atomic_write_text, json_text, remove_stale_temps
from saeseeds.config import RunConfig, SaeConfig, from_dict, to_dict
from saeseeds.data.arrays import check_batch
from saeseeds.data.batching import rebatch
from saeseeds.data.types import SourcePair, as_mapping
from saeseeds.device import resolve_device
from saeseeds.distributed import current_world, partition_by_cost
from saeseeds.errors import CheckpointError, ConfigError, DataError
from saeseeds.outputs import check_run_overwrite, not_a_run_error
from saeseeds.progress import tqdm
from saeseeds.records import write_record
from saeseeds.run_layout import (
    EVAL_DIR,
    LOCK_FILE,
    MANIFEST,
    METRICS,
    POINTER,
    RUN_SCHEMA,
    STATE_DIR,
    STATE_SET,
    milestone_dir,
)
from saeseeds.sae.checkpoint import save_sae
from saeseeds.sae.registry import get_architecture
from saeseeds.training.batched import StepGroup, group_states, make_groups, read_pending, upload
from saeseeds.training.diskspace import disk_full_guard, nbytes
from saeseeds.training.eval_store import (
    eval_set_problem,
    store_eval_set,
    write_latent_frequencies,
)
from saeseeds.training.evaluate import evaluate_sae
from saeseeds.training.fingerprint import DataFingerprint, fingerprint_batches
from saeseeds.training.init_sample import (
    InitInputs,
    check_sample_rows,
    load_init_sample,
    needs_init_sample,
    peek_rows,
    save_init_sample,
)
from saeseeds.training.logging import TrainLogger, append_text, check_sinks
from saeseeds.training.member import Member
from saeseeds.training.run_dir import (
    checkpoint_dir,
    manifest_data,
    member_key,
    read_manifest,
)
from saeseeds.training.run_lock import RunLock, refuse_if_locked
from saeseeds.training.state import (
    check_resume_config,
    commit_pointer,
    load_member_state,
    new_set_name,
    read_pointer,
    remove_uncommitted,
    write_member_states,
)
from saeseeds.version import __version__

log = logging.getLogger(__name__)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped training; the message says at which step and how to continue (the CLI prints it)."""


class TrainResult(NamedTuple):
    """Where the run is and what it did."""

    run_dir: Path
    steps: int
    tokens: int
    fingerprint: str
    metrics: dict[str, dict[str, float | int]]


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


def check_out_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse an --out that would mix with other files or that another process is writing (checked before
    any data is read; changes nothing)."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: continue the run, or replace it")
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"--out {out} is a file, not a directory")
    refuse_if_locked(out)
    check_out_contents(out, resume=resume, overwrite=overwrite)


def check_out_contents(out: Path, *, resume: bool, overwrite: bool) -> None:
    """What `check_out_dir` checks of the directory's entries (the run's own lock file is not one)."""
    if resume:
        if not (out / STATE_DIR / POINTER).is_file():
            hint = ("; it was stopped before its first commit: start it again without --resume"
                    if uncommitted_leftover(out) else "")
            raise CheckpointError(f"--resume: {out} holds no interrupted run (no {STATE_DIR}/{POINTER}){hint}")
    elif overwrite:
        check_run_overwrite(out, ignore=lambda entry: entry.name == LOCK_FILE or _is_temp(entry))  # runs only
    elif uncommitted_leftover(out):
        return  # a run killed before its first commit: prepare_out_dir starts afresh
    elif (out / MANIFEST).exists() or (out / STATE_DIR).exists():
        raise CheckpointError(
            f"{out} already holds a run; pass --resume to continue it, --overwrite to replace it, or choose another --out"
        )
    elif out.is_dir() and any(entry.name != LOCK_FILE and not _is_temp(entry) for entry in out.iterdir()):
        raise not_a_run_error(out, overwrite=False)


def _is_temp(entry: Path) -> bool:
    """A file or directory a saeseeds writer left half-written (atomic.TEMP_SUFFIX)."""
    return entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX)


def uncommitted_leftover(out: Path) -> bool:
    """Whether `out` holds only what a train killed before its first commit leaves: `.state/` with no
    trainer.json and nothing but uncommitted state sets and temporary files, the lock file, temporary files."""
    state = out / STATE_DIR
    if (out / MANIFEST).exists() or not state.is_dir() or state.is_symlink() or (state / POINTER).exists():
        return False
    if any(e.name not in (STATE_DIR, LOCK_FILE) and not _is_temp(e) for e in out.iterdir()):
        return False
    return all(_is_temp(e) or (STATE_SET.fullmatch(e.name) and e.is_dir() and not e.is_symlink())
               for e in state.iterdir())


def prepare_out_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """`check_out_contents`, then create `out`; `overwrite` first deletes everything in it but the lock file
    (held by this process), and a fresh run deletes a leftover of a run killed before its first commit."""
    check_out_contents(out, resume=resume, overwrite=overwrite)
    if overwrite and out.exists():
        clear_dir(out, keep=LOCK_FILE)
    elif not resume and uncommitted_leftover(out):
        log.info("%s holds only the state of a run stopped before its first commit: starting afresh", out)
        clear_dir(out, keep=LOCK_FILE)
    out.mkdir(parents=True, exist_ok=True)


def clear_dir(directory: Path, *, keep: str) -> None:
    """Delete every entry of `directory` except `keep` (links themselves, never what they point to); a
    `directory` that is itself a symbolic link is refused, so nothing outside it is ever deleted."""
    if directory.is_symlink():
        raise CheckpointError(f"--out {directory} is a symbolic link; give the directory itself to replace a run")
    for entry in directory.iterdir():
        if entry.name == keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def remove_run_temps(out: Path) -> None:
    """Clean what writers killed mid-write left in the run directory (checkpoint swaps, temporary files)."""
    for directory in [out, *(p for p in out.rglob("*") if p.is_dir() and STATE_DIR not in p.parts)]:
        remove_stale_temps(directory)


class _Run:
    """State of one training run while it is in progress."""

    def __init__(self, cfg: RunConfig, pair: SourcePair, out_dir: Path, resume: bool, overwrite: bool,
                 on_complete: Callable[[Path, SourcePair], None] | None = None) -> None:
        self.on_complete = on_complete
        self.cfg = cfg
        self.pair = pair
        self.out = Path(out_dir)
        self.resume = resume
        self.overwrite = overwrite
        self.device = resolve_device(cfg.train.device, field="train.device")
        self.world = current_world()
        """Under torchrun: this rank trains its share of the members; rank 0 writes the run's own files."""
        self.members: list[Member] = []
        self.groups: list[StepGroup] = []
        """What the loop steps: each member alone, or its seeds stacked (train.batched_seeds)."""
        """This rank's members (all of them in a single-process run)."""
        self.all_members: list[dict[str, Any]] = []
        """Every member of the run, in run order: key, hookpoint, name, seed, architecture, num_latents."""
        self.scales: dict[str, float] = {}
        self.d_in: dict[str, int] = {}
        self.fingerprint = DataFingerprint()
        self.step = 0
        self.history: dict[str, dict[str, float | int]] = {}
        self.eval_batches = [as_mapping(b, cfg.data.hookpoint) for b in pair.eval]
        self.eval_fingerprint = fingerprint_batches(self.eval_batches) if self.eval_batches else None
        self.eval_info: dict[str, Any] = {}
        self.resumes: list[dict[str, Any]] = []
        self.logger: TrainLogger | None = None
        """Metrics sinks, made in `start()` (saeseeds.training.logging)."""
        self.lock: RunLock | None = None
        """The run directory's single-writer lock (rank 0 holds it), taken in `prepare()`."""
        self.committed: int | None = None
        """The step of the state committed last (None before the first commit)."""
        self.init_sample: dict[str, Tensor] | None = None
        """The run's init sample, raw, when an SAE initialises from data (saeseeds.training.init_sample)."""
        self.init_sample_info: dict[str, Any] | None = None
        """run.json's `init_sample` record (path, rows, sha256)."""

    # -------------------------------------------------------------- setup

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
        plan = [(hookpoint, sae_cfg, seed) for hookpoint in self.d_in for sae_cfg in self.cfg.saes
                for seed in self.cfg.train.seeds]
        self.all_members = [
            {"key": member_key(h, c.resolved_name(self.d_in[h]), seed), "hookpoint": h,
             "name": c.resolved_name(self.d_in[h]), "seed": seed, "architecture": c.architecture,
             "num_latents": c.resolved_num_latents(self.d_in[h])}
            for h, c, seed in plan
        ]
        names = [m["key"] for m in self.all_members]
        if len(set(names)) != len(names):
            raise DataError("two SAE configurations resolve to the same name; give them distinct `name`s")
        mine = self.my_share([m["num_latents"] * self.d_in[m["hookpoint"]] for m in self.all_members])
        inputs = None if self.init_sample is None else InitInputs(self.init_sample, self.scales)
        for index in mine:
            hookpoint, sae_cfg, seed = plan[index]
            sample, points = self.init_inputs(inputs, hookpoint, sae_cfg)
            member = Member.create(hookpoint, sae_cfg, seed, self.d_in[hookpoint], self.cfg.train, total, self.device,
                                   sample=sample, points=points)
            self.members.append(member)
        if not self.resume:
            # b_dec starts at the mean of the first batch (scaled; init_b_dec "mean"), the same for every member.
            for member in self.members:
                how = member.sae.cfg.init_b_dec if member.sae.b_dec.requires_grad else "zeros"  # rasae: frozen at 0
                if how == "mean":
                    start = first[member.hookpoint].to(self.device, torch.float32) * self.scales[member.hookpoint]
                    start = start.mean(0)
                elif how == "geometric_median":
                    assert inputs is not None  # needs_init_sample drew it
                    start = inputs.median(member.hookpoint)
                else:
                    start = None  # zeros, as constructed
                if start is not None:
                    with torch.no_grad():
                        member.sae.b_dec.copy_(start)
                if self.data_initialised(member.sae.cfg, member.sae.num_latents):
                    first_scaled = first[member.hookpoint].to(self.device, torch.float32) * self.scales[member.hookpoint]
                    member.sae.fit_encoder_scale(first_scaled)
        self.groups = make_groups(self.members, self.cfg.train.batched_seeds)

    @staticmethod
    def data_initialised(sae_cfg: SaeConfig, num_latents: int) -> bool:
        """Whether the decoder starts from data (init_decoder data/kmeans, rasae's candidates): its encoder is then
        rescaled to fit the first batch (`SparseAutoencoder.fit_encoder_scale`)."""
        shared = get_architecture(sae_cfg.architecture).shared_points(sae_cfg, num_latents)
        return sae_cfg.init_decoder != "random" or shared > 0

    def init_inputs(self, inputs: InitInputs | None, hookpoint: str,
                    sae_cfg: SaeConfig) -> tuple[Tensor | None, Tensor | None]:
        """The (scaled) init sample and the shared centroids a member's initialisation reads, or None."""
        if inputs is None:
            return None, None
        num_latents = sae_cfg.resolved_num_latents(self.d_in[hookpoint])
        where = f"saes[{self.cfg.saes.index(sae_cfg)}]"
        check_sample_rows(where, sae_cfg, num_latents, inputs.rows(hookpoint))
        count = get_architecture(sae_cfg.architecture).shared_points(sae_cfg, num_latents)
        points = inputs.centroids(hookpoint, count) if count else None
        sample = inputs.centred(hookpoint) if sae_cfg.init_decoder != "random" else None
        return sample, points

    def my_share(self, costs: list[int]) -> list[int]:
        """Indices of the members this rank trains: all alone; under torchrun a cost-balanced share."""
        if not self.world.active:
            return list(range(len(costs)))
        return partition_by_cost(costs, self.world.size)[self.world.rank]

    # -------------------------------------------------------------- persistence

    def record_pending(self) -> None:
        """Hand the logger the statistics seed stacks summed but have not reported yet (the open interval)."""
        if self.logger is None:
            return
        for member, stats, steps in read_pending(self.groups):
            self.logger.record(member.key, stats.loss * steps, stats.fvu * steps, stats.l0 * steps,
                               member.optimizer.param_groups[0]["lr"])

    def save_state(self, *, final: bool = False) -> None:
        """Commit every member's state and the trainer's counters as one unit (see saeseeds.training.state).

        Under torchrun every rank writes its own members into the set rank 0 names; rank 0 commits the
        pointer once all have written, so the set is complete whatever the world size of a later resume.
        The open logging interval goes in whole: seed stacks first hand over the statistics they hold.
        `final`: the state after the run's last step and final evaluation.
        """
        set_name = self.world.broadcast_object(new_set_name(self.step))
        self.record_pending()
        log_state = self.logger.state() if self.logger else None  # collective under torchrun
        files: dict[str, dict[str, Any]] = {}
        for part in self.world.gather_objects(
            write_member_states(self.out, set_name, group_states(self.groups))
        ):
            files |= part
        if self.world.is_main:
            commit_pointer(self.out, set_name, files, {
                "step": self.step,
                "final": final,
                "fingerprint": self.fingerprint.value,
                "eval_fingerprint": self.eval_fingerprint,
                "scales": self.scales,
                "d_in": self.d_in,
                "members": [m["key"] for m in self.all_members],
                "config": to_dict(self.cfg),
                "resumes": self.resumes,
                "world_size": self.world.size,
                "train_log": log_state,
            })
        self.world.barrier()
        self.committed = self.step

    def load_state(self) -> dict[str, Any]:
        """Read the committed state; refuse a changed config or evaluation set before touching anything."""
        trainer = read_pointer(self.out)
        self.world.barrier()  # every rank has read the pointer before rank 0 tidies the state directory
        if "set" in trainer and self.world.is_main:
            remove_uncommitted(self.out / STATE_DIR, keep=trainer["set"])
        if "config" in trainer:
            where = f"{self.out / STATE_DIR}/trainer.json:config"
            changes = check_resume_config(_normalised(trainer["config"], where), _normalised(to_dict(self.cfg), "config"))
            self.resumes = list(trainer.get("resumes", []))
            self.resumes.append({"step": int(trainer["step"]), "changed": {k: list(v) for k, v in changes.items()}})
        stored_eval = trainer.get("eval_fingerprint")
        if stored_eval is not None and stored_eval != self.eval_fingerprint:
            raise DataError("--resume: the data stream differs from the interrupted run's (its held-out evaluation set)")
        try:
            self.scales = {k: float(v) for k, v in trainer["scales"].items()}
        except (AttributeError, TypeError, ValueError) as err:
            raise CheckpointError(f"--resume: {self.out / STATE_DIR}/trainer.json has bad scales: {err}") from err
        return trainer

    def restore_members(self, trainer: dict[str, Any]) -> None:
        keys = [m["key"] for m in self.all_members]
        if keys != trainer["members"]:
            raise CheckpointError(
                f"--resume: the config's SAEs {keys} differ from the interrupted run's {trainer['members']}"
            )
        for member in self.members:
            state = load_member_state(self.out, trainer, member.key, self.device)
            try:
                member.load_state_dict(state)
            except (KeyError, RuntimeError, ValueError, TypeError) as err:
                raise CheckpointError(f"--resume: trainer state of {member.key} does not fit: {err}".splitlines()[0]) from err

    def restore_metrics(self, step: int, final: bool) -> None:
        """Keep only the metrics lines the resumed run will not write again; rebuild the latest per SAE.

        Every line of a step ≤ the committed `step` was written before that commit, and the resumed run goes on
        after it, except that a `final` state (committed after the last step) is evaluated again: its
        evaluation lines are dropped and rewritten, its training lines kept."""
        path = self.out / METRICS
        if not path.is_file() or not self.world.is_main:
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
                at, evaluation = int(record["step"]), record.get("kind", "eval") == "eval"
                if at > step or (final and at == step and evaluation):
                    continue
                kept.append(line)
                if evaluation:  # training lines (kind "train") are not history
                    self.history[record["key"]] = {k: v for k, v in record.items() if k not in ("key", "kind")}
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a line cut by the kill
        with disk_full_guard(path, sum(len(line) + 1 for line in kept)):
            atomic_write_text(path, "".join(line + "\n" for line in kept))

    def store_eval(self) -> None:
        """Write the held-out set into <run>/eval/ unless the same one (same cap) is already there, whole."""
        cap = self.cfg.train.store_eval_tokens
        previous = read_manifest(self.out).get("eval", {}) if (self.out / MANIFEST).is_file() else {}
        stored = previous.get("stored") if isinstance(previous, dict) else None
        if (
            self.resume
            and isinstance(stored, dict)
            and stored.get("cap") == cap
            and previous.get("fingerprint") == self.eval_fingerprint
            and self.world.broadcast_object(self.stored_eval_whole(stored) if self.world.is_main else None)
        ):
            self.eval_info = dict(previous)
            return
        special = self.pair.info.get("special_token_ids", []) if self.pair.info.get("exclude_special_tokens") else []
        if not self.world.is_main:  # rank 0 stores the held-out set; the others only need its description
            self.world.barrier()
            self.eval_info = self.world.broadcast_object(None)
            return
        self.eval_info = {
            "fingerprint": self.eval_fingerprint,
            "tokens": sum(int(next(iter(b.values())).shape[0]) for b in self.eval_batches),
            "stored": store_eval_set(self.out, self.pair.eval, self.eval_batches, cap, special),
            "latents": None,
        }
        if self.world.active:
            self.world.barrier()
            self.world.broadcast_object(self.eval_info)

    def stored_eval_whole(self, stored: dict[str, Any]) -> bool:
        """Whether the interrupted run's stored held-out set is intact (a damaged one is written again)."""
        problem = eval_set_problem(self.out, stored)
        if problem is not None:
            log.warning("%s; writing the stored held-out set again", problem)
        return problem is None

    def save_checkpoints(self, status: str) -> None:
        """Every member's checkpoint, then the state commit and run.json (`status` "complete": the final save)."""
        self.save_saes(self.out)
        self.save_state(final=status == "complete")
        self.write_manifest(status)

    def save_milestone(self) -> None:
        """Keep a copy of every SAE at this step under milestones/ (atomic per checkpoint, like the others)."""
        self.save_saes(milestone_dir(self.out, self.step))

    def save_saes(self, root: Path) -> None:
        """This rank's SAEs as sparsify-layout checkpoints under `root` (a full disk: one line naming the file)."""
        model_name = str(self.pair.info.get("model", ""))
        for member in self.members:
            where = checkpoint_dir(root, member.hookpoint, member.name, member.seed)
            with disk_full_guard(where, nbytes(dict(member.sae.state_dict()))):
                save_sae(member.sae, where, hookpoint=member.hookpoint, model=model_name, seed=member.seed,
                         input_scale=self.scales[member.hookpoint], data=self.pair.info)

    def milestone_entries(self) -> list[dict[str, Any]]:
        """run.json's `milestones`: each configured step, its tokens, directory and whether it is written."""
        total, cfg = self.total_steps(), self.cfg.train
        return [
            {"step": s, "fraction": s / total, "tokens": s * cfg.batch_size, "done": s <= self.step,
             "path": str(milestone_dir(Path("."), s))}
            for s in cfg.milestone_steps()
        ]

    def write_manifest(self, status: str) -> None:
        if not self.world.is_main:
            return
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        previous = read_manifest(self.out) if (self.out / MANIFEST).is_file() else {}
        manifest = {
            "created": previous.get("created", created),
            "updated": created,
            "status": status,
            "step": self.step,
            "total_steps": self.total_steps(),
            "tokens": self.step * self.cfg.train.batch_size,
            "seeds": list(self.cfg.train.seeds),
            "config": to_dict(self.cfg),
            "resumes": self.resumes,
            "data": manifest_data(self.pair.info, self.out) | self.lm_paths(),
            "fingerprint": {
                "algorithm": "sha256 chain over training batches (saeseeds.training.fingerprint)",
                "train": self.fingerprint.value,
                "batches": self.fingerprint.batches,
                "eval": self.eval_fingerprint,
            },
            "hookpoints": {h: {"d_in": self.d_in[h], "input_scale": self.scales[h]} for h in self.d_in},
            "saes": [
                {k: v for k, v in m.items() if k != "key"}
                | {"path": str(checkpoint_dir(Path("."), m["hookpoint"], m["name"], m["seed"]))}
                for m in self.all_members
            ],
            "milestones": self.milestone_entries(),
            **({"init_sample": self.init_sample_info} if self.init_sample_info else {}),
            "eval": {
                "about": f"held-out set and per-latent statistics in {EVAL_DIR}/ (saeseeds.training.eval_store)",
                **self.eval_info,
                "metrics": self.history,
            },
            "versions": library_versions(),
            "world_size": self.world.size,
        }
        with disk_full_guard(self.out / MANIFEST, len(json_text(manifest))):
            write_record(self.out / MANIFEST, RUN_SCHEMA, manifest)

    # -------------------------------------------------------------- evaluation

    def evaluate(self) -> None:
        if not self.eval_batches:
            return
        frequencies = {}
        records: dict[str, dict[str, float | int]] = {}
        for member in self.members:
            batches = [b[member.hookpoint] for b in self.eval_batches]
            metrics, frequency = evaluate_sae(member.sae, batches, self.scales[member.hookpoint])
            frequencies[member.key] = frequency
            record: dict[str, float | int] = metrics.as_dict() | {"step": self.step}
            record["train_dead_fraction"] = float(member.dead_mask().float().mean())
            if member.penalty_coefficient is not None:
                record["penalty_coefficient"] = member.penalty_coefficient
            records[member.key] = record
        if self.world.active:  # every rank's members, on rank 0, in run order
            parts = self.world.gather_objects((records, {k: v.cpu() for k, v in frequencies.items()}))
            order = [m["key"] for m in self.all_members]
            gathered = {k: v for part in parts for k, v in part[0].items()}
            gathered_freq = {k: v for part in parts for k, v in part[1].items()}
            records = {k: gathered[k] for k in order}
            frequencies = {k: gathered_freq[k] for k in order}
            if not self.world.is_main:
                return
        self.history.update(records)
        if self.logger:
            self.logger.log_eval(self.step, {k: {n: v for n, v in r.items() if n != "step"} for k, r in records.items()})
        lines = [json_text({"kind": "eval", "key": key, **record}, indent=None) for key, record in records.items()]
        tokens = int(self.eval_info.get("tokens", 0))
        path = write_latent_frequencies(self.out, frequencies, step=self.step, tokens=tokens)
        self.eval_info["latents"] = {"path": path, "step": self.step, "tokens": tokens, "dtype": "float64"}
        append_text(self.out / METRICS, "".join(lines))

    # -------------------------------------------------------------- the loop

    def batches(self) -> Iterator[dict[str, Tensor]]:
        for batch in rebatch(self.pair.train, self.cfg.train.batch_size, self.cfg.data.hookpoint):
            yield {k: check_batch(v, f"training batch {self.fingerprint.batches}") for k, v in batch.items()}

    def start(self) -> tuple[Iterator[dict[str, Tensor]], dict[str, Any] | None]:
        """Check the directory, build the members, restore or commit step 0; the batches still to train on."""
        check_sinks(self.cfg.train)  # a missing tensorboard / wandb is refused before anything is written
        self.prepare()
        trainer_state = self.world.agreed(self.load_state) if self.resume else None
        if trainer_state is not None:
            self.committed = int(trainer_state["step"])
        if self.world.is_main:
            remove_run_temps(self.out)
        stream: Iterator[dict[str, Tensor]] = self.batches()
        first = next(stream, None)
        if first is None:
            raise DataError(f"the activation source yielded fewer than {self.cfg.train.batch_size} rows")
        stream = self.take_init_sample(first, stream)
        self.build_members(first)
        log.debug("device %s; %d of %d SAEs on this process (%s); d_in %s, input scale %s; %d steps of %d rows, "
                  "%s", self.device, len(self.members), len(self.all_members),
                  ", ".join(m.key for m in self.members), self.d_in, {k: round(v, 4) for k, v in self.scales.items()},
                  self.total_steps(), self.cfg.train.batch_size, "resuming" if self.resume else "from step 0")
        pending: Iterator[dict[str, Tensor]] = _chain_first(first, stream)
        if trainer_state is None:
            self.save_state()  # step 0: from here on every kill is resumable
        else:
            self.restore_members(trainer_state)
            pending = self.skip_verified(pending, trainer_state)
            self.restore_metrics(self.step, bool(trainer_state.get("final", self.step >= self.total_steps())))
        self.store_eval()
        self.store_init_sample()
        self.write_manifest("running")
        self.start_logger(trainer_state)
        return pending, trainer_state

    def take_init_sample(self, first: dict[str, Tensor], stream: Iterator[dict[str, Tensor]]) -> Iterator[dict[str, Tensor]]:
        """When an SAE initialises from data: the run's init sample (stored one on resume, else read ahead of the
        stream and written); the batches after `first`, unchanged in order (saeseeds.training.init_sample)."""
        if not needs_init_sample(self.cfg.saes):
            return stream
        stored = None
        if self.resume and (self.out / MANIFEST).is_file():
            record = read_manifest(self.out).get("init_sample")
            stored = load_init_sample(self.out, record)
            if stored is not None:
                self.init_sample_info = record
        if stored is None:
            stored, stream = peek_rows(first, stream, self.cfg.train.init_sample_tokens)
        self.init_sample = stored
        return stream

    def store_init_sample(self) -> None:
        """Write the init sample into the run (after the step-0 commit, so a run killed before it stays one that
        starts afresh; a resumed run whose stored sample is whole keeps it)."""
        if self.init_sample is None or self.init_sample_info is not None or not self.world.is_main:
            return
        self.init_sample_info = save_init_sample(self.out, self.init_sample)

    def start_logger(self, trainer_state: dict[str, Any] | None) -> None:
        """The metrics sinks (metrics.jsonl, TensorBoard, wandb: saeseeds.training.logging), continuing the
        interrupted run's open logging interval on resume."""
        self.logger = TrainLogger.create(
            self.out, self.cfg.train, self.total_steps(), resume_step=None if trainer_state is None else self.step,
            config=to_dict(self.cfg), main=self.world.is_main,
            gather=self.world.gather_objects if self.world.active else None,
            order=[m["key"] for m in self.all_members],
        )
        if trainer_state is not None:
            self.logger.restore(trainer_state.get("train_log"), [m.key for m in self.members])

    def prepare(self) -> None:
        """Check `--out` on every rank (a refusal ends all of them), then rank 0 locks it for the run's life,
        checks it again under the lock and creates or clears it."""
        self.world.agreed(lambda: check_out_dir(self.out, resume=self.resume, overwrite=self.overwrite))
        self.world.agreed(self.lock_and_prepare if self.world.is_main else lambda: None)
        self.world.barrier()

    def lock_and_prepare(self) -> None:
        """Take the single-writer lock (creating `--out` for it), then `prepare_out_dir` under it."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.lock = RunLock.acquire(self.out)
        prepare_out_dir(self.out, resume=self.resume, overwrite=self.overwrite)

    def run(self) -> TrainResult:
        """`train()`, releasing the run directory's lock however it ends; Ctrl-C becomes `Interrupted`."""
        try:
            return self.train()
        except KeyboardInterrupt as err:
            if isinstance(err, Interrupted):
                raise
            raise Interrupted(self.interrupt_message()) from err
        finally:
            if self.lock is not None:
                self.lock.release()

    def interrupt_message(self) -> str:
        """Where a Ctrl-C stopped the run and how to continue it."""
        if self.committed is None:
            return "interrupted before the run's first state commit; start it again (without --resume)"
        return (f"interrupted at step {max(self.step, self.committed)}; resume with --resume "
                f"(it continues from the state committed at step {self.committed})")

    def train(self) -> TrainResult:
        """Start or resume, train the remaining steps, evaluate and save; the run's result."""
        pending, _ = self.start()
        logger = self.logger
        assert logger is not None  # made by start()
        total = self.total_steps()
        cfg = self.cfg.train
        checkpoint_every = cfg.checkpoint_every or max(total // 10, 1)
        show = cfg.progress and self.world.is_main
        progress = tqdm(total=total, initial=self.step, desc="train", unit="step", disable=not show, mininterval=1.0)
        last: dict[str, float] = {}
        milestones = set(cfg.milestone_steps())
        started, started_step = time.perf_counter(), self.step
        for batch in pending:
            if self.step >= total:
                break
            self.fingerprint.update(batch)
            on_device = upload(batch, self.device, self.scales)
            fvus = []
            read = (self.step + 1) % logger.every == 0 or self.step + 1 >= total  # stacks sync only here
            for group in self.groups:
                for member, stats, steps in group.step(on_device[group.hookpoint], self.step, read):
                    fvus.append(stats.fvu)
                    last = {"fvu": stats.fvu, "l0": stats.l0}
                    logger.record(member.key, stats.loss * steps, stats.fvu * steps, stats.l0 * steps,
                                  member.optimizer.param_groups[0]["lr"])
            self.step += 1
            logger.step_done(self.step, total)
            progress.update(1)
            if fvus:
                progress.set_postfix(mean_fvu=f"{sum(fvus) / len(fvus):.3f}", l0=f"{last['l0']:.1f}", refresh=False)
            at_milestone = self.step in milestones and self.step < total
            if (cfg.eval_every and self.step % cfg.eval_every == 0 or at_milestone) and self.step < total:
                self.evaluate()
            if at_milestone:
                self.save_milestone()
            if self.step % checkpoint_every == 0 and self.step < total:
                self.save_checkpoints("running")
        progress.close()
        log.debug("trained %d steps in %.1fs", self.step - started_step, time.perf_counter() - started)
        started = time.perf_counter()
        if self.step < total and self.world.is_main:
            log.warning("the source ran out after %d of %d steps", self.step, total)
        self.record_pending()  # a stack's statistics of that interval
        logger.flush(self.step)  # a source that ran out early: its last, partial interval
        self.evaluate()
        if self.step in milestones:
            self.save_milestone()
        self.save_checkpoints("complete")
        if self.world.is_main and self.on_complete is not None:
            self.on_complete(self.out, self.pair)  # still under the run's lock: e.g. LM loss recovered (api.training)
        logger.close()
        log.debug("final evaluation and checkpoints in %.1fs; run directory %s", time.perf_counter() - started,
                  self.out.absolute())
        self.world.barrier()  # run.json is complete before any rank reads it
        return TrainResult(
            self.out, self.step, self.step * cfg.batch_size, self.fingerprint.value, dict(self.history)
        )

    def lm_paths(self) -> dict[str, Any]:
        """A local lm.model / lm.dataset as run.json records them: relative to the run (saeseeds.data.run_model)."""
        if self.cfg.data.source not in ("lm", "cache"):
            return {}
        from saeseeds.data.run_model import local_lm_paths

        return local_lm_paths(self.cfg.lm, self.out)

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


def _normalised(config: dict[str, Any], where: str) -> dict[str, Any]:
    """A config as plain JSON data with every default filled in, so equal configs compare equal."""
    return to_dict(from_dict(RunConfig, json.loads(json_text(config)), where))


def _chain_first(first: dict[str, Tensor], rest: Iterator[dict[str, Tensor]]) -> Iterator[dict[str, Tensor]]:
    yield first
    yield from rest


def train_run(
    cfg: RunConfig,
    pair: SourcePair,
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    on_complete: Callable[[Path, SourcePair], None] | None = None,
) -> TrainResult:
    """Train every SAE of `cfg` in lockstep on `pair.train`; write checkpoints, run.json and metrics to `out_dir`.

    `resume` continues an interrupted run exactly (or refuses); `overwrite` replaces an earlier run in `out_dir`.
    `on_complete(out_dir, pair)` runs on the main rank after the final checkpoints, while the run is still locked:
    the caller's measurements of the finished run (the trainer knows no analysis).
    """
    return _Run(cfg, pair, Path(out_dir), resume, overwrite, on_complete).run()
