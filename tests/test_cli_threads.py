"""Every verb takes --threads: torch and numba run with that many CPU threads during the command, and the
caller's settings come back afterwards; a negative count is one line and exit status 2."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import pytest
import torch

from saeseeds import threads
from saeseeds.cli import build_parser, main


def verbs() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("verb", sorted(verbs()))
def test_every_verb_has_threads(verb: str) -> None:
    parser = verbs()[verb]
    assert "--threads" in parser._option_string_actions
    # synthetic's SAEs are tiny: one thread by default; the demo, a first run, must not oversubscribe a shared box
    expected = {"synthetic": 1, "demo": "auto"}.get(verb, 0)
    assert parser.get_default("threads") == expected


def test_negative_threads_is_one_line(capsys: pytest.CaptureFixture, tmp_path) -> None:
    assert main(["compare", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "o"), "--threads", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threads: -1 must be ≥ 0" in err[0]


def test_threads_hold_during_the_command_and_are_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def fake_run(args: argparse.Namespace) -> int:
        seen["torch"] = torch.get_num_threads()
        if "numba" in sys.modules:
            import numba

            seen["numba"] = numba.get_num_threads()
        else:
            seen["numba"] = os.environ.get(threads.NUMBA_ENV)
        return 0

    monkeypatch.setattr("saeseeds.commands.report.run", fake_run)
    monkeypatch.delenv(threads.NUMBA_ENV, raising=False)
    before = torch.get_num_threads()
    assert main(["report", ".", "--threads", "1", "--quiet"]) == 0
    assert seen["torch"] == 1 and seen["numba"] in (1, "1")
    assert torch.get_num_threads() == before
    assert threads.NUMBA_ENV not in os.environ or "numba" in sys.modules
    seen.clear()
    assert main(["report", ".", "--quiet"]) == 0  # 0: the defaults are left alone
    assert seen["torch"] == before


def test_numba_already_imported_is_capped_and_restored() -> None:
    import numba

    before = numba.get_num_threads()
    with threads.cpu_threads(10_000):
        assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS  # never more than its pool
        assert torch.get_num_threads() == 10_000
    assert numba.get_num_threads() == before


@pytest.mark.parametrize(("cores", "load", "expected"), [(2, 0.0, 2), (2, 1.2, 1), (2, 7.0, 1), (16, 3.4, 13)])
def test_auto_threads_leave_the_cores_other_jobs_keep_busy(cores: int, load: float, expected: int) -> None:
    n, why = threads.fair_share(cores, load)
    assert n == expected and f"{cores} cores" in why and f"load {load:.1f}" in why


def test_auto_is_resolved_applied_and_said_on_stderr(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(threads, "fair_share", lambda: (1, "2 cores, 1-minute load 1.3 from other jobs"))
    seen: dict[str, int] = {}

    def fake_run(args: argparse.Namespace) -> int:
        seen["torch"] = torch.get_num_threads()
        logging.getLogger("saeseeds.commands.report").info("writing the report")
        return 0

    monkeypatch.setattr("saeseeds.commands.report.run", fake_run)
    assert main(["report", ".", "--threads", "auto"]) == 0
    assert seen["torch"] == 1
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == ["threads: 1 (auto: 2 cores, 1-minute load 1.3 from other jobs; --threads N to choose)",
                       "writing the report"]


def test_auto_threads_note_never_joins_a_refusal(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path) -> None:
    monkeypatch.setattr(threads, "fair_share", lambda: (1, "2 cores, 1-minute load 1.3 from other jobs"))
    assert main(["demo", "--out", str(tmp_path / "d"), "--train.bogus", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bogus" in err[0]


@pytest.mark.parametrize("value", ["x", "1.5", "-2"])
def test_a_threads_value_that_is_not_a_count_is_one_line(value: str, capsys, tmp_path) -> None:
    assert main(["compare", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "o"), "--threads", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threads" in err[0] and "auto" in err[0]
