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
    assert "study.json · points" in html and "table.csv" in html and ">37.0%<" in html  # a fraction, as a percentage
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
    assert kinds == ["headline", "run", "compare"]
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


# --------------------------------------------------------------------------------------------
# the headline, and the study and pool sections


SECTION_KINDS = re.compile(r'<section class="output" id="[^"]+" data-kind="(\w+)"')


def _analysis(out: Path, label: str) -> None:
    """An analysis of `label` with reappearance counts per seed and one claim of each verdict."""
    cfg = out / label
    cfg.mkdir(parents=True)
    mark_output(out, "analyze")
    seeds = [{"seed": s, "n_latents": 24, "n_stable": st, "n_unstable": 24 - st, "n_stable_alive": st,
              "n_unstable_alive": 20 - st, "n_dead": 4, "mean_stability": 0.5} for s, st in ((0, 5), (1, 10), (2, 15))]
    atomic_write_json(cfg / "stability.json", {
        "rule": {"threshold": 0.7, "stability": "reappears", "cut": "half"}, "per_seed": seeds,
        "alternate": {"rule": {"threshold": 0.7, "stability": "shared"}, "per_seed": [{**s, "n_stable_alive": 0}
                                                                                       for s in seeds]}})
    est = {"estimator": "reappears"}
    atomic_write_json(cfg / "claims.json", {
        "unstable_rarer": {"holds": True, "p_holm": 0.004, "stability": est, "paper": "Gerasimov et al. 2026",
                           "effect_size": {"name": "P(stable fires more)", "mean": 0.67, "ci95": [0.6, 0.74]}},
        "stable_carry_reconstruction": {
            "holds": False, "p_holm": 0.9, "stability": est,
            "effect_size": {"name": "harm ratio", "mean": 2.1, "ci95": [0.1, 4.2]},
            "descriptive": {"holds": True, "harm_share_stable": {"mean": 0.62, "std": 0.05},
                            "harm_share_unstable": {"mean": 0.2, "std": 0.01}}},
        "unstable_spans_reproducible": {"holds": None, "stability": est,
                                        "reason": "undetermined in seed 0: no alive unstable latent"}})
    atomic_write_json(out / "analysis.json", {"format": "saeseeds.analyze/1", "run_dir": "r",
                                              "analysis_tokens": {"tokens": 180_000},
                                              "configs": {label: {"dir": label}}})


def _run_with_lm_loss(run: Path, label: str) -> None:
    """A run directory holding only what the headline reads: the last evaluation and a hand-made lm_loss.json."""
    run.mkdir(parents=True)
    hook, sae = label.split("/")
    metrics = {f"{label}/seed{s}": {"fvu": 0.2, "l0": 8.0, "dead_fraction": 0.1, "train_dead_fraction": 0.05 * s}
               for s in range(3)}
    atomic_write_json(run / "run.json", {"schema": "saeseeds.run/1", "status": "done", "eval": {"metrics": metrics}})
    atomic_write_json(run / "lm_loss.json", {"schema": "saeseeds.lm_loss/1", "tokens": 4096, "rows": [
        {"hookpoint": hook, "sae": sae, "seed": s, "ce_clean": 3.0, "ce_spliced": 3.2 + 0.1 * s, "ce_zero": 6.0,
         "ce_loss_recovered": (6.0 - 3.2 - 0.1 * s) / 3.0, "kl_spliced": 0.05} for s in range(3)]})


def _headline(html: str) -> str:
    start = html.index('<section class="output" id="headline" data-kind="headline">')
    return html[start:html.index('<section class="output"', start + 1)]


