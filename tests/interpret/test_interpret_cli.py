"""End to end on a small real LM run (tiny GPT-2, 3 seeds): `saeseeds interpret` writes its outputs from the stored
rows with no LM forward, refuses bad inputs in one line without touching anything, and a backend that dies
mid-way loses nothing already scored: the rerun continues from the journal."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import saeseeds as ss
from helpers.interpret_run import SMALL
from helpers.sandbox import changes, run_in_process, snapshot
from saeseeds.interpret.backends.tokens import TokensExplainer, TokensScorer
from saeseeds.interpret.interface import BackendError, ResponseError
from saeseeds.interpret.pipeline import InterpretOptions
from saeseeds.interpret.sampling import SamplingOptions

OPTS = InterpretOptions(sampling=SamplingOptions(latents=6, window=6, n_top=3, n_explain_random=2, n_score=6,
                                                 min_split=2, freq_bins=2), n_draws=19, batch=2)


@pytest.fixture(scope="module")
def compared(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compare output of the run (aligned once for the module)."""
    out = tmp_path_factory.mktemp("cmp") / "cmp"
    ss.save_comparison(ss.compare_all(run_dir), out)
    return out


def test_interpret_writes_explanations_scores_and_claims_without_an_lm_forward(
        run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import saeseeds.data.lm_source as lm_source

    def no_model(*_a: object, **_k: object) -> None:
        raise AssertionError("interpret ran the language model on its default path")

    monkeypatch.setattr(lm_source, "load_language_model", no_model)
    out = tmp_path / "interp"
    got = run_in_process(["interpret", str(run_dir), "--out", str(out), *SMALL], capsys)
    got.assert_ok()
    assert "lexical baseline" in got.stdout and "unshared_interpretable_as_shared" in got.stdout
    record = json.loads((out / "interpret.json").read_text())
    assert record["schema"] == "saeseeds.interpret/1" and record["explainer"]["label"] == "lexical baseline"
    assert record["analysis_rows"][0]["lm_forward"] is False and record["inputs"]["computed"] is True
    (label, entry), = record["sets"].items()
    assert set(entry["claims"]) == {"unshared_interpretable_as_shared", "unstable_more_lexical",
                                    "explanation_similarity_tracks_cosine"}
    assert json.loads((out / ".saeseeds-output.json").read_text())["kind"] == "interpret"
    assert not (out / ".journal").exists()
    scores = list(csv.DictReader((out / "scores.csv").open()))
    explained = list(csv.DictReader((out / "explanations.csv").open()))
    assert scores and all(r["role"] == "sampled" and r["detection_auroc"] for r in scores)
    assert {"stability_shared", "stability_reappears", "firing_frequency", "partners"} <= set(scores[0])
    assert len(explained) >= len(scores) and any(r["role"] == "partner" for r in explained)
    sampled = {(r["seed"], int(r["latent"])) for r in scores}
    for seed, groups in entry["samples"].items():
        assert all((seed, x) in sampled for ids in groups.values() for x in ids)
        assert len(groups["shared"]) == len(groups["unshared"]) and len(groups["stable"]) == len(groups["unstable"])


@pytest.mark.parametrize(("argv", "keys"), [
    (["--latents", "0"], ["--latents", "0"]),
    (["--explainer", "gpt5"], ["--explainer", "tokens", "hf:PATH", "openai:URL"]),
    (["--margin", "0.7"], ["--margin"]),
])
def test_bad_flags_are_refused_in_one_line_and_nothing_is_written(run_dir: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture, argv: list[str],
                                                                   keys: list[str]) -> None:
    before = snapshot(tmp_path), snapshot(run_dir)
    got = run_in_process(["interpret", str(run_dir), "--out", str(tmp_path / "o"), *argv], capsys)
    got.assert_refused("interpret", *keys)
    assert changes(before[0], snapshot(tmp_path)) == [] and changes(before[1], snapshot(run_dir)) == []


def test_a_directory_that_is_not_a_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "junk").mkdir()
    before = snapshot(tmp_path)
    got = run_in_process(["interpret", str(tmp_path / "junk"), "--out", str(tmp_path / "o")], capsys)
    got.assert_refused("interpret", "junk", "run directory")
    assert changes(before, snapshot(tmp_path)) == []


