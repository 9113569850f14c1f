"""Launch saeseeds under torchrun with 2-3 CPU processes (gloo) for the distributed tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun(args: list[str], nproc: int, *, timeout: float = 240, env: dict[str, str] | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`torchrun --nproc-per-node N -m saeseeds ARGS` on loopback; one thread per rank (2 cores here)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--nnodes=1",
           "--master-addr=127.0.0.1", f"--master-port={free_port()}", "-m", "saeseeds", *args]
    full_env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    full_env |= env or {}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd)


@pytest.fixture
def run_torchrun():
    return torchrun


def torchrun_script(script: Path, args: list[str], nproc: int, *, extra: list[str] | None = None,
                    timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`torchrun --nproc-per-node N SCRIPT ARGS` (a test's own job script)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--nnodes=1",
           "--master-addr=127.0.0.1", f"--master-port={free_port()}", *(extra or []), str(script), *args]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