def test_headline_comes_first_and_answers_in_percentages(tmp_path) -> None:
    """Issue 30: before any file's fields, each configuration's shared %, stable % of the alive latents (Gerasimov's
    reappearance), the three dead counts told apart, the claims with their key number, LM loss recovered, and the
    stability histogram."""
    result = _cross_seed(tmp_path)
    ss.save_comparison([result], tmp_path / "all" / "cmp")
    _analysis(tmp_path / "all" / "ana", result.label)
    _run_with_lm_loss(tmp_path / "all" / "run", result.label)
    html = ss.write_report(tmp_path / "all", max_latents=0).read_text()
    assert SECTION_KINDS.findall(html)[0] == "headline"
    head = _headline(html)
    sf = result.shared_fraction_stats()
    assert f"{sf['mean']:.1%} ± {sf['std']:.1%}" in head and "6 ordered pairs of 3 seeds" in head
    # stable of the alive (20 per seed): 5/20, 10/20, 15/20 → 50.0% ± 25.0%, under reappearance, not the alternate
    assert "50.0% ± 25.0%" in head and "Gerasimov et al.&#39;s reappearance" in head
    dead = "/".join(str(int((f == 0).sum())) for f in result.frequencies)
    assert f"held-out rows: {dead} per seed" in head and "180,000 analysis tokens: 4/4/4" in head
    assert "last training window: 0.0%/5.0%/10.0%" in head
    assert 'badge holds">holds</span> <strong>unstable rarer</strong> — P(stable fires more): 0.67 [95% CI 0.6, 0.74]; ' \
           "Holm p 0.004" in head
    assert "stable carry reconstruction, as the paper states it</strong> — share of the ablation harm: stable 62.0% ± " \
           "5.0%, unstable 20.0% ± 1.0%" in head
    assert 'undetermined</span> <strong>unstable spans reproducible' in head and "no alive unstable latent" in head
    assert "LM loss recovered" in head and "0.900 ± 0.033" in head and "KL 0.0500 ± 0.0000" in head
    assert "Stability of every latent, per configuration" in head and len(IMG.findall(head)) == 1
    run = html[html.index('data-kind="run"'):]
    assert "LM loss with each SAE spliced in" in run and ">ce_loss_recovered<" in run and ">0.9333<" in run


def test_headline_without_an_analysis_says_whose_stability_it_shows(tmp_path) -> None:
    """With only a comparison, stable % is the comparison's own (alive latents, its estimator named) and says that
    Gerasimov's reading needs `analyze`; no claims, no LM loss are invented."""
    result = _cross_seed(tmp_path)
    ss.save_comparison([result], tmp_path / "cmp")
    head = _headline(ss.write_report(tmp_path / "cmp", max_latents=0).read_text())
    alive = result.stability_summary()["stable_fraction_alive"]
    assert f"{alive:.1%}" in head and "Paulo &amp; Belrose&#39;s shared estimator" in head
    assert "needs `saeseeds analyze`" in head and "verdicts" not in head and "LM loss" not in head


def test_headline_of_an_analysis_that_aligned_the_seeds_itself(tmp_path) -> None:
    """No comparison: the shared fraction comes from the cross-seed result the analysis saved."""
    result = _cross_seed(tmp_path)
    _analysis(tmp_path / "ana", result.label)
    result.save(tmp_path / "ana" / "cross_seed" / "topk-24")
    head = _headline(ss.write_report(tmp_path / "ana", max_latents=0).read_text())
    sf = result.shared_fraction_stats()
    assert f"{sf['mean']:.1%} ± {sf['std']:.1%}" in head and "50.0% ± 25.0%" in head


def test_headline_of_a_run_alone_gives_its_dead_latents_and_lm_loss(tmp_path) -> None:
    """A causal-LM run before any comparison: LM loss recovered and the held-out dead share, nothing invented."""
    _run_with_lm_loss(tmp_path / "run", "h/topk-24")
    head = _headline(ss.write_report(tmp_path / "run", max_latents=0).read_text())
    assert "h/topk-24" in head and "0.900 ± 0.033" in head and "held-out rows: 10.0%/10.0%/10.0% per seed" in head
    assert "shared across seeds" not in head and "stable, of the alive" not in head


def test_comparison_and_generic_tables_show_fractions_as_percentages(tmp_path) -> None:
    result = _cross_seed(tmp_path)
    ss.save_comparison([result], tmp_path / "cmp")
    html = ss.write_report(tmp_path / "cmp", max_latents=0).read_text()
    sf = result.shared_fraction_stats()
    table = html[html.index("Configurations compared"):]
    assert f">{sf['mean']:.1%} ± {sf['std']:.1%}<" in table
    assert f">{result.stability_summary()['stable_fraction']:.1%}<" in table
    pairs = table[table.index("Every ordered pair"):]
    assert re.search(r'<td class="num">\d+\.\d%</td>', pairs)  # each pair's shared_fraction


