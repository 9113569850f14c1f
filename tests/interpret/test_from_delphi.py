"""`saeseeds interpret RUN --from-delphi DIR` on the tiny LM run, with delphi-format files written here (one folder
per seed, named as docs/ecosystem.md's delphi command names them, module = the hookpoint without GPT-2's
`transformer.` wrapper): explanations and scores are delphi's, only the latents delphi scored are sampled, the
claims and outputs are built as usual; a missing or broken delphi directory is one line, exit 2, nothing written."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from helpers.interpret_run import CONFIG, SMALL
from helpers.sandbox import changes, run_in_process, snapshot
from saeseeds.interpret.delphi import read_delphi

SEEDS = ("seed0", "seed1", "seed2")
MODULE = "h.1.mlp"
WORDS = ("zebra", "river", "number", "comma", "verb", "plural", "greeting")


def _records(latent: int, seed: int) -> list[dict]:
    """delphi ClassifierOutput records: 5 activating, 5 not; how many negatives score high depends on the latent."""
    wrong = (latent + seed) % 4
    pos = [{"activating": True, "prediction": True, "probability": 0.9 - 0.05 * i} for i in range(5)]
    neg = [{"activating": False, "prediction": i < wrong, "probability": 0.95 if i < wrong else 0.1} for i in range(5)]
    return [{"str_tokens": [" w1", " w2"], "activations": [0.0, 1.0 if r["activating"] else 0.0], "distance": 0,
             "correct": r["prediction"] == r["activating"], **r} for r in pos + neg]


def write_delphi(root: Path, scored: set[int], explained: set[int]) -> Path:
    """delphi's results/ folder for the run's three seeds: explanations for `explained`, detection and fuzz records
    for `scored` (a subset of it)."""
    for s, seed in enumerate(SEEDS):
        folder = root / f"saeseeds-{CONFIG}-{seed}"
        (folder / "explanations").mkdir(parents=True)
        for scorer in ("detection", "fuzz"):
            (folder / "scores" / scorer).mkdir(parents=True)
        for x in sorted(explained):
            text = f"the {WORDS[x % 7]} and {WORDS[(x // 7) % 7]} tokens"
            (folder / "explanations" / f"{MODULE}_latent{x}.txt").write_text(json.dumps(text))
            if x in scored:
                for scorer in ("detection", "fuzz"):
                    (folder / "scores" / scorer / f"{MODULE}_latent{x}.txt").write_text(json.dumps(_records(x, s)))
    return root


SCORED = set(range(0, 32, 2))
EXPLAINED = SCORED | {1, 3, 5, 7, 9}


@pytest.fixture(scope="module")
def delphi_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_delphi(tmp_path_factory.mktemp("delphi") / "results", SCORED, EXPLAINED)


def test_delphi_s_explanations_and_scores_are_analysed_on_the_latents_it_scored(
        run_dir: Path, delphi_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "interp"
    before = snapshot(delphi_dir)
    got = run_in_process(["interpret", str(run_dir), "--out", str(out), "--from-delphi", str(delphi_dir), *SMALL],
                         capsys)
    got.assert_ok()
    assert changes(before, snapshot(delphi_dir)) == []
    assert "delphi scored 16 of 32 latents; the 16 it did not are left out" in got.stderr
    record = json.loads((out / "interpret.json").read_text())
    assert record["explainer"] == {"name": "delphi", "scorer": "delphi detection / fuzz", "lexical": False,
                                   "label": "LLM explanations (delphi)"}
    assert (out / record["inputs"]["delphi"]).resolve() == delphi_dir.resolve()
    (_, entry), = record["sets"].items()
    sampled = [(seed, x) for seed, groups in entry["samples"].items() for ids in groups.values() for x in ids]
    assert sampled and all(x in SCORED for _, x in sampled)  # an unscored latent is never sampled
    for count in entry["groups"]:
        for g in ("shared", "unshared", "stable", "unstable"):
            assert count[g]["eligible"] <= count[g]["delphi_scored"] <= count[g]["latents"]
    assert sum(c[g]["delphi_scored"] for c in entry["groups"] for g in ("shared", "unshared")) == 3 * len(SCORED)
    truth = {seed: read_delphi(delphi_dir / f"saeseeds-{CONFIG}-{seed}", MODULE) for seed in SEEDS}
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert {(r["seed"], int(r["latent"])) for r in rows} == set(sampled)
    for r in rows:
        found = truth[r["seed"]][int(r["latent"])]
        assert r["explanation"] == found.explanation.text and r["explainer"] == "delphi"
        assert float(r["detection_auroc"]) == pytest.approx(found.scores["detection"].auroc)
        assert float(r["fuzz_balanced_accuracy"]) == pytest.approx(found.scores["fuzz"].balanced_accuracy)
        assert (r["n_activating"], r["n_non_activating"]) == ("5", "5")
    assert len({r["detection_auroc"] for r in rows}) > 1
    partners = [r for r in csv.DictReader((out / "explanations.csv").open()) if r["role"] == "partner"]
    for r in partners:
        x = int(r["latent"])
        assert (r["explanation"] != "") == (x in EXPLAINED)
        assert (r["note"] == "delphi did not explain this latent") == (x not in EXPLAINED)
    claims = entry["claims"]
    assert claims["unstable_more_lexical"]["holds"] is None and "token explainer" in claims["unstable_more_lexical"][
        "reason"]
    assert math.isfinite(claims["unshared_interpretable_as_shared"]["per_seed"][0]["effect"])
    assert any(p.get("n_pairs", 0) >= 1 for p in claims["explanation_similarity_tracks_cosine"]["per_seed"])


def _break_score_file(root: Path) -> Path:
    path = root / f"saeseeds-{CONFIG}-seed1" / "scores" / "detection" / f"{MODULE}_latent2.txt"
    path.write_text("{not json")
    return path


@pytest.mark.parametrize("case", ["missing", "no seed folder", "broken file", "other module", "with --explainer"])
def test_a_missing_or_broken_delphi_directory_is_one_line_and_nothing_is_written(
        run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, case: str) -> None:
    root = tmp_path / "results"
    extra: list[str] = []
    if case == "missing":
        keys = ["--from-delphi", "not a directory"]
    else:
        write_delphi(root, {0, 2}, {0, 2})
        if case == "no seed folder":
            (root / f"saeseeds-{CONFIG}-seed2").rename(root / "elsewhere")
            keys = [f"saeseeds-{CONFIG}-seed2", CONFIG]
        elif case == "broken file":
            keys = [str(_break_score_file(root)), "not a delphi JSON file"]
        elif case == "other module":
            for path in (root / f"saeseeds-{CONFIG}-seed0" / "explanations").iterdir():
                path.rename(path.with_name(path.name.replace(MODULE, "h.0.mlp")))
            keys = ["no module for hookpoint 'transformer.h.1.mlp'", "tried transformer.h.1.mlp, h.1.mlp",
                    "modules there: h.0.mlp"]
        else:
            extra, keys = ["--explainer", "tokens"], ["--from-delphi", "--explainer"]
    before = snapshot(tmp_path), snapshot(run_dir)
    out = tmp_path / "o"
    got = run_in_process(["interpret", str(run_dir), "--out", str(out), "--from-delphi", str(root), *extra,
                          *SMALL], capsys)
    got.assert_refused("interpret", *keys)
    assert changes(before[0], snapshot(tmp_path)) == [] and changes(before[1], snapshot(run_dir)) == []
