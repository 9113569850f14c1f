"""Step groups of the lockstep trainer: one member alone (the reference path) or S seeds stacked (`train.batched_seeds`).

A `SeedStack` steps the S seeds of one configuration as one `StackedSAE` with one fused Adam over the stacked
tensors; statistics stay on the device and are read only when the trainer asks (its logging interval). Its
members' SAEs and dead counters are views into the stack, and `member_states` writes the same per-member state as the per-member path,
so checkpoints, resume and the crash-safety protocol are unchanged (docs/performance.md).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import torch
from torch import Tensor

from saeseeds.errors import ConfigError
from saeseeds.sae.stacked import STACKED_ARCHITECTURES, StackedSAE
from saeseeds.training.member import Member, StepStats
from saeseeds.training.schedule import lr_factor

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""glibc `mallopt` parameters (malloc.h)."""

MemberStats = tuple[Member, StepStats, int]
"""A member, its mean training statistics over the last `steps` steps, and `steps`."""


class StepGroup(Protocol):
    """What the trainer's loop steps once per batch."""

    hookpoint: str
    members: list[Member]

    def step(self, x: Tensor, step: int, read: bool = True) -> list[MemberStats]:
        """One optimisation step of every member on `x`; statistics when `read` (a stack may skip them otherwise)."""
        ...

    def member_states(self) -> dict[str, dict[str, Any]]:
        """Each member's resumable state, in `Member.state_dict` form."""
        ...


class SingleMember:
    """Today's per-member path: the reference every batched result is checked against."""

    def __init__(self, member: Member) -> None:
        self.hookpoint = member.hookpoint
        self.members = [member]

    def step(self, x: Tensor, step: int, read: bool = True) -> list[MemberStats]:
        """`Member.step`; its statistics every step (they are host floats already)."""
        member = self.members[0]
        return [(member, member.step(x, step), 1)]

    def member_states(self) -> dict[str, dict[str, Any]]:
        member = self.members[0]
        return {member.key: member.state_dict()}


def _clone_tensors(value: Any) -> Any:
    """A copy of nested dicts of tensors with every tensor cloned (views into a stack would save the whole stack)."""
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _clone_tensors(v) for k, v in value.items()}
    return value


def _lr(member: Member, step: int) -> float:
    """The learning rate `Member.step` sets at `step` (its schedule and its own initial rate)."""
    cfg = member.train_cfg
    warmup = member.sae.cfg.lr_warmup_steps or cfg.lr_warmup_steps
    factor = lr_factor(step, member.total_steps, warmup, cfg.lr_decay, cfg.lr_decay_start)
    return member.optimizer.param_groups[0]["initial_lr"] * factor


