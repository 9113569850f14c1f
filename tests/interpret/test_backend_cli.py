"""`saeseeds interpret --explainer hf:PATH | openai:URL#MODEL` end to end on the tiny LM run, with the tiny local
chat LM (tests/helpers/tiny_chat_lm.py: random weights, answers only yes/no) on disk and behind the real HTTP test
server (tests/helpers/chat_server.py). They prove the CLI wiring, the outputs and the response cache (a rerun asks
the endpoint nothing), not the quality of the explanations. Very few latents, so each stays well under 30 s."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from helpers.chat_server import ChatServer
from helpers.sandbox import run_in_process
from helpers.tiny_chat_lm import shared_answering_chat_lm

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--latents", "1", "--window", "6", "--n-top", "2", "--n-explain-random", "1", "--n-score", "3",
        "--min-split", "2", "--freq-bins", "1", "--n-draws", "9", "--batch", "4", "--quiet"]


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_answering_chat_lm(tmp_path_factory)


def _scores(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "scores.csv").open()))


def _check_output(out: Path, name: str) -> list[dict[str, str]]:
    """The output is complete: an LLM explainer named `name`, every sampled latent explained and scored."""
    record = json.loads((out / "interpret.json").read_text())
    assert record["explainer"]["name"] == name and record["explainer"]["lexical"] is False
    rows = _scores(out)
    assert rows and all(r["explainer"] == name and r["explanation"] and r["detection_auroc"] for r in rows)
    assert all(0.0 <= float(r["detection_auroc"]) <= 1.0 for r in rows)
    claims = next(iter(record["sets"].values()))["claims"]
    assert claims["unstable_more_lexical"]["holds"] is None  # the lexical claim needs the token explainer
    return rows


def test_the_hf_backend_through_the_cli(run_dir: Path, lm_dir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "hf"
    got = run_in_process(["interpret", str(run_dir), "--out", str(out), "--explainer", f"hf:{lm_dir}", *TINY], capsys)
    got.assert_ok()
    _check_output(out, f"hf:{lm_dir.resolve()}")
    assert not (out / ".cache").exists()  # hf: is local and deterministic, nothing is cached


def test_the_openai_backend_through_the_cli_and_a_rerun_asks_nothing(run_dir: Path, lm_dir: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "openai"
    with ChatServer(lm_dir) as server:
        argv = ["interpret", str(run_dir), "--out", str(out), "--explainer", f"openai:{server.url}#tiny", *TINY]
        got = run_in_process(argv, capsys)
        got.assert_ok()
        first = _check_output(out, f"openai:{server.url}#tiny")
        asked = server.requests
        assert server.chat_requests > len(first) and any((out / ".cache").rglob("*.json"))
        again = run_in_process([*argv, "--overwrite"], capsys)
        again.assert_ok()
        assert server.requests == asked  # every answer came from the cache in --out: zero HTTP requests
    assert _scores(out) == first


def test_a_model_that_cannot_be_used_is_refused_before_any_alignment(run_dir: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend is built first: a path that is no causal LM is one line at once, not after the seeds' alignment."""
    from helpers.no_alignment import forbid_alignment

    forbid_alignment(monkeypatch)
    (tmp_path / "not-a-model").mkdir()
    got = run_in_process(["interpret", str(run_dir), "--out", str(tmp_path / "o"), "--explainer",
                          f"hf:{tmp_path / 'not-a-model'}", *TINY], capsys)
    got.assert_refused("interpret", "not-a-model")
    assert not (tmp_path / "o").exists()
