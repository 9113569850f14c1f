"""`ss.write_report` / `saeseeds report` on small outputs written here: generic study and pool pages, a comparison with
latent pages, an analysis's claims, training curves, escaping, and the rules for the file it writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import pyplot as plt

import saeseeds as ss
from saeseeds.align.cross_seed import align_seeds
from saeseeds.atomic import atomic_write_json
from saeseeds.cli import main
from saeseeds.commands.report import DEFAULT_MAX_LATENTS
from saeseeds.errors import ConfigError, DataError
from saeseeds.outputs import mark_output
from saeseeds.report.figures import save_figure
from saeseeds.report.html.curves import draw_curves, read_metrics
from saeseeds.report.html.latents import DEFAULT_CAP, choose_latents

IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _figure(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    save_figure(fig, path, {"x": [0, 1]})


@pytest.fixture
def study(tmp_path) -> Path:
    out = tmp_path / "study"
    out.mkdir()
    mark_output(out, "study")
    atomic_write_json(out / "study.json", {"format": "saeseeds.study/1", "name": "k sweep <b>", "points": [
        {"k": 8, "shared_fraction": 0.41}, {"k": 16, "shared_fraction": 0.37}]})
    (out / "table.csv").write_text("k,shared_fraction,note\n8,0.41,<script>alert(1)</script>\n16,0.37,\n")
    (out / "figures").mkdir()
    _figure(out / "figures" / "shared_vs_k.png")
    return out


def test_generic_output_shows_its_json_csv_and_figures_escaped(study) -> None:
    path = ss.write_report(study)
    assert path == study / "report.html"
    html = path.read_text()
    assert '<meta name="generator" content="saeseeds report' in html
    assert "k sweep &lt;b&gt;" in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in html
    assert "study.json · points" in html and "table.csv" in html and ">0.37<" in html
    images = IMG.findall(html)
    assert len(images) == 1 and (study / "figures" / "shared_vs_k.png").read_bytes() == __import__(
        "base64").b64decode(images[0])
    assert "Shared vs k" in html
    assert not re.search(r'(src|href)="(https?:|//)', html)  # nothing is fetched


def test_report_file_rules(study, tmp_path) -> None:
    ss.write_report(study)
    ss.write_report(study)  # an earlier report is replaced
    foreign = tmp_path / "notes.html"
    foreign.write_text("<html>mine</html>")
    with pytest.raises(ConfigError, match="not a saeseeds report"):
        ss.write_report(study, foreign)
    assert foreign.read_text() == "<html>mine</html>"
    with pytest.raises(ConfigError, match="is a directory"):
        ss.write_report(study, tmp_path)
    with pytest.raises(DataError, match="no saeseeds output"):
        ss.write_report(tmp_path / "study" / "figures")
    with pytest.raises(DataError, match="no such directory"):
        ss.write_report(tmp_path / "missing")
    with pytest.raises(ConfigError, match="--max-latents"):
        ss.write_report(study, max_latents=-1)
    assert [p.name for p in study.iterdir() if p.name.startswith(".") and "tmp" in p.name] == []


def test_cli_writes_where_asked(study, tmp_path, capsys) -> None:
    target = tmp_path / "sub" / "page.html"
    assert main(["report", str(study), "--out", str(target)]) == 0
    assert f"wrote {target}" in capsys.readouterr().out and target.is_file()
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert DEFAULT_MAX_LATENTS == DEFAULT_CAP


def _cross_seed(tmp_path: Path, n: int = 24, d: int = 8, seeds: int = 3):
    """A real cross-seed result of random SAEs whose seeds share their first half of latents."""
    gen = torch.Generator().manual_seed(0)
    common = torch.randn(n // 2, d, generator=gen)
    weights = []
    for _ in range(seeds):
        dec = torch.cat([common + 0.01 * torch.randn(n // 2, d, generator=gen), torch.randn(n // 2, d, generator=gen)])
        weights.append((dec, dec.clone()))
    result = align_seeds(weights, [f"seed{i}" for i in range(seeds)], label="hook/topk-24", hookpoint="hook",
                         sae_name="topk-24", paths=[str(tmp_path / f"nowhere{i}") for i in range(seeds)])
    result.frequencies = [np.linspace(0.0, 0.5, n) for _ in range(seeds)]
    return result


def test_comparison_latent_pages_list_partners_and_respect_the_cap(tmp_path) -> None:
    result = _cross_seed(tmp_path)
    out = tmp_path / "cmp"
    ss.save_comparison([result], out)
    html = ss.write_report(out, max_latents=10).read_text()
    assert "Latents · hook/topk-24" in html and "Configurations compared" in html
    rows = re.findall(r'<details class="latent" data-search="([^"]*)" data-group="(\w+)"', html)
    assert len(rows) == 10
    groups = [g for _, g in rows]
    assert groups[:5] == ["stable"] * 5 and groups[5:] == ["unstable"] * 5  # most, then least stable
    assert "seed1 #" in html and "✓" in html
    assert "No top contexts" in html and "nowhere0" in html  # says why there are none
    figures = re.findall(r"<figcaption>([^<]*)</figcaption>", html)
    assert figures and all("hook/topk-24" in t for t in figures)  # every figure names its configuration
    assert "Latent pages were left out" in ss.write_report(out, max_latents=0).read_text()


def test_choose_latents_skips_dead_and_says_which() -> None:
    stability = np.array([1.0, 0.0, 0.5, 1.0, 0.0, 0.0])
    freq = np.array([0.1, 0.2, 0.3, 0.0, 0.05, 0.4])
    chosen, note = choose_latents(stability, freq, 4)
    assert chosen == [0, 2, 5, 1] and "1 never fired" in note and "most stable" in note
    chosen, note = choose_latents(stability, None, 100)
    assert sorted(chosen) == list(range(6)) and note.startswith("All 6")


def test_analysis_claims_are_tabled_with_their_statistics(tmp_path) -> None:
    out = tmp_path / "ana"
    cfg = out / "hook" / "topk-24"
    cfg.mkdir(parents=True)
    mark_output(out, "analyze")
    claim = {"holds": None, "reason": "undetermined in seed 0", "test": "rank-sum", "p_value": None,
             "p_holm": None, "alpha": 0.05, "effect_size": {"name": "P(stable > unstable)", "mean": 0.61,
                                                            "ci95": [0.52, 0.7]},
             "n": {"seeds": 3, "per_seed": [{"n_stable": 4, "n_unstable": 20}]}}
    atomic_write_json(cfg / "claims.json", {"unstable_rarer": {**claim, "holds": True, "p_value": 0.001,
                                                               "p_holm": 0.004},
                                            "stable_carry_reconstruction": claim})
    atomic_write_json(out / "analysis.json", {"format": "saeseeds.analyze/1", "run_dir": "r",
                                              "configs": {"hook/topk-24": {"dir": "hook/topk-24"}}})
    _figure(cfg / "ablation_fvu.png")
    html = ss.write_report(out).read_text()
    assert 'class="badge holds"' in html and 'class="badge undetermined"' in html
    assert "0.004" in html and "P(stable &gt; unstable): 0.61 [95% CI 0.52, 0.7]" in html
    assert "undetermined in seed 0" in html and "4/20" in html
    assert "FVU with stable, unstable and matched random sets ablated — hook/topk-24" in html


def test_training_curves_read_eval_and_train_lines(tmp_path) -> None:
    lines = [{"kind": "train", "step": s, "key": "h/a/seed0", "loss": 1.0 / s, "fvu": 0.5, "l0": 8, "lr": 1e-3}
             for s in range(1, 20)]
    lines += [{"key": "h/a/seed0", "step": 10, "fvu": 0.4, "l0": 7.5, "dead_fraction": 0.1}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + '\n{"key": "torn')
    evals, train, bad = read_metrics(path)
    assert (len(evals), len(train), bad) == (1, 19, 1)
    fig = draw_curves(evals, train, "t")
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["loss", "fvu", "l0", "lr", "dead_fraction"]
    plt.close(fig)


def test_directory_of_a_run_and_its_comparison(tmp_path) -> None:
    """A real (tiny, array-data) run and its comparison side by side: both sections, curves, and a note on
    why the latents have no contexts (array data has no tokens)."""
    np.save(tmp_path / "acts.npy", np.random.default_rng(0).standard_normal((2048, 16)).astype(np.float32))
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'[data]\nsource = "npy"\npath = "{tmp_path / "acts.npy"}"\n[train]\nseeds = [0, 1]\n'
                   'batch_size = 256\nnum_tokens = 1536\nlr_warmup_steps = 1\neval_tokens = 256\n'
                   'eval_every = 2\ncheckpoint_every = 0\ndevice = "cpu"\nprogress = false\n'
                   '[[sae]]\narchitecture = "topk"\nnum_latents = 32\nk = 4\n')
    ss.train(cfg, tmp_path / "both" / "run")
    ss.save_comparison(ss.compare_all(tmp_path / "both" / "run"), tmp_path / "both" / "cmp")
    html = ss.write_report(tmp_path / "both", max_latents=6).read_text()
    kinds = re.findall(r'<section class="output" id="[^"]+" data-kind="(\w+)"', html)
    assert kinds == ["run", "compare"]
    assert "Training curves · run" in html and "Held-out metrics at the last evaluation" in html
    assert "[train]" in html and "Library versions" in html and "fingerprint.train" in html
    assert "No top contexts" in html and "no token ids" in html
    assert len(re.findall(r'<details class="latent"', html)) == 6
    assert len(IMG.findall(html)) >= 5  # the curves and the comparison's figures


def test_an_unreadable_output_costs_its_section_not_the_page(study) -> None:
    bad = study / "broken"
    bad.mkdir()
    mark_output(bad, "analyze")
    atomic_write_json(bad / "analysis.json", {"format": "saeseeds.analyze/1", "configs": ["not", "a", "mapping"]})
    html = ss.write_report(study).read_text()
    assert "this output could not be read (AttributeError" in html and "study.json" in html


def test_ss_write_report_survives_the_report_package_import(study) -> None:
    """`saeseeds.report` is the package's name; the function has its own name, so importing the package hides nothing."""
    import saeseeds.report.figures  # noqa: F401

    assert callable(ss.write_report)
    assert ss.write_report(study) == study / "report.html"
