"""The distributed helpers alone: partition by cost, gathered map, a failing rank ends the others."""

from __future__ import annotations

import os
import re
import sys
import textwrap
import time

import pytest
from tests.distributed.conftest import free_port

from saeseeds.distributed import World, map_gathered, partition_by_cost


def test_partition_balances_and_covers() -> None:
    costs = [8, 1, 1, 1, 1, 4, 4]
    groups = partition_by_cost(costs, 2)
    assert sorted(i for g in groups for i in g) == list(range(7))
    loads = [sum(costs[i] for i in g) for g in groups]
    assert loads == [10, 10]
    assert partition_by_cost(costs, 2) == groups  # deterministic: every rank agrees without a message
    assert partition_by_cost([1.0], 3) == [[0], [], []]
    with pytest.raises(ValueError):
        partition_by_cost([1.0], 0)


def test_single_process_map_is_plain_map() -> None:
    assert map_gathered([1, 2, 3], lambda x: x * x, world=World()) == [1, 4, 9]


SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from saeseeds.distributed import launched, map_gathered
    from saeseeds.distributed.world import RankFailure
    mode = sys.argv[1]
    try:
        with launched("cpu", timeout_s=20) as world:
            if mode == "map":
                out = map_gathered(list(range(7)), lambda x: (x, world.rank, x * x), costs=[7, 1, 1, 1, 1, 2, 2])
                assert [o[2] for o in out] == [x * x for x in range(7)], out
                assert len({o[1] for o in out}) == world.size
                print(f"rank {world.rank} ok", flush=True)
            elif mode == "die":
                if world.rank == 1:
                    os._exit(9)  # a rank killed mid-run, without any goodbye
                world.barrier()
                time.sleep(0.5)
                world.barrier()
                print("survived", flush=True)
            elif mode == "raise":
                err = ValueError("bad thing") if world.rank == 1 else None
                world.agree(err)
    except RankFailure as err:
        print(f"rank failure: {err}", flush=True)
        sys.exit(3)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [2, 3])
def test_map_gathered_over_ranks(tmp_path, nproc) -> None:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    from tests.distributed.conftest import torchrun_script

    proc = torchrun_script(script, ["map"], nproc)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(re.findall(r"rank \d+ ok", proc.stdout)) == [f"rank {r} ok" for r in range(nproc)]


@pytest.mark.slow
def test_killed_rank_ends_the_others_with_a_clear_error(tmp_path) -> None:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    from tests.distributed.conftest import torchrun_script

    start = time.monotonic()
    proc = torchrun_script(script, ["die"], 3, extra=["--max-restarts=0"])
    assert time.monotonic() - start < 60  # well within the 20 s collective timeout plus start-up
    assert proc.returncode != 0
    assert "survived" not in proc.stdout


@pytest.mark.slow
def test_error_on_one_rank_is_raised_on_all(tmp_path) -> None:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    from tests.distributed.conftest import torchrun_script

    proc = torchrun_script(script, ["raise"], 2)
    assert proc.returncode != 0
    assert "rank failure: rank 1 failed: ValueError: bad thing" in proc.stdout
    assert "ValueError: bad thing" in proc.stderr  # the failing rank's own error


def test_world_size_env_is_checked(monkeypatch) -> None:
    from saeseeds.distributed.world import launched_world_size
    from saeseeds.errors import SaeseedsError

    monkeypatch.setitem(os.environ, "WORLD_SIZE", "two")
    with pytest.raises(SaeseedsError, match="WORLD_SIZE"):
        launched_world_size()
    monkeypatch.setitem(os.environ, "WORLD_SIZE", "1")
    assert launched_world_size() == 1
    assert sys.modules["saeseeds.distributed.world"].current_world() == World()
    assert free_port() > 0