class DiesAfter(TokensExplainer):
    """The tokens explainer, but the backend dies after `n` latents (an endpoint that goes away)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.calls = n, 0

    def explain(self, records):
        out = []
        for r in records:
            if self.calls >= self.n:
                raise BackendError("endpoint unreachable")
            self.calls += 1
            out.append(self.explain_one(r))
        return out


def test_a_backend_that_dies_loses_nothing_scored_and_the_rerun_continues(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "interp"
    with pytest.raises(BackendError):
        ss.interpret(run_dir, out=out, explainer=(DiesAfter(4), TokensScorer()), options=OPTS)
    journal = list((out / ".journal").glob("*.jsonl"))
    assert len(journal) == 1 and len(journal[0].read_text().splitlines()) == 4  # two batches of 2, then it died
    assert not (out / "interpret.json").exists()
    again = DiesAfter(10_000)
    result = ss.interpret(run_dir, out=out, explainer=(again, TokensScorer()), options=OPTS)
    assert again.calls == len(result.rows) - 4  # only what was not journaled
    fresh = ss.interpret(run_dir, out=tmp_path / "fresh", options=OPTS)
    assert fresh.rows == result.rows  # resuming gives exactly what an uninterrupted run gives
    assert not (out / ".journal").exists() and (out / "interpret.json").is_file()


class FailsFirstOfThirdBatch(TokensExplainer):
    """The tokens explainer, but the third explain call's FIRST record gets a malformed answer: the others of that
    call succeed and come back in `ResponseError.completed` (not in record order with the failed one)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def explain(self, records):
        self.calls += 1
        if self.calls == 3:
            raise ResponseError(records[0].key, "not an explanation", [self.explain_one(r) for r in records[1:]])
        return [self.explain_one(r) for r in records]


def test_a_malformed_answer_keeps_the_others_of_its_call_each_under_its_own_latent(run_dir: Path,
                                                                                   tmp_path: Path) -> None:
    """What a backend completed before a malformed answer is journaled by key: the latent after the failed one once
    was once journaled with the next one's explanation (matched by position)."""
    out = tmp_path / "interp"
    with pytest.raises(ResponseError) as err:
        ss.interpret(run_dir, out=out, explainer=(FailsFirstOfThirdBatch(), TokensScorer()), options=OPTS)
    journal = [json.loads(line) for line in next((out / ".journal").glob("*.jsonl")).read_text().splitlines()]
    assert len(journal) == 5 and err.value.key not in {r["key"] for r in journal}  # 2 + 2 + the one completed
    fresh = {r["key"]: r for r in ss.interpret(run_dir, out=tmp_path / "fresh", options=OPTS).rows}
    for row in journal:
        assert row["explanation"] == fresh[row["key"]]["explanation"]
        assert row.get("detection_auroc") == fresh[row["key"]].get("detection_auroc")


def test_a_compare_output_is_read_and_nothing_is_aligned_again(compared: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers.no_alignment import forbid_alignment

    forbid_alignment(monkeypatch)
    result = ss.interpret(compared, out=tmp_path / "interp", options=OPTS)
    assert result.record["inputs"]["computed"] is False
    assert (tmp_path / "interp" / result.record["inputs"]["compare"]).resolve() == compared.resolve()


def test_the_report_shows_explanations_scores_partners_and_claims(compared: Path, tmp_path: Path) -> None:
    """Reported alone, an interpret output follows its comparison to the latent pages: each interpreted latent
    shows its explanation and score, and its partners' explanations in the other seeds; the claims get a table."""
    import html
    import re

    result = ss.interpret(compared, out=tmp_path / "interp", options=OPTS)
    page = ss.write_report(tmp_path / "interp", max_latents=8, contexts=False).read_text()
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    scored = [r for r in result.rows if r["role"] == "sampled" and r["seed"] == "seed0"]
    assert scored and all(r["explanation"] in text for r in scored)
    assert "detection AUROC" in text and "partner's explanation" in text
    partner = next(p for p in scored[0]["partners"] if p["latent"] >= 0)
    row = next(r for r in result.rows if r["seed"] == partner["seed"] and r["latent"] == partner["latent"])
    assert row["explanation"] and row["explanation"] in text
    for claim in ("unshared interpretable as shared", "unstable more lexical", "explanation similarity tracks cosine"):
        assert claim in text
    assert "lexical baseline" in text


def test_more_rows_are_read_only_when_asked_and_named_in_the_output(compared: Path, tmp_path: Path) -> None:
    result = ss.interpret(compared, out=tmp_path / "interp", options=OPTS, analysis_tokens=1500)
    rows = result.record["analysis_rows"][0]
    assert rows["lm_forward"] is True and rows["train_rows"] > 0 and rows["tokens"] <= 1500
    assert rows["held_out_rows"] + rows["train_rows"] == rows["tokens"]