class SeedStack:
    """The seeds of one configuration and hookpoint, trained together with stacked parameters."""

    def __init__(self, members: list[Member]) -> None:
        first = members[0]
        self.hookpoint = first.hookpoint
        self.members = members
        self.steer_l0 = any(m.sae.cfg.target_l0 > 0 for m in members)
        """The L0 controller steers on each step's L0, so a stack with it reads its statistics every step."""
        self.cfg = first.train_cfg
        self.total_steps = first.total_steps
        groups = [m.optimizer.param_groups for m in members]
        hyper = [[{k: v for k, v in g.items() if k != "params"} for g in gs] for gs in groups]
        if any(h != hyper[0] for h in hyper) or len(hyper[0]) != 1:
            raise ConfigError(
                f"train.batched_seeds: the seeds of {first.hookpoint}/{first.name} have different optimizer "
                f"settings (learning rates or schedules); set train.batched_seeds = false"
            )
        if any(m.train_cfg != self.cfg or m.total_steps != self.total_steps for m in members):
            raise ConfigError(
                f"train.batched_seeds: the seeds of {first.hookpoint}/{first.name} have different training "
                f"settings; set train.batched_seeds = false"
            )
        self.model = StackedSAE([m.sae for m in members])
        group = first.optimizer.param_groups[0]
        self.optimizer = torch.optim.Adam(
            self.model.parameters(),
            lr=group["lr"],
            betas=group["betas"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            amsgrad=group["amsgrad"],
            fused=True,
        )
        self.tokens_since_fired = torch.stack([m.tokens_since_fired for m in members])
        for s, member in enumerate(members):
            member.tokens_since_fired = self.tokens_since_fired[s]
        self._acc = torch.zeros(len(members), 5, dtype=torch.float64, device=self.tokens_since_fired.device)
        self._count = 0
        self._pulled = False
        self._dead_bound = 0
        """Host-side upper bound of max(tokens_since_fired): AuxK runs only once a latent may be dead."""

    # ---------------------------------------------------------------- optimizer state <-> members

    def _pairs(self) -> Iterator[tuple[torch.nn.Parameter, list[torch.nn.Parameter]]]:
        """(stacked parameter, the members' parameters it holds), in the members' parameter order."""
        for name in self.model.param_names:
            yield self.model.stacked(name), [m.sae.get_parameter(name) for m in self.members]

    def _pull(self) -> None:
        """Move the members' optimizer state (after a resume) into the stacked optimizer; read the dead counters."""
        self._pulled = True
        for stacked, params in self._pairs():
            states = [m.optimizer.state.pop(p, None) for m, p in zip(self.members, params, strict=True)]
            if all(not s for s in states):
                continue
            if any(not s for s in states):
                raise ConfigError("train.batched_seeds: some seeds of a stack have optimizer state and some not")
            merged = {}
            for key, value in states[0].items():
                if isinstance(value, Tensor) and value.shape == params[0].shape and value.ndim > 0:
                    merged[key] = torch.stack([s[key] for s in states]).to(stacked.device)
                else:
                    merged[key] = value.clone() if isinstance(value, Tensor) else value
            self.optimizer.state[stacked] = merged
        self._dead_bound = int(self.tokens_since_fired.max())

    def member_states(self) -> dict[str, dict[str, Any]]:
        """Each member's state as the per-member path saves it (optimizer moments sliced out of the stack)."""
        out = {}
        for s, member in enumerate(self.members):
            if self._pulled:
                for stacked, params in self._pairs():
                    state = self.optimizer.state.get(stacked)
                    if state:
                        member.optimizer.state[params[s]] = {
                            k: v[s].clone() if isinstance(v, Tensor) and v.shape == stacked.shape else _clone_tensors(v)
                            for k, v in state.items()
                        }
            state = member.state_dict()
            out[member.key] = {**state, "sae": _clone_tensors(state["sae"]),
                               "tokens_since_fired": state["tokens_since_fired"].clone()}
            if self._pulled:
                member.optimizer.state.clear()
        return out

    # ---------------------------------------------------------------- the step

    def _coefficients(self, step: int) -> float | Tensor:
        """Each seed's sparsity-loss weight at `step` (one float when they agree, else a [S] tensor)."""
        values = [m._coefficient_warmup(step) for m in self.members]
        if all(v == values[0] for v in values):
            return values[0]
        return torch.tensor(values, dtype=torch.float32, device=self.tokens_since_fired.device)

    def _aux_k(self) -> int:
        """AuxK's latent budget this step, 0 when AuxK is off or no latent can be dead yet (no device read)."""
        cfg = self.model.cfg
        if cfg.auxk_alpha == 0 or self._dead_bound < self.cfg.dead_tokens_threshold:
            return 0
        return min(cfg.auxk_k or self.model.d_in // 2, self.model.num_latents)

    def step(self, x: Tensor, step: int, read: bool = True) -> list[MemberStats]:
        """One Adam step of every seed on `x`; when `read` (always under the L0 controller, which reads them
        every step), each seed's mean statistics since the last read."""
        if not self._pulled:
            self._pull()
        model, cfg = self.model, self.cfg
        lr = _lr(self.members[0], step)
        for group in [*self.optimizer.param_groups, *(m.optimizer.param_groups[0] for m in self.members)]:
            group["lr"] = lr
        dead = self.tokens_since_fired >= cfg.dead_tokens_threshold
        model.train()
        use_autocast = x.device.type == "cuda" and cfg.dtype == "bfloat16"
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_autocast):
            out = model(x, dead_mask=dead, aux_k=self._aux_k())
            loss = out.recon_loss + self._coefficients(step) * out.sparsity_loss
            loss = loss + model.cfg.auxk_alpha * out.aux_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        if model.cfg.normalize_decoder:
            model.project_decoder_grad()
        if cfg.grad_clip > 0:
            model.clip_grad_norm_(cfg.grad_clip)
        self.optimizer.step()
        if model.cfg.normalize_decoder:
            model.normalize_decoder()
        with torch.no_grad():
            model.post_step()
            self.tokens_since_fired += x.shape[0]
            self.tokens_since_fired.masked_fill_(out.fired, 0)
            terms = (loss, out.fvu, out.l0, out.aux_loss, dead.float().mean(-1))
            self._acc += torch.stack([t.detach().double() for t in terms], dim=1)
        self._count += 1
        self._dead_bound += x.shape[0]
        if not (read or self.steer_l0):
            return []
        stats = self.read_stats()
        if self.steer_l0:
            for member, (_, values, _) in zip(self.members, stats, strict=True):
                member._steer_l0(values.l0, step)
        return stats  # read every step under the L0 controller: reported every step, none is lost

    def read_stats(self) -> list[MemberStats]:
        """Each seed's mean statistics since the last read (one device read); empty when no step ran since."""
        if self._count == 0:
            return []
        values = torch.cat([self._acc.flatten() / self._count, self.tokens_since_fired.max().double().view(1)])
        host = values.tolist()
        self._acc.zero_()
        steps, self._count = self._count, 0
        self._dead_bound = int(host[-1])
        return [(m, StepStats(*host[5 * s : 5 * s + 5]), steps) for s, m in enumerate(self.members)]


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse instead of returning them to the OS (True when it could).

    A training step allocates and frees the same large buffers (pre-activations, gradients) every step; by
    default glibc serves blocks over its mmap threshold with fresh pages, and touching fresh pages dominated
    CPU steps here (a 64 MB relu: 160 ms against 25 ms into reused memory). Resident memory stays at its peak.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 40))
    except (OSError, AttributeError):  # not glibc (macOS, musl): leave the allocator alone
        return False


