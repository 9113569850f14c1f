"""One report section per output kind (run, comparison, analysis, synthetic experiment, and any other output
such as a study or a pool, rendered generically), built from the output's files.

Latent pages need the cross-seed results and the SAEs themselves, which the report package does not load
(design.md: report/ sits on the base layer): the caller passes `latents(set_dir) -> blocks`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from saeseeds.report.html.blocks import (
    Cell,
    Figure,
    Figures,
    Group,
    Note,
    Section,
    Table,
    cell,
    fmt,
    kv,
    mapping_table,
    pct,
    pct_spread,
    records_table,
)
from saeseeds.report.html.claims import anchor, claim_blocks
from saeseeds.report.html.curves import draw_curves, read_metrics
from saeseeds.report.html.discover import SYNTHETIC_REPORT, Output, walk
from saeseeds.report.html.embed import drawn_figure, humanize, png_figure
from saeseeds.report.html.generic import csv_table, json_file_blocks, read_json
from saeseeds.report.html.headline import headline_section
from saeseeds.report.html.interpret import interpret_section
from saeseeds.report.html.study import is_pool, is_study, pool_section, study_section
from saeseeds.run_layout import LM_LOSS, MANIFEST, METRICS

LatentPages = Callable[[Path], list[Any]]
"""set directory (a saved cross-seed result) → blocks of its latent page."""

TITLES = {
    "demo": "Demo", "run": "Training run", "synthetic": "Synthetic experiment", "compare": "Cross-seed comparison",
    "analyze": "Instability analysis", "study": "Study", "pool": "Pool", "collection": "Outputs",
}


def _figures(paths: list[Path], title: Callable[[Path], str], root: Path) -> list[Figure]:
    out = []
    for p in paths:
        fig = png_figure(p, title(p), source=str(p.relative_to(root)))
        if fig is not None:
            out.append(fig)
    return out


def _unreadable(paths: list[Path], figures: list[Figure], root: Path) -> list[Any]:
    shown = {f.source for f in figures}
    bad = [str(p.relative_to(root)) for p in paths if str(p.relative_to(root)) not in shown]
    return [Note(f"not embedded (not a readable PNG, or larger than the cap): {', '.join(bad)}", "warn")] if bad else []


# --------------------------------------------------------------------------------------------
# run


def _config_blocks(config: dict[str, Any]) -> list[Any]:
    """The run's configuration: the sections that apply to its source, the SAEs as a table."""
    source = config.get("data", {}).get("source", "")
    blocks: list[Any] = [kv(config.get("data", {}), "[data]"), kv(config.get("train", {}), "[train]")]
    saes = config.get("saes", [])
    if saes:
        blocks.append(records_table(saes, "[[sae]]"))
    if source == "lm" and "lm" in config:
        blocks.append(kv(config["lm"], "[lm]"))
    if source == "synthetic" and "synthetic" in config:
        blocks.append(kv(config["synthetic"], "[synthetic]"))
    return blocks


