"""End to end: `saeseeds analyze` on a small real LM run (tiny GPT-2, 3 seeds, topk and relu) writes every output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import saeseeds as ss
from helpers.no_alignment import forbid_alignment
from saeseeds.cli import main

HOOK = "transformer.h.1.mlp"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers.tiny_lm import build_tiny_causal_lm
    from saeseeds.config import DataConfig, LmConfig, RunConfig, SaeConfig, TrainConfig
    from saeseeds.data.sources import build_source
    from saeseeds.training import train_run

    root = tmp_path_factory.mktemp("analyze")
    g = torch.Generator().manual_seed(0)
    words = [f"w{i}" for i in range(60)]
    docs = [" ".join(words[i] for i in torch.randint(0, 60, (30,), generator=g).tolist()) for _ in range(400)]
    (root / "corpus.txt").write_text("\n".join(docs))
    lm = build_tiny_causal_lm(root / "lm", docs, d_model=16, n_layer=2)
    cfg = RunConfig(
        data=DataConfig(source="lm"),
        lm=LmConfig(model=str(lm), hookpoints=[HOOK], dataset=str(root / "corpus.txt"), ctx_len=24,
                    eval_chunks=12, lm_batch_size=16),
        train=TrainConfig(seeds=[0, 1, 2], batch_size=128, num_tokens=2560, eval_tokens=256, progress=False,
                          lr_warmup_steps=5, checkpoint_every=1000),
        saes=[SaeConfig(architecture="topk", num_latents=48, k=4),
              SaeConfig(architecture="relu", num_latents=48, l1_coefficient=0.5)],
    )
    train_run(cfg, build_source(cfg), root / "run")
    return root / "run"


def test_analyze_writes_tables_figures_and_contexts(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc = main(["analyze", str(run_dir), "--out", str(out), "--quiet", "--n-random", "2", "--n-show", "3",
               "--max-eval-chunks", "8", "--lm-loss"])
    assert rc == 0
    summary = json.loads((out / "analysis.json").read_text())
    assert set(summary["configs"]) == {f"{HOOK}/topk-48", f"{HOOK}/relu-48"}
    for name in ("topk-48", "relu-48"):
        d = out / HOOK / name
        for f in ("stability.json", "triggers.json", "ablation.json", "subspaces.json", "claims.json",
                  "latents.json", "stability_vs_frequency.png", "stability_vs_top_token_share.png",
                  "ablation_fvu.png", "ablation_loss_recovered.png", "contexts.html"):
            assert (d / f).is_file() and (d / f).stat().st_size > 0, f
        assert (d / "stability_vs_frequency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        abl = json.loads((d / "ablation.json").read_text())
        rows = {r["name"]: r for r in abl["rows"]}
        assert abl["lm_loss"] == "ok"
        assert rows["none"]["metrics"]["fvu"] < rows["all"]["metrics"]["fvu"]
        assert rows["random_like_stable"]["n_draws"] == 2
        assert rows["none"]["metrics"]["loss_recovered"] > rows["all"]["metrics"]["loss_recovered"]
        stab = json.loads((d / "stability.json").read_text())
        assert [s["seed"] for s in stab["per_seed"]] == [0, 1, 2]
        latents = json.loads((d / "latents.json").read_text())
        assert len(latents["stability"]) == len(latents["frequency"]) == 48
        html = (d / "contexts.html").read_text()
        assert "<mark>" in html and "least stable" in html and "<script" not in html
        # the other estimator's reading skips the model passes: its prediction verdict says so, and changes nothing
        pred = json.loads((d / "claims.json").read_text())["stable_carry_prediction"]
        assert pred["alternate"]["holds"] is None and "not run under the other estimator" in pred["alternate"]["reason"]
        assert pred["estimator_changes_answer"] is False
        assert pred["per_seed"][0]["draws"] == 2 and "descriptive" in pred["per_seed"][0]


def test_analyze_rejects_a_directory_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["analyze", str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 2
    assert "run.json" in capsys.readouterr().err


def test_contexts_page_escapes_corpus_text(tmp_path: Path) -> None:
    from saeseeds.analysis.triggers import ContextExample
    from saeseeds.report.contexts_html import LatentSection, write_contexts_page

    ex = ContextExample(latent=3, activation=2.5, chunk=0, position=1, tokens=["a&b", "<script>", "\"x\""],
                        marked=1, token_id=7)
    path = write_contexts_page(tmp_path / "c.html", "t <1>", {"least stable": [LatentSection(3, "s<>", [ex])],
                                                               "most stable": []})
    html = path.read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<mark>&lt;script&gt;</mark>" in html and "a&amp;b" in html and "t &lt;1&gt;" in html
    assert "(none)" in html


def test_analyze_after_compare_aligns_nothing(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["compare", str(run_dir), "--out", str(tmp_path / "cmp"), "--quiet"]) == 0
    forbid_alignment(monkeypatch)
    rc = main(["analyze", str(run_dir), "--compare", str(tmp_path / "cmp"), "--out", str(tmp_path / "an"),
               "--quiet", "--n-random", "2", "--no-lm-loss", "--config", "topk-48"])
    assert rc == 0
    assert not (tmp_path / "an" / "cross_seed").exists()  # nothing computed here, so nothing stored
    # a different threshold re-judges the stored matchings: still no alignment
    rc = main(["analyze", str(run_dir), "--compare", str(tmp_path / "cmp"), "--out", str(tmp_path / "an2"),
               "--quiet", "--n-random", "2", "--no-lm-loss", "--config", "topk-48", "--threshold", "0.5"])
    assert rc == 0
    claims = json.loads((tmp_path / "an2" / HOOK / "topk-48" / "stability.json").read_text())
    assert claims["rule"]["threshold"] == 0.5


@pytest.mark.parametrize("kind", ["shared", "reappears"])
def test_compare_saved_stability_is_what_analyze_uses(run_dir: Path, tmp_path: Path, kind: str) -> None:
    cmp = tmp_path / "cmp"
    assert main(["compare", str(run_dir), "--out", str(cmp), "--quiet", "--stability", kind]) == 0
    summary = json.loads((cmp / "summary.json").read_text())
    rule = ss.SharingRule(stability=kind)
    opts = ss.AnalyzeOptions(rule=rule, n_random=2, lm_loss=False)
    analyses = {a.sae_name: a for a in ss.analyze(run_dir, cross=cmp, options=opts)}
    assert set(analyses) == {"topk-48", "relu-48"}
    for entry in summary["sets"]:
        analysis = analyses[entry["sae_name"]]
        for i, groups in enumerate(analysis.stability.groups):
            with np.load(cmp / entry["dir"] / "latents" / f"{i}.npz") as saved:
                np.testing.assert_array_equal(groups.stability, saved[f"stability_{kind}"])
                np.testing.assert_array_equal(groups.stable, saved["stable"])
                np.testing.assert_array_equal(groups.unstable, saved["unstable"])


def test_analyze_refuses_a_compare_of_other_weights(run_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    cmp = tmp_path / "cmp"
    assert main(["compare", str(run_dir), "--out", str(cmp), "--quiet"]) == 0
    latents = next((cmp / "sets").iterdir()) / "cross_seed.json"
    record = json.loads(latents.read_text())
    record["digests"][0] = "0" * 64
    latents.write_text(json.dumps(record))
    rc = main(["analyze", str(run_dir), "--compare", str(cmp), "--out", str(tmp_path / "an"), "--quiet",
               "--no-lm-loss"])
    assert rc == 2
    assert "digests differ" in capsys.readouterr().err


def test_analysis_tokens_extend_the_held_out_rows_with_training_rows(run_dir: Path, tmp_path: Path) -> None:
    opts = ss.AnalyzeOptions(n_random=19, lm_loss=False, max_tokens=1500, lm_train_rows=True)
    analyses = ss.analyze(run_dir, options=opts, configs=["topk-48"], out=tmp_path / "an")
    summary = json.loads((tmp_path / "an" / "analysis.json").read_text())
    info = summary["analysis_tokens"]
    assert info["tokens"] == 1500 and info["train_rows"] > 0 and info["held_out_rows"] + info["train_rows"] == 1500
    assert info["lm_forward"] is True and info["distinct"] is True
    assert analyses[0].triggers.stats[0].tokens_seen == 1500
    claims = json.loads((tmp_path / "an" / HOOK / "topk-48" / "claims.json").read_text())
    assert claims.pop("schema") == "saeseeds.claims/1" and claims.pop("saeseeds_version")  # the stamp, beside claims
    for verdict in claims.values():
        assert verdict["holds"] in (True, False, None) and "p_holm" in verdict and "effect_size" in verdict
    assert claims["stable_carry_prediction"]["holds"] is None  # lm_loss=False
    only_held_out = ss.analyze(run_dir, options=ss.AnalyzeOptions(n_random=19, lm_loss=False, max_tokens=0),
                               configs=["topk-48"])
    assert only_held_out[0].triggers.stats[0].tokens_seen == info["held_out_rows"]


def test_analyze_an_array_run_reads_training_rows(tmp_path: Path) -> None:
    from saeseeds.config import DataConfig, RunConfig, SaeConfig, TrainConfig
    from saeseeds.data.sources import build_source
    from saeseeds.training import train_run

    arr = np.random.default_rng(0).standard_normal((3000, 8)).astype(np.float32)
    np.save(tmp_path / "acts.npy", arr)
    cfg = RunConfig(
        data=DataConfig(source="npy", path=str(tmp_path / "acts.npy")),
        train=TrainConfig(seeds=[0, 1], batch_size=128, num_tokens=1280, eval_tokens=128, progress=False,
                          lr_warmup_steps=2, checkpoint_every=1000),
        saes=[SaeConfig(architecture="topk", num_latents=16, k=2)],
    )
    train_run(cfg, build_source(cfg), tmp_path / "run")
    res = ss.analyze(tmp_path / "run", options=ss.AnalyzeOptions(n_random=19, max_tokens=2000))
    assert res[0].analysis_tokens["tokens"] == 2000
    assert res[0].claims["unstable_more_token_specific"].holds is None  # no token ids


def test_analyze_default_path_runs_no_language_model(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    """docs/design.md: analyze never re-runs the LM on the default path; --analysis-tokens N asks for it."""
    import saeseeds.data.lm_source as lm_source

    def no_model(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the default analyze path loaded or ran the language model")

    monkeypatch.setattr(lm_source, "load_language_model", no_model)
    monkeypatch.setattr(lm_source.LmActivationStream, "__init__", no_model)
    rc = main(["analyze", str(run_dir), "--out", str(tmp_path / "an"), "--n-random", "2", "--n-show", "1",
               "--config", "topk-48"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "no LM forward" in out and "--analysis-tokens N" in out  # named in the command's output
    info = json.loads((tmp_path / "an" / "analysis.json").read_text())["analysis_tokens"]
    assert info["lm_forward"] is False and info["train_rows"] == 0 and info["tokens"] == info["held_out_rows"]
    claims = json.loads((tmp_path / "an" / HOOK / "topk-48" / "claims.json").read_text())
    assert claims["stable_carry_prediction"]["holds"] is None  # the model-based ablation was not asked for


def test_analysis_tokens_of_an_array_run_are_distinct_rows(tmp_path: Path) -> None:
    """A budget above the file's rows gives every row once (training cycled them; the analysis must not)."""
    from saeseeds.config import DataConfig, RunConfig, SaeConfig, TrainConfig
    from saeseeds.data.sources import build_source
    from saeseeds.training import train_run

    arr = np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32)
    np.save(tmp_path / "acts.npy", arr)
    cfg = RunConfig(
        data=DataConfig(source="npy", path=str(tmp_path / "acts.npy"), eval_fraction=0.1),
        train=TrainConfig(seeds=[0, 1], batch_size=64, num_tokens=1280, eval_tokens=64, progress=False,
                          lr_warmup_steps=2, checkpoint_every=1000),
        saes=[SaeConfig(architecture="topk", num_latents=16, k=2)],
    )
    train_run(cfg, build_source(cfg), tmp_path / "run")  # 1,280 training tokens: 270 rows cycled ~5 times
    res = ss.analyze(tmp_path / "run", options=ss.AnalyzeOptions(n_random=19, max_tokens=262_144))
    info = res[0].analysis_tokens
    assert info["train_rows"] == info["train_rows_available"] == 270
    assert info["tokens"] == info["held_out_rows"] + 270 <= 300 and info["distinct"] is True
    assert res[0].triggers.stats[0].tokens_seen == info["tokens"]