def make_groups(members: list[Member], batched: bool) -> list[StepGroup]:
    """The trainer's step groups: each member alone, or (batched) the seeds of each hookpoint/configuration stacked."""
    if any(m.sae.device.type == "cpu" for m in members):
        keep_freed_memory()
    if not batched:
        return [SingleMember(m) for m in members]
    by_config: dict[tuple[str, str], list[Member]] = {}
    for member in members:
        by_config.setdefault((member.hookpoint, member.name), []).append(member)
    groups: list[StepGroup] = []
    for group in by_config.values():
        if len(group) > 1 and group[0].sae.architecture in STACKED_ARCHITECTURES:
            groups.append(SeedStack(group))
        else:  # one seed, or an architecture without a batched path (matryoshka, rasae): each member alone
            groups.extend(SingleMember(member) for member in group)
    return groups


def read_pending(groups: Iterable[StepGroup]) -> list[MemberStats]:
    """The statistics stacks hold but have not reported yet (at the end of a stream that ran out early)."""
    return [item for group in groups if isinstance(group, SeedStack) for item in group.read_stats()]


def group_states(groups: Iterable[StepGroup]) -> dict[str, dict[str, Any]]:
    """Every member's resumable state, whichever path trains it."""
    out: dict[str, dict[str, Any]] = {}
    for group in groups:
        out |= group.member_states()
    return out


def upload(batch: dict[str, Tensor], device: torch.device, scales: dict[str, float]) -> dict[str, Tensor]:
    """The batch on `device` in float32 times each hookpoint's input scale, as the trainer feeds it.

    On CUDA the host tensor is pinned and copied with non_blocking=True: the copy is queued behind the running
    step instead of waiting for it, so the host runs ahead and the next batch is in flight while this one trains.
    """
    if device.type == "cuda":
        pinned = {h: t.pin_memory() if t.device.type == "cpu" else t for h, t in batch.items()}
        return {h: t.to(device, non_blocking=True).float() * scales[h] for h, t in pinned.items()}
    return {h: t.to(device, torch.float32) * scales[h] for h, t in batch.items()}