def run_section(out: Output, rel: str) -> Section:
    """Configuration, data and fingerprint, versions, final metrics and training curves of a run."""
    manifest = read_json(out.path / MANIFEST) or {}
    sec = Section(anchor(rel), f"{TITLES[out.kind]} · {rel}", out.kind, str(out.path))
    sec.blocks.append(kv({k: manifest.get(k) for k in ("status", "step", "total_steps", "tokens", "seeds",
                                                       "created", "updated", "saeseeds_version")},
                         "Run"))
    fingerprint = manifest.get("fingerprint", {})
    data = {k: v for k, v in manifest.get("data", {}).items() if k != "special_token_ids"}
    sec.blocks.append(kv({**data, **{f"fingerprint.{k}": v for k, v in fingerprint.items()}},
                         "Data and fingerprint"))
    evals, train, bad = read_metrics(out.path / METRICS)
    if evals or train:
        sec.blocks.append(Figures([drawn_figure(
            lambda: draw_curves(evals, train, f"training curves · {rel}"), f"Training curves · {rel}",
            f"{len(train)} training lines (solid) and {len(evals)} held-out evaluation lines (dashed, dots) "
            "from metrics.jsonl; one colour per configuration, one line per seed")], wide=True))
    else:
        sec.blocks.append(Note("metrics.jsonl holds no metrics yet: no training curves", "warn"))
    if bad:
        sec.blocks.append(Note(f"metrics.jsonl: {bad} unreadable line(s) skipped", "warn"))
    metrics = manifest.get("eval", {}).get("metrics", {})
    if metrics:
        sec.blocks.append(mapping_table(metrics, "SAE", "Held-out metrics at the last evaluation"))
    lm_loss = read_json(out.path / LM_LOSS)
    if isinstance(lm_loss, dict) and isinstance(lm_loss.get("rows"), list) and lm_loss["rows"]:
        table = records_table(lm_loss["rows"], "LM loss with each SAE spliced in (lm_loss.json, held-out chunks)")
        table.note = table.note or str(lm_loss.get("definition") or "")
        sec.blocks.append(table)
    config = manifest.get("config", {})
    if config:
        sec.subsections.append(Section(anchor(rel + "-config"), "Configuration", "config", "",
                                       _config_blocks(config)))
    sec.subsections.append(Section(anchor(rel + "-versions"), "Library versions", "versions", "",
                                   [kv(manifest.get("versions", {}), "versions (run.json)")]))
    return sec


# --------------------------------------------------------------------------------------------
# comparison


def _set_label_map(sets: list[dict[str, Any]]) -> dict[str, str]:
    """slug (the set directory's name) → configuration label."""
    return {Path(str(s.get("dir", ""))).name: str(s.get("label", "")) for s in sets}


def _compare_title(labels: dict[str, str]) -> Callable[[Path], str]:
    everything = ", ".join(labels.values()) or "all configurations"

    def title(p: Path) -> str:
        stem, _, slug = p.stem.partition("__")
        config = labels.get(slug, slug) if slug else f"all configurations ({everything})"
        return f"{humanize(stem)} — {config}"

    return title


def latest_comparisons(root: Output) -> dict[str, Path]:
    """Configuration label → the last comparison (in path order, e.g. the last milestone) that holds it."""
    owner: dict[str, Path] = {}
    for out in sorted((o for o in walk(root) if o.kind == "compare"), key=lambda o: str(o.path)):
        for s in (read_json(out.path / "summary.json") or {}).get("sets", []):
            owner[str(s.get("label", ""))] = out.path
    return owner