def _study(tmp_path: Path) -> Path:
    out = tmp_path / "study"
    (out / "figures").mkdir(parents=True)
    mark_output(out, "study")
    row = {"set": "h/topk-24", "sae_name": "topk-24", "milestone": 1.0, "tokens": 2048, "shared_fraction_mean": 0.04166,
           "shared_fraction_sd": 0.00281, "decoder_shared_fraction_mean": 0.1, "decoder_shared_fraction_sd": 0.01,
           "mmcs_mean": 0.5, "mmcs_sd": 0.01, "stable_fraction_alive": 0.0977, "stability_reappears_mean": 0.2,
           "dead_latents_mean": 3.0, "fvu_mean": 0.2, "fvu_sd": 0.01, "l0_mean": 16.0, "l0_sd": 0.0}
    atomic_write_json(out / "study.json", {
        "schema": "saeseeds.study/1", "grid": [{"name": "topk-24"}], "seeds": [0, 1, 2], "hookpoints": ["h"],
        "rule": {"threshold": 0.7, "stability": "shared"}, "milestones": [{"fraction": 1.0}], "rows": [row],
        "only_in_base": {"h/topk-24": {"mean": [1.0, 0.9583, 0.9431], "sd": [0.0, 0.0028, 0.0006]}}})
    (out / "table.csv").write_text(",".join(row) + "\n" + ",".join(str(v) for v in row.values()) + "\n")
    fig, ax = plt.subplots(1, 2, figsize=(8, 3.6))  # two panels: wider than 1.8:1, so the whole row
    save_figure(fig, out / "figures" / "fig5_layer_size_architecture.png", {"x": [0]})
    return out


def test_study_section_is_a_results_table_with_wide_figures_and_the_files_folded(tmp_path) -> None:
    html = ss.write_report(_study(tmp_path)).read_text()
    section = html[html.index('data-kind="study"'):]
    assert "Shared and stable latents at each milestone" in section
    assert ">4.2% ± 0.3%<" in section and ">9.8%<" in section and ">100%<" in section
    assert ">95.8% ± 0.3%<" in section and "M = 2" in section  # only in base, as percentages
    assert re.search(r'<figure class="fig wide">\s*<figcaption>Fig5 layer size architecture', section)
    folded = section[section.index('<details class="block folded group">'):]
    assert "table.csv" in folded and "study.json (raw)" in folded and "saeseeds.study/1" in folded
    assert section.index("Shared and stable latents") < section.index("<figure") < section.index("study.json (raw)")
    assert "study.json · only_in_base" not in html  # no longer the generic dump


def test_pool_section_compares_pooled_with_single_seeds_in_percentages(tmp_path) -> None:
    out = tmp_path / "pool"
    out.mkdir()
    mark_output(out, "pool")
    atomic_write_json(out / "pool.json", {"schema": "saeseeds.pooling/1", "summary": {
        "seeds": 4, "pooled_latents": 24, "explained_variance": {"pooled_all": 0.8123,
                                                                 "single_seeds": {"mean": 0.79, "std": 0.004}},
        "shared_fraction": {"pooled_pairs": {"mean": 0.61, "std": 0.02}, "single_pairs": {"mean": 0.3, "std": 0.05}},
        "reappears_in_held_out_seeds": {"pooled": 0.7, "single": 0.4},
        "verdicts": {"vs_single_seeds": {"claim": "vs_single_seeds", "holds": True, "p_value": 0.01,
                                         "delta_shared_fraction": 0.31, "delta_explained_variance": 0.02}}},
        "clusters": {"count": 40}})
    html = ss.write_report(out).read_text()
    section = html[html.index('data-kind="pool"'):]
    assert ">81.2%<" in section and ">79.0% ± 0.4%<" in section and ">61.0% ± 2.0%<" in section
    assert ">vs single seeds<" in section and ">holds<" in section and ">31.0%<" in section
    assert section.index("Pool verdicts") < section.index('<details class="block folded group">')
    assert "pool.json (raw)" in section
