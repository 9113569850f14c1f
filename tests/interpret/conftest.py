"""Fixtures shared by the interpret tests: one small real LM run for the whole session (never written to)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.interpret_run import build_interpret_run


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GPT-2 run of `helpers.interpret_run` (3 seeds of topk-32 at transformer.h.1.mlp)."""
    return build_interpret_run(tmp_path_factory.mktemp("interpret"))