def compare_section(out: Output, rel: str, latents: LatentPages, owner: dict[str, Path] | None = None) -> Section:
    """The comparison's rule, sets, pairs, figures (each titled with its configuration) and latent pages.

    A configuration compared in several outputs (a study's milestones) gets its latent page once, in the
    last of them (`owner`); the others say where it is.
    """
    summary = read_json(out.path / "summary.json") or {}
    sec = Section(anchor(rel), f"{TITLES['compare']} · {rel}", "compare", str(out.path))
    sets = summary.get("sets", [])
    sec.blocks.append(kv(summary.get("rule", {}), "Sharing rule"))
    rows = []
    for s in sets:
        sf, st, mm = s.get("shared_fraction", {}), s.get("stability", {}), s.get("mmcs", {})
        dead = s.get("dead_latents")
        rows.append([cell(s.get("label")), cell(len(s.get("members", []))), cell(s.get("num_latents")),
                     Cell(pct_spread(sf.get("mean"), sf.get("std")), "num"), cell(mm.get("mean")),
                     Cell(pct(st.get("stable_fraction")), "num"), Cell(pct(st.get("unstable_fraction")), "num"),
                     Cell(pct(st.get("stable_fraction_alive")), "num"), cell(st.get("mean_stability")),
                     cell(fmt(list(dead.values())) if isinstance(dead, dict) else None)])
    rule = summary.get("rule") or {}
    sec.blocks.append(Table(["configuration", "seeds", "latents", "shared (mean ± sd)", "MMCS", "stable", "unstable",
                             "stable of alive", "mean stability", "dead per seed"], [[*r] for r in rows],
                            "Configurations compared",
                            f"shared: Paulo & Belrose's shared fraction over ordered seed pairs; stable / unstable "
                            f"under the {rule.get('stability', 'shared')} estimator over all latents (dead ones "
                            "count as unstable), and stable over the alive latents only; dead: never fired on the "
                            "run's held-out rows"))
    if summary.get("pairs"):
        pairs = records_table(summary["pairs"], "Every ordered pair of seeds")
        pairs.collapsed = True
        sec.blocks.append(pairs)
    labels = _set_label_map(sets)
    paths = sorted((out.path / "figures").glob("*.png"))
    figures = _figures(paths, _compare_title(labels), out.path)
    if figures:
        sec.blocks.append(Figures(figures, "Figures"))
    sec.blocks.extend(_unreadable(paths, figures, out.path))
    elsewhere = sorted({str(s.get("label", "")) for s in sets if owner and owner.get(str(s.get("label", "")),
                                                                                     out.path) != out.path})
    if elsewhere:
        later = sorted({str(owner[lab]) for lab in elsewhere} if owner else set())
        sec.blocks.append(Note(f"Latent pages of {', '.join(elsewhere)} are shown once, with the last comparison "
                               f"that holds them ({', '.join(later)}), to keep the page small."))
    for s in sets:
        if str(s.get("label", "")) in elsewhere:
            continue
        set_dir = out.path / str(s.get("dir", ""))
        sec.subsections.append(Section(anchor(f"{rel}-latents-{s.get('label', '')}"),
                                       f"Latents · {s.get('label', '')}", "latents", str(set_dir),
                                       latents(set_dir)))
    return sec


# --------------------------------------------------------------------------------------------
# analysis


def analysis_section(out: Output, rel: str, latents: LatentPages) -> Section:
    """Per configuration: the claims with their statistics, stability counts, figures and timings."""
    record = read_json(out.path / "analysis.json") or {}
    sec = Section(anchor(rel), f"{TITLES['analyze']} · {rel}", "analyze", str(out.path))
    sec.blocks.append(kv({"run_dir": record.get("run_dir")}, "Analysis"))
    for label, conf in (record.get("configs") or {}).items():
        cdir = out.path / str(conf.get("dir", label))
        sub = Section(anchor(f"{rel}-{label}"), f"Claims and figures · {label}", "analysis-config", str(cdir))
        claims = read_json(cdir / "claims.json") or conf.get("claims") or {}
        if claims:
            sub.blocks.extend(claim_blocks(claims, label))
        else:
            sub.blocks.append(Note(f"{label}: no claims.json", "warn"))
        stability = read_json(cdir / "stability.json") or {}
        if stability.get("per_seed"):
            sub.blocks.append(records_table(stability["per_seed"], f"Stable and unstable latents per seed · {label}"))
        tokens = conf.get("analysis_tokens") or record.get("analysis_tokens")
        if isinstance(tokens, dict):
            sub.blocks.append(kv({**tokens, "seconds": conf.get("seconds")}, "Analysis tokens and time"))
        paths = sorted(cdir.glob("*.png"))
        figures = _figures(paths, lambda p, lab=label: f"{humanize(p.stem)} — {lab}", out.path)
        if figures:
            sub.blocks.append(Figures(figures, f"Figures · {label}"))
        sub.blocks.extend(_unreadable(paths, figures, out.path))
        sec.subsections.append(sub)
    cross = out.path / "cross_seed"
    for set_dir in sorted(p for p in cross.glob("*") if (p / "cross_seed.json").is_file()):
        sec.subsections.append(Section(anchor(f"{rel}-latents-{set_dir.name}"), f"Latents · {set_dir.name}",
                                       "latents", str(set_dir), latents(set_dir)))
    return sec


# --------------------------------------------------------------------------------------------
# synthetic experiment, demo overview and any other output