def test_claims_name_their_paper_estimator_and_the_other_estimators_answer(run_dir: Path, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    """Gerasimov et al.'s claims are judged with their estimator (decoder reappearance) by default, P&B's sharing
    beside it; the descriptive answer and Holm over the run's configurations are recorded too."""
    out = tmp_path / "an"
    assert main(["analyze", str(run_dir), "--out", str(out), "--n-random", "99", "--n-show", "1"]) == 0
    printed = capsys.readouterr().out
    assert "stable_carry_reconstruction [reappears]: " in printed and "under shared: " in printed
    assert "as the paper states it: " in printed
    d = out / HOOK / "topk-48"
    assert json.loads((d / "stability.json").read_text())["rule"]["stability"] == "reappears"
    claims = json.loads((d / "claims.json").read_text())
    for name in ("stable_carry_reconstruction", "stable_carry_prediction", "unstable_rarer",
                 "unstable_more_token_specific", "unstable_spans_reproducible"):
        verdict = claims[name]
        assert verdict["paper"].startswith("Gerasimov") and verdict["stability"]["estimator"] == "reappears"
        assert verdict["alternate"]["stability"]["estimator"] == "shared"
        assert isinstance(verdict["estimator_changes_answer"], bool) and "run_holm" in verdict
    assert "descriptive" in claims["stable_carry_reconstruction"] and "low_rank" in claims["unstable_spans_reproducible"]
    summary = json.loads((out / "analysis.json").read_text())
    run = summary["holm_run"]
    decided = [f"{c}: {n}" for c, conf in summary["configs"].items() for n, v in conf["claims"].items()
               if v["holds"] is not None]
    # every p can reach 1/100 at best: Holm over the run takes them all while m ≤ 5 (0.01 ≤ 0.05/m), none beyond
    # (all tied at the cut), and says so claim by claim
    assert run["family"] == (len(decided) if len(decided) <= 5 else 0) and len(decided) > 0
    for config, conf in summary["configs"].items():
        for name, verdict in conf["claims"].items():
            entry = verdict["run_holm"]
            assert entry["family"] == run["family"]
            assert (entry["holds"] is None) == (f"{config}: {name}" not in run["members"])
    brief = summary["configs"][f"{HOOK}/topk-48"]["claims"]["stable_carry_reconstruction"]
    assert brief["stability"] == "reappears" and brief["alternate"]["stability"] == "shared"
    # the report labels each answer with its question and shows both estimators' answers
    html = ss.write_report(out, tmp_path / "report.html", max_latents=0).read_text()
    assert "stable carry reconstruction [reappears]" in html and "frequency-adjusted: " in html
    assert "stable carry reconstruction — as the paper states it" in html and "share of ablation harm" in html
    assert "Answers under both stability estimators" in html and "test (shared)" in html
