"""A causal-LM run end to end on a tiny GPT-2 built offline: `train` writes and prints LM loss recovered (the
sparsify-style hookpoint `h.1.mlp` resolving to the HF module), the run survives a `cd` (its relative model path
is recorded relative to the run), `--lm.model` overrides the model in `analyze` and `pool`, checked against the
recorded architecture, and `analyze --lm-loss` reports the SAE's LM loss even when no latent is stable."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from saeseeds.cli import main

HOOK = "transformer.h.1.mlp"
HOOK0 = "transformer.h.0.mlp"
"""The MLP the tiny LM relies on: zero-ablating it doubles the loss (h.1's barely moves it)."""
pytestmark = pytest.mark.usefixtures("one_thread")


def _docs() -> list[str]:
    """Documents where each word mostly follows from the previous one (w_i → w_(7i+3) mod 40), so a trained LM
    has something to predict and its MLP matters."""
    g = torch.Generator().manual_seed(0)
    docs = []
    for _ in range(300):
        word, out = int(torch.randint(0, 40, (1,), generator=g)), []
        for _ in range(30):
            out.append(f"w{word}")
            jump = float(torch.rand(1, generator=g)) < 0.2
            word = int(torch.randint(0, 40, (1,), generator=g)) if jump else (7 * word + 3) % 40
        docs.append(" ".join(out))
    return docs


def _config(root: Path, model: str, *, extra: str = "") -> Path:
    """A TOML run config over the tiny LM (relative paths as typed by a user standing in `root`)."""
    text = f"""
[data]
source = "lm"
[lm]
model = "{model}"
hookpoints = ["h.0.mlp", "h.1.mlp"]
dataset = "corpus.txt"
ctx_len = 24
eval_chunks = 16
lm_batch_size = 16
[train]
seeds = [0, 1]
batch_size = 128
num_tokens = 2048
eval_tokens = 256
progress = false
lr_warmup_steps = 5
checkpoint_every = 1000
{extra}
[[sae]]
architecture = "topk"
num_latents = 32
k = 4
[[sae]]
architecture = "relu"
num_latents = 32
l1_coefficient = 0.5
"""
    path = root / "run.toml"
    path.write_text(text)
    return path


def _train(root: Path, out: str, *args: str) -> tuple[int, str]:
    """`saeseeds train run.toml --out OUT` from `root`, as a user would type it; (exit status, stdout)."""
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        mp.chdir(root)
        rc = main(["train", "run.toml", "--out", out, *args])
    return rc, stdout.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(root holding models/tiny, corpus.txt and runs/lm, train's stdout): trained with `./models/tiny`."""
    from helpers.tiny_lm import build_tiny_causal_lm, train_tiny_causal_lm

    root = tmp_path_factory.mktemp("lmloss")
    docs = _docs()
    (root / "corpus.txt").write_text("\n".join(docs))
    train_tiny_causal_lm(build_tiny_causal_lm(root / "models" / "tiny", docs, d_model=16, n_layer=2), docs, steps=400)
    _config(root, "./models/tiny")
    rc, out = _train(root, "runs/lm")
    assert rc == 0
    return root, out


def test_train_writes_and_prints_lm_loss_recovered(trained: tuple[Path, str]) -> None:
    root, stdout = trained
    run = root / "runs" / "lm"
    manifest = json.loads((run / "run.json").read_text())
    hooks = (HOOK0, HOOK)
    assert {s["hookpoint"] for s in manifest["saes"]} == set(hooks)  # h.N.mlp (sparsify's names) resolved
    record = json.loads((run / "lm_loss.json").read_text())
    assert record["schema"] == "saeseeds.lm_loss/1"
    assert record["chunks"] == manifest["eval"]["stored"]["chunks"] > 0  # the stored held-out chunks, no more
    rows = {(r["hookpoint"], r["sae"], r["seed"]): r for r in record["rows"]}
    assert set(rows) == {(h, name, seed) for h in hooks for name in ("topk-32", "relu-32") for seed in (0, 1)}
    for (hook, _, _), row in rows.items():
        assert row["ce_clean"] < row["ce_zero"] and 0.0 <= row["kl_spliced"] < row["kl_zero"]
        gap = row["ce_zero"] - row["ce_clean"]
        assert row["ce_loss_recovered"] == pytest.approx((row["ce_zero"] - row["ce_spliced"]) / gap)
        if hook == HOOK0:
            assert row["ce_clean"] < row["ce_spliced"] < row["ce_zero"]
            assert 0.5 < row["ce_loss_recovered"] < 1.0
    lines = [line for line in stdout.splitlines() if "LM loss recovered" in line]
    assert len(lines) == 4 and all(line.startswith(hooks) and "±" in line and "KL" in line for line in lines)


def test_train_lm_loss_can_be_switched_off(trained: tuple[Path, str]) -> None:
    root, _ = trained
    rc, stdout = _train(root, "runs/off", "--train.lm_loss", "false", "--train.num_tokens", "256")
    assert rc == 0
    assert not (root / "runs" / "off" / "lm_loss.json").exists() and "LM loss recovered" not in stdout


def test_run_survives_a_cd_and_analyze_reports_lm_loss(trained: tuple[Path, str], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = trained
    run = root / "runs" / "lm"
    assert json.loads((run / "run.json").read_text())["data"]["model_path"] == "../../models/tiny"
    monkeypatch.chdir(tmp_path)  # the typed ./models/tiny does not exist here
    out = tmp_path / "analysis"
    rc = main(["analyze", str(run), "--out", str(out), "--quiet", "--n-random", "2", "--n-random-lm", "1",
               "--lm-loss", "--lm-max-chunks", "2", "--no-alternate", "--config", "topk-32",
               "--threshold", "0.9999"])  # no latent reappears at cos ≥ 0.9999: nothing is stable
    assert rc == 0
    stability = json.loads((out / HOOK0 / "topk-32" / "stability.json").read_text())
    assert all(s["n_stable"] == 0 for s in stability["per_seed"]), stability["per_seed"]
    ablation = json.loads((out / HOOK0 / "topk-32" / "ablation.json").read_text())
    rows = {r["name"]: r for r in ablation["rows"]}
    assert ablation["lm_loss"] == "ok" and not any(name.startswith("random") for name in rows)  # no test ran
    assert 0.0 < rows["none"]["metrics"]["loss_recovered"] <= 1.0  # the whole SAE, reported all the same
    assert rows["all"]["metrics"]["loss_recovered"] < rows["none"]["metrics"]["loss_recovered"]


def test_lm_model_override_is_used_and_checked(trained: tuple[Path, str], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from helpers.tiny_lm import build_tiny_causal_lm

    root, _ = trained
    run = root / "runs" / "lm"
    moved = tmp_path / "moved"
    shutil.copytree(root / "models" / "tiny", moved)
    (run / "run.json").write_text((run / "run.json").read_text().replace("../../models/tiny", "../../gone"))
    try:
        out = tmp_path / "a"
        args = ["analyze", str(run), "--out", str(out), "--quiet", "--n-random", "2", "--n-random-lm", "1",
                "--lm-loss", "--lm-max-chunks", "1", "--no-alternate", "--config", "relu-32"]
        assert main(args) == 2  # the recorded model is gone: one line
        assert "gone" in capsys.readouterr().err
        assert main([*args, "--lm.model", str(moved)]) == 0
        assert json.loads((out / HOOK / "relu-32" / "ablation.json").read_text())["lm_loss"] == "ok"
        other = build_tiny_causal_lm(tmp_path / "neox", _docs(), architecture="gpt_neox", d_model=16, n_layer=2)
        for verb in (args[:5], ["pool", str(run), "--out", str(tmp_path / "p"), "--quiet", "--config", f"{HOOK}/relu-32"]):
            capsys.readouterr()
            assert main([*verb, "--lm.model", str(other)]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and "GPTNeoXForCausalLM" in err[0] and "GPT2LMHeadModel" in err[0], err
    finally:
        (run / "run.json").write_text((run / "run.json").read_text().replace("../../gone", "../../models/tiny"))


def test_saelens_export_carries_the_runs_context_size_bos_and_dataset(trained: tuple[Path, str],
                                                                    tmp_path: Path) -> None:
    root, _ = trained
    assert main(["export", str(root / "runs" / "lm"), "--format", "saelens", "--out", str(tmp_path / "x"),
                 "--quiet"]) == 0
    meta = json.loads((tmp_path / "x" / HOOK / "topk-32" / "seed0" / "cfg.json").read_text())["metadata"]
    assert meta["context_size"] == 24 and meta["prepend_bos"] is True and meta["dataset_path"] == "corpus.txt"


def test_export_help_reads_as_sentences(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = capsys.readouterr().out
    assert "\nWrite SAEs in SAELens's format, or wrap foreign seeds into a run.\n" in text
    assert "(default: )" not in text


@pytest.mark.slow
def test_demo_on_a_causal_lm_reports_the_runs_lm_loss(trained: tuple[Path, str], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = trained
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--no-progress", "--skip-analysis", "--lm.model", str(root / "models" / "tiny"),
                 "--lm.hookpoints", "h.0.mlp", "--lm.dataset", str(root / "corpus.txt"), "--lm.ctx_len", "24",
                 "--train.num_tokens", "1024", "--train.batch_size", "128", "--train.eval_tokens", "256",
                 "--lm.eval_chunks", "8", "--study.num_latents", "32", "--study.k", "4", "--lm.epochs", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    run = out / summary["run_dir"]
    record = json.loads((run / "lm_loss.json").read_text())  # written by training, read by the demo
    by_key = {f"{r['hookpoint']}/{r['sae']}/seed{r['seed']}": r for r in record["rows"]}
    assert set(summary["lm_loss"]) == set(summary["metrics"]) == set(by_key)
    for key, row in summary["lm_loss"].items():
        assert row["ce_loss_recovered"] == by_key[key]["ce_loss_recovered"]
    printed = capsys.readouterr().out
    assert f"{by_key[min(by_key)]['ce_loss_recovered']:>9.3f}" in printed  # the training table's loss rec. column