def synthetic_section(out: Output, rel: str, latents: LatentPages) -> Section:
    """The run, then the recovery report: its tables, figures and latent pages."""
    sec = run_section(out, rel)
    report = out.path / SYNTHETIC_REPORT
    sub = Section(anchor(rel + "-recovery"), "Ground-truth recovery", "synthetic-report", str(report))
    if (report / "recovery.json").is_file():
        sub.blocks.extend(json_file_blocks(report / "recovery.json", skip=("config",)))
    labels = {str(k).rsplit("/", 1)[-1]: str(k) for k in ((read_json(report / "recovery.json") or {})
                                                          .get("saes") or {})}

    def title(p: Path) -> str:  # figures are named <sae>_<what>.png
        name = next((n for n in sorted(labels, key=len, reverse=True) if p.stem.startswith(n + "_")), "")
        return f"{humanize(p.stem[len(name) + 1:])} — {labels[name]}" if name else humanize(p.stem)

    paths = sorted(report.glob("*.png"))
    figures = _figures(paths, title, out.path)
    if figures:
        sub.blocks.append(Figures(figures, "Recovery figures"))
    sub.blocks.extend(_unreadable(paths, figures, out.path))
    sec.subsections.insert(0, sub)
    for set_dir in sorted(p for p in (report / "cross_seed").glob("*") if (p / "cross_seed.json").is_file()):
        sec.subsections.insert(1, Section(anchor(f"{rel}-latents-{set_dir.name}"), f"Latents · {set_dir.name}",
                                          "latents", str(set_dir), latents(set_dir)))
    return sec


def alignment_table(alignment: dict[str, Any]) -> Table:
    """The demo's cross-seed alignment per configuration, in percentages as the demo prints it."""
    rows = [[cell(label), Cell(pct_spread(a.get("shared_fraction_mean"), a.get("shared_fraction_std")), "num"),
             Cell(pct(a.get("stable_fraction")), "num"), Cell(pct(a.get("unstable_fraction")), "num"),
             Cell(pct(a.get("dead_fraction")), "num"), Cell(pct(a.get("stable_fraction_alive")), "num"),
             Cell(pct(a.get("unstable_fraction_alive")), "num"), cell(a.get("mean_stability"))]
            for label, a in alignment.items() if isinstance(a, dict)]
    return Table(["configuration", "shared (mean ± sd)", "stable", "unstable", "dead", "stable of alive",
                  "unstable of alive", "mean stability"], rows, "Cross-seed alignment",
                 "stable, unstable: over all latents, dead ones counted unstable; of alive: over the latents that "
                 "fire on the held-out rows; dead: never fired there")


def demo_overview(out: Output, rel: str) -> Section:
    """What the demo's summary.json says at a glance (the details follow in the run, compare, analysis sections)."""
    summary = read_json(out.path / "summary.json") or {}
    sec = Section(anchor(rel or "demo"), f"{TITLES['demo']} · {rel or out.path.name}", "demo", str(out.path))
    sec.blocks.append(kv({k: summary.get(k) for k in ("steps", "tokens", "seconds", "config")}, "Demo"))
    if isinstance(summary.get("alignment"), dict):
        sec.blocks.append(alignment_table(summary["alignment"]))
    if isinstance(summary.get("lm_loss"), dict):
        sec.blocks.append(mapping_table(summary["lm_loss"], "SAE", "LM loss with the SAE spliced in"))
    return sec


def _output_figures(out: Output) -> list[Any]:
    """Every PNG under `out` that no nested output owns, as one grid (with a note naming any not embedded)."""
    nested = {c.path for c in out.children}
    paths = sorted(p for p in out.path.rglob("*.png")
                   if not any(parent in nested for parent in p.parents) and not p.name.startswith("."))
    figures = _figures(paths, lambda p: humanize(p.stem) + (
        f" — {p.parent.relative_to(out.path)}" if p.parent not in (out.path, out.path / "figures") else ""),
        out.path)
    return ([Figures(figures, "Figures")] if figures else []) + _unreadable(paths, figures, out.path)


