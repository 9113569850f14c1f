"""The process group of a `torchrun` launch: this rank, the world size, collectives that end cleanly.

saeseeds runs single-process unless `WORLD_SIZE` > 1 is set by a launcher (torchrun, SLURM via torchrun, a
Kubernetes operator). `launched` then joins the group — NCCL when the run's device is CUDA, gloo otherwise:
one code path — with a timeout, and destroys it on every exit path, so one failing rank ends the job on every
rank with a clear message instead of a hang.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from saeseeds.distributed.partition import partition_by_cost
from saeseeds.errors import SaeseedsError

T = TypeVar("T")
R = TypeVar("R")
DEFAULT_TIMEOUT_S = 600.0
"""How long a rank waits in a collective for the others before it gives up (seconds)."""


class RankFailure(SaeseedsError):
    """Another rank failed or left: this rank stops too, saying so in one line."""


@dataclass(frozen=True)
class World:
    """This process's place in the job; `size == 1` is the ordinary single-process run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the files that describe the whole run (manifest, metrics, comparison)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one process: collectives are real."""
        return self.size > 1

    def barrier(self) -> None:
        """Wait for every rank (no-op alone)."""
        if self.active:
            _guard(dist.barrier)

    def gather_objects(self, obj: T) -> list[T]:
        """Every rank's `obj`, in rank order, on every rank (picklable objects; small payloads)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.size
        _guard(lambda: dist.all_gather_object(out, obj))
        return out

    def broadcast_object(self, obj: T, src: int = 0) -> T:
        """Rank `src`'s `obj` on every rank."""
        if not self.active:
            return obj
        box: list[Any] = [obj if self.rank == src else None]
        _guard(lambda: dist.broadcast_object_list(box, src=src))
        return box[0]

    def gather_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's rows of `x` [n_r, ...] in rank order, on every rank (n_r may differ).

        Sizes first, then one padded all_gather: a tensor collective (NCCL on GPUs, gloo on CPUs), not pickling.
        """
        if not self.active:
            return x
        home = x.device
        device = torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")
        x = x.to(device).contiguous()
        count = torch.tensor([x.shape[0]], device=device, dtype=torch.int64)
        counts = [torch.zeros_like(count) for _ in range(self.size)]
        _guard(lambda: dist.all_gather(counts, count))
        sizes = [int(c) for c in counts]
        padded = x.new_zeros((max(sizes), *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        _guard(lambda: dist.all_gather(parts, padded))
        return torch.cat([part[:n] for part, n in zip(parts, sizes)]).to(home)

    def agreed(self, step: Callable[[], T]) -> T:
        """Run `step` on every rank; if it raises on any rank, it raises on all (no rank left waiting)."""
        if not self.active:
            return step()
        try:
            value = step()
        except Exception as err:
            self.agree(err)  # raises err here, RankFailure on the other ranks
            raise
        self.agree(None)
        return value

    def agree(self, error: BaseException | None) -> None:
        """Collective error check: if any rank hit an error, every rank raises (the failing one its own).

        Used after steps where one rank may refuse (a bad directory, a missing state file) while the
        others would walk on into the next collective and wait there until the timeout.
        """
        errors = self.gather_objects(None if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            raise error
        failed = [(rank, msg) for rank, msg in enumerate(errors) if msg is not None]
        if failed:
            rank, msg = failed[0]
            raise RankFailure(f"rank {rank} failed: {msg}")


def _guard(call: Callable[[], Any]) -> Any:
    """Run a collective; a peer that died or timed out becomes one RankFailure line."""
    try:
        return call()
    except RuntimeError as err:  # gloo/NCCL report a lost peer or a timeout as RuntimeError (DistBackendError)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RankFailure(f"another rank failed or left the job ({first}); stopping this rank too") from err


def current_world() -> World:
    """The world of the process group in effect, or the single-process world."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                     str(dist.get_backend()))
    return World()


def launched_world_size() -> int:
    """WORLD_SIZE set by the launcher (1 when absent)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError as err:
        raise SaeseedsError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from err


@contextmanager
def launched(device: str | torch.device = "cpu", *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[World]:
    """Join the launcher's process group for the duration of a command, and always leave it.

    Alone (no WORLD_SIZE > 1) this yields the single-process world and touches nothing. Under torchrun it
    initialises the group (nccl for a CUDA device, gloo otherwise; rendezvous from the launcher's env),
    pins CUDA ranks to `cuda:<LOCAL_RANK>`, and destroys the group however the block ends.
    """
    if launched_world_size() == 1 or (dist.is_initialized()):
        yield current_world()
        return
    if not dist.is_available():
        raise SaeseedsError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    cuda = torch.device(device).type == "cuda" if str(device) not in ("", "auto") else torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as err:
        raise SaeseedsError(f"cannot join the torch.distributed group ({backend}): {err}".splitlines()[0]) from err
    try:
        yield current_world()
    finally:
        dist.destroy_process_group()


def map_gathered(
    items: Sequence[T], fn: Callable[[T], R], *, costs: Sequence[float] | None = None, world: World | None = None
) -> list[R]:
    """`[fn(x) for x in items]`, with the items split over the ranks by cost and the results gathered on all.

    Every rank returns the full list in the items' order, identical to the single-process answer because each
    item is computed by exactly one rank with the same code. Results must be picklable.
    """
    world = world or current_world()
    if not world.active:
        return [fn(item) for item in items]
    groups = partition_by_cost(costs if costs is not None else [1.0] * len(items), world.size)
    # a failure is reported to the others instead of leaving them waiting in the gather
    mine = world.agreed(lambda: {index: fn(items[index]) for index in groups[world.rank]})
    results: dict[int, R] = {}
    for part in world.gather_objects(mine):
        results.update(part)
    return [results[i] for i in range(len(items))]


def spread_pairs(sizes: Sequence[int]) -> Callable[[list[tuple[int, int]], Callable[[tuple[int, int]], R]], list[R]] | None:
    """Under torchrun, a map over index pairs (i, j) of items of `sizes` that spreads them over the ranks by cost
    (sizes[i] * sizes[j], the work of aligning two dictionaries) and gathers the results on every rank; None in a
    single process (the caller then runs them in order)."""
    world = current_world()
    if not world.active:
        return None

    def spread(pairs: list[tuple[int, int]], fn: Callable[[tuple[int, int]], R]) -> list[R]:
        return map_gathered(pairs, fn, costs=[sizes[i] * sizes[j] for i, j in pairs], world=world)

    return spread