def _nested_latents(out: Output, rel: str, latents: LatentPages) -> list[Section]:
    """A latent page per cross-seed result under `out` that no nested output owns."""
    nested = {c.path for c in out.children}
    pages = []
    for set_dir in sorted(p.parent for p in out.path.rglob("cross_seed.json")
                          if not any(parent in nested for parent in p.parents)):
        label = str(set_dir.relative_to(out.path))
        pages.append(Section(anchor(f"{rel}-latents-{label}"), f"Latents · {label}", "latents", str(set_dir),
                             latents(set_dir)))
    return pages


def designed_section(out: Output, rel: str, latents: LatentPages) -> Section | None:
    """A study's or a pool's own section (tables and figures designed for them), or None when its files are not
    the ones this version knows (the generic section shows them then)."""
    if out.kind == "study" and is_study(out.path):
        sec = study_section(out, rel, lambda _: _output_figures(out))
    elif out.kind == "pool" and is_pool(out.path):
        sec = pool_section(out, rel, lambda _: _output_figures(out))
    else:
        return None
    sec.id, sec.title = anchor(rel or out.kind), f"{TITLES[out.kind]} · {rel or out.path.name}"
    sec.subsections.extend(_nested_latents(out, rel, latents))
    return sec


def generic_section(out: Output, rel: str, latents: LatentPages) -> Section:
    """Any other output: its figures, then its JSON records and CSV tables folded, and latent pages of
    cross-seed results."""
    designed = designed_section(out, rel, latents)
    if designed is not None:
        return designed
    sec = Section(anchor(rel or out.kind), f"{TITLES.get(out.kind, out.kind.title())} · {rel or out.path.name}",
                  out.kind, str(out.path))
    files: list[Any] = []
    for path in sorted(out.path.glob("*.json")):
        if not path.name.startswith("."):
            files.extend(json_file_blocks(path))
    for path in sorted(out.path.glob("*.csv")):
        files.append(csv_table(path))
    sec.blocks.extend(_output_figures(out))
    if files:
        sec.blocks.append(Group("The files (JSON and CSV, as tables)", files))
    sec.subsections.extend(_nested_latents(out, rel, latents))
    return sec


def build_sections(root: Output, latents: LatentPages) -> list[Section]:
    """One section per output found under `root` (itself first), in pipeline order."""
    sections: list[Section] = []
    owner = latest_comparisons(root)

    def build(out: Output, rel: str) -> Section | None:
        if out.kind == "run":
            return run_section(out, rel)
        if out.kind == "synthetic":
            return synthetic_section(out, rel, latents)
        if out.kind == "compare":
            return compare_section(out, rel, latents, owner)
        if out.kind == "analyze":
            return analysis_section(out, rel, latents)
        if out.kind == "demo":
            return demo_overview(out, rel)
        if out.kind == "interpret":
            return interpret_section(out, rel, latents)
        if out.kind == "collection":
            return None
        return generic_section(out, rel, latents)

    def visit(out: Output) -> None:
        rel = str(out.path.relative_to(root.path)) if out.path != root.path else out.path.name
        try:
            section = build(out, rel)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as err:
            # a file of an unexpected shape (another version, a hand edit) costs its section, not the page
            section = Section(anchor(rel or out.kind), f"{TITLES.get(out.kind, out.kind.title())} · {rel}",
                              out.kind, str(out.path),
                              [Note(f"this output could not be read ({type(err).__name__}: {err})", "warn")])
        if section is not None:
            sections.append(section)
        for child in out.children:
            visit(child)

    visit(root)
    try:
        head = headline_section(root, owner)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError, ZeroDivisionError) as err:
        head = Section("headline", "Headline", "headline", "",
                       [Note(f"the headline could not be read ({type(err).__name__}: {err})", "warn")])
    if head is not None:
        sections.insert(0, head)
    _unique_ids(sections)
    return sections


def _unique_ids(sections: list[Section]) -> None:
    """Make every section id unique on the page (two paths may slug alike), keeping the first as it is."""
    seen = {"overview"}
    for sec in [s for top in sections for s in (top, *top.subsections)]:
        base, n = sec.id, 1
        while sec.id in seen:
            n += 1
            sec.id = f"{base}-{n}"
        seen.add(sec.id)

