"""The page's first section: per configuration, the answer in plain words and numbers — how much is shared
across seeds, how much of what fires is stable, what counts as dead (three different counts, said apart), which
claims hold with their key number, LM loss recovered — and the one figure that shows it.

Everything is read from the files the other sections render (compare's summary.json, analyze's stability.json
and claims.json, run.json's last evaluation, `<run>/lm_loss.json`); nothing is computed anew.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saeseeds.report.html.blocks import Figure, Note, Section, fmt, pct, pct_spread
from saeseeds.report.html.discover import Output, walk
from saeseeds.report.html.embed import png_figure
from saeseeds.report.html.generic import read_json
from saeseeds.run_layout import LM_LOSS, MANIFEST
from saeseeds.signflip import VERDICT_WORDS

HEADLINE_FIGURE = "fig_d_stability_hist.png"
"""The one figure: every configuration's latents by stability, dead ones hatched (a comparison's figures/)."""
PAPERS = {"shared": "Paulo & Belrose's shared estimator", "reappears": "Gerasimov et al.'s reappearance"}
READING = (
    "How to read these numbers. Shared (Paulo & Belrose): a latent is shared with another seed when the decoder "
    "and the encoder matchings pair it with the same latent there, both cosines above the threshold. Stable "
    "(Gerasimov et al.): found in at least half of the other seeds, unstable: in none, where found means its "
    "decoder direction reappears there (best decoder cosine above the threshold); it is taken over the latents "
    "that fire, since a dead latent is found nowhere. The dead counts differ because their windows do: the run's "
    "held-out rows (compare's dead per seed and the held-out metrics' dead_fraction), analyze's larger token set "
    "(held-out rows, then training rows: more tokens, so fewer dead; its n_dead), and the last training window "
    "(train_dead_fraction: no firing within train.dead_tokens_threshold tokens, what training revives)."
)


@dataclass
class Tile:
    """One headline number: what it is, the number, and a sentence saying exactly what was counted."""

    label: str
    value: str
    detail: str


@dataclass
class VerdictLine:
    """One claim: its verdict, the claim in words and its key number."""

    verdict: str
    name: str
    number: str
    note: str = ""


@dataclass
class Headline:
    """The answer for one configuration."""

    config: str
    summary: str
    tiles: list[Tile] = field(default_factory=list)
    verdicts: list[VerdictLine] = field(default_factory=list)
    verdicts_note: str = ""
    kind: str = "headline"


@dataclass
class Facts:
    """What the outputs under the page's directory say about one configuration."""

    label: str
    compare: dict[str, Any] | None = None
    stability: dict[str, Any] | None = None
    analysis_tokens: Any = None
    claims: dict[str, Any] | None = None
    evals: dict[str, dict[str, Any]] = field(default_factory=dict)
    lm_loss: list[dict[str, Any]] = field(default_factory=list)


Getter = Callable[[str], Facts]
"""A configuration label → its Facts (created on first use)."""


def _mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


# --------------------------------------------------------------------------------------------
# gathering


def gather(root: Output, owner: dict[str, Path]) -> dict[str, Facts]:
    """Per configuration label, the facts every output under `root` holds; `owner` maps a label to the last
    comparison holding it (its numbers are the ones shown)."""
    facts: dict[str, Facts] = {}

    def get(label: str) -> Facts:
        return facts.setdefault(label, Facts(label))

    for label, cdir in owner.items():
        for s in (read_json(cdir / "summary.json") or {}).get("sets", []):
            if str(s.get("label", "")) == label:
                get(label).compare = s
    for out in walk(root):
        if out.kind == "analyze":
            _gather_analysis(out.path, get)
            _gather_cross_seed(out.path / "cross_seed", get)
        elif out.kind in ("run", "synthetic"):
            _gather_run(out.path, get)
            _gather_cross_seed(out.path / "synthetic_report" / "cross_seed", get)
    return dict(sorted(facts.items()))


def _gather_cross_seed(path: Path, get: Getter) -> None:
    """Cross-seed results an analysis or a synthetic experiment computed itself: their shared fraction and
    stability stand in for a comparison's where none holds the configuration."""
    for record in sorted(path.glob("*/cross_seed.json")):
        data = read_json(record)
        if isinstance(data, dict) and data.get("label") and get(str(data["label"])).compare is None:
            get(str(data["label"])).compare = data


def _gather_analysis(path: Path, get: Getter) -> None:
    """Per configuration of an analysis: its stability counts, claims and analysis token count."""
    record = read_json(path / "analysis.json") or {}
    for label, conf in (record.get("configs") or {}).items():
        if not isinstance(conf, dict):
            continue
        cdir = path / str(conf.get("dir", label))
        f = get(str(label))
        f.stability = read_json(cdir / "stability.json")
        f.claims = read_json(cdir / "claims.json") or conf.get("claims")
        f.analysis_tokens = (conf.get("analysis_tokens") or record.get("analysis_tokens") or {}).get("tokens")


def _gather_run(path: Path, get: Getter) -> None:
    """Per configuration of a run: each seed's last held-out evaluation and its lm_loss.json rows."""
    manifest = read_json(path / MANIFEST) or {}
    for key, metrics in ((manifest.get("eval") or {}).get("metrics") or {}).items():
        label, _, seed = str(key).rpartition("/")
        if label and isinstance(metrics, dict):
            get(label).evals[seed] = metrics
    lm = read_json(path / LM_LOSS)
    for row in (lm or {}).get("rows", []) if isinstance(lm, dict) else []:
        if isinstance(row, dict) and row.get("hookpoint") is not None:
            get(f"{row['hookpoint']}/{row.get('sae', row.get('sae_name'))}").lm_loss.append(row)


# --------------------------------------------------------------------------------------------
# the tiles


def shared_tile(f: Facts) -> Tile | None:
    """Paulo & Belrose's shared fraction, mean ± sd over ordered seed pairs."""
    s = f.compare or {}
    sf = s.get("shared_fraction") or {}
    if not isinstance(sf, dict) or sf.get("mean") is None:
        return None
    n = len(s.get("members") or [])
    pairs = f"{n * (n - 1)} ordered pairs of {n} seeds" if n > 1 else "the seed pairs"
    rule = s.get("rule") or {}
    return Tile("shared across seeds", pct_spread(sf.get("mean"), sf.get("std")),
                f"of a seed's latents have a partner in the other seed (Paulo & Belrose: decoder and encoder "
                f"cosine > {fmt(rule.get('threshold', 0.7))}); mean ± sd over {pairs}")


def _stability_reading(f: Facts) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """(rule, per-seed counts) of the analysis: under Gerasimov's reappearance when it holds that reading (its
    own or its alternate), else under its own rule; None without an analysis."""
    st = f.stability or {}
    for rec in (st, st.get("alternate") or {}):
        if isinstance(rec, dict) and (rec.get("rule") or {}).get("stability") == "reappears" and rec.get("per_seed"):
            return rec["rule"], rec["per_seed"]
    if isinstance(st, dict) and st.get("per_seed"):
        return st.get("rule") or {}, st["per_seed"]
    return None


def stable_tile(f: Facts) -> Tile | None:
    """The share of the ALIVE latents that are stable (mean ± sd over seeds), dead ones counted apart."""
    reading = _stability_reading(f)
    if reading is not None:
        rule, per_seed = reading
        alive = [(r, _alive(r)) for r in per_seed if _alive(r) > 0]
        shares = [int(r.get("n_stable_alive", 0)) / n for r, n in alive]
        unstable = [int(r.get("n_unstable_alive", 0)) / n for r, n in alive]
        if not shares:
            return Tile("stable, of the alive latents", "—", "no latent fired on the analysis tokens")
        (m, sd), (um, usd) = _mean_sd(shares), _mean_sd(unstable or [float("nan")])
        return Tile("stable, of the alive latents", pct_spread(m, sd),
                    f"of the latents that fire are stable, {pct_spread(um, usd)} unstable; "
                    f"{PAPERS.get(str(rule.get('stability')), rule.get('stability'))}; mean ± sd over "
                    f"{len(shares)} seeds")
    st = (f.compare or {}).get("stability") or {}
    if st.get("stable_fraction_alive") is None:
        return None
    rule = (f.compare or {}).get("rule") or {}
    return Tile("stable, of the alive latents", pct(st["stable_fraction_alive"]),
                f"of the {fmt(st.get('alive'))} latents that fire are stable, "
                f"{pct(st.get('unstable_fraction_alive'))} unstable, seeds pooled; "
                f"{PAPERS.get(str(rule.get('stability')), rule.get('stability'))} (Gerasimov's reappearance "
                "needs `saeseeds analyze`)")


def _alive(rec: dict[str, Any]) -> int:
    """A seed's latents that fired on the analysis tokens."""
    return int(rec.get("n_latents", 0)) - int(rec.get("n_dead", 0))


def dead_tile(f: Facts) -> Tile | None:
    """Dead latents, with the window each count is over: held-out rows, analysis tokens, training window."""
    parts, value = [], None
    dead = (f.compare or {}).get("dead_latents")
    latents = (f.compare or {}).get("num_latents") or []
    if isinstance(dead, dict) and dead:
        counts = list(dead.values())
        total = sum(latents) if latents else None
        value = pct(sum(counts) / total) if total else fmt(sum(counts))
        parts.append(f"held-out rows: {'/'.join(fmt(c) for c in counts)} per seed")
    held_out = [m.get("dead_fraction") for _, m in sorted(f.evals.items())]
    if not parts and held_out and all(isinstance(d, (int, float)) for d in held_out):
        value = pct(statistics.fmean(held_out))
        parts.append(f"held-out rows: {'/'.join(pct(d) for d in held_out)} per seed")
    per_seed = (f.stability or {}).get("per_seed") or []
    if per_seed:
        tokens = f" {fmt(f.analysis_tokens)}" if f.analysis_tokens else ""
        parts.append(f"the{tokens} analysis tokens: {'/'.join(fmt(r.get('n_dead')) for r in per_seed)}")
        if value is None:
            n = sum(r.get("n_latents", 0) for r in per_seed)
            value = pct(sum(r.get("n_dead", 0) for r in per_seed) / n) if n else "—"
    train = [m.get("train_dead_fraction") for _, m in sorted(f.evals.items())]
    if train and all(isinstance(t, (int, float)) for t in train):
        parts.append(f"last training window: {'/'.join(pct(t) for t in train)}")
    if not parts:
        return None
    return Tile("dead, counted apart", value or "—", "never fired on " + " · ".join(parts))


def lm_loss_tile(f: Facts) -> Tile | None:
    """LM loss recovered (CE) and KL with the SAE spliced in, mean ± sd over seeds, as `train` prints them."""
    rows = [r for r in f.lm_loss if isinstance(r.get("ce_loss_recovered"), (int, float))]
    if not rows:
        return None
    rec = _mean_sd([float(r["ce_loss_recovered"]) for r in rows])
    kl = [float(r["kl_spliced"]) for r in rows if isinstance(r.get("kl_spliced"), (int, float))]
    ce = [float(r["ce_spliced"]) for r in rows if isinstance(r.get("ce_spliced"), (int, float))]
    kl_text = f", KL {_mean_sd(kl)[0]:.4f} ± {_mean_sd(kl)[1]:.4f} nats/token" if kl else ""
    ce_text = (f" (CE clean {fmt(rows[0].get('ce_clean'))}, spliced {fmt(statistics.fmean(ce))}, zero-ablated "
               f"{fmt(rows[0].get('ce_zero'))})") if ce else ""
    return Tile("LM loss recovered", f"{rec[0]:.3f} ± {rec[1]:.3f}",
                f"(CE) with the SAE spliced in, held-out chunks; 1 = the clean model, 0 = the hookpoint "
                f"zero-ablated{kl_text}{ce_text}; mean ± sd over {len(rows)} seed(s)")


# --------------------------------------------------------------------------------------------
# the claims


def _effect(claim: dict[str, Any]) -> str:
    """The claim's effect size with its 95% CI, or empty."""
    eff = claim.get("effect_size") or {}
    if not isinstance(eff, dict) or eff.get("mean") is None:
        return ""
    ci = eff.get("ci95") or [None, None]
    text = f"{eff.get('name', 'effect')}: {fmt(eff.get('mean'))}"
    return text + (f" [95% CI {fmt(ci[0])}, {fmt(ci[1])}]" if ci[0] is not None else "")


def verdict_lines(claims: dict[str, Any]) -> list[VerdictLine]:
    """One line per claim (and per functional claim the paper's descriptive answer): verdict and key number."""
    lines = []
    for name, c in claims.items():
        if not isinstance(c, dict):
            continue
        words = name.replace("_", " ")
        holds = c.get("holds")
        if holds is None:
            number, note = "", str(c.get("reason") or "")
        else:
            number = _effect(c)
            number += f"; Holm p {fmt(c.get('p_holm'))}" if c.get("p_holm") is not None else ""
            note = str(c.get("question") or "")
        lines.append(VerdictLine(VERDICT_WORDS.get(holds, "undetermined"), words, number, note))
        desc = c.get("descriptive")
        if isinstance(desc, dict):
            share = desc.get("harm_share_stable") or {}
            other = desc.get("harm_share_unstable") or {}
            number = (f"share of the ablation harm: stable {pct_spread(share.get('mean'), share.get('std'))}, "
                      f"unstable {pct_spread(other.get('mean'), other.get('std'))}"
                      if isinstance(share, dict) and share.get("mean") is not None else "")
            lines.append(VerdictLine(VERDICT_WORDS.get(desc.get("holds"), "undetermined"),
                                     f"{words}, as the paper states it", number,
                                     str(desc.get("reason") or desc.get("rule") or "")))
    return lines


def grouped(lines: list[VerdictLine]) -> list[VerdictLine]:
    """Decided claims first (holds, then does not hold), then the undetermined ones, one line per reason."""
    decided = sorted((v for v in lines if v.verdict != "undetermined"), key=lambda v: v.verdict != "holds")
    reasons: dict[str, list[str]] = {}
    for v in lines:
        if v.verdict == "undetermined":
            reasons.setdefault(v.note, []).append(v.name)
    return decided + [VerdictLine("undetermined", "; ".join(names), "", note) for note, names in reasons.items()]


def _verdicts_note(claims: dict[str, Any]) -> str:
    """Whose claims and under which estimator (said once, under the headlines)."""
    first = next((c for c in claims.values() if isinstance(c, dict)), {})
    est = (first.get("stability") or {}).get("estimator") if isinstance(first.get("stability"), dict) else None
    paper = first.get("paper") or "the paper"
    return (f"Claims of {paper}, judged with {PAPERS.get(str(est), est or 'its')} stability estimator: "
            "each test asks whether stable and unstable latents differ beyond random latents of the same firing "
            "frequency (Holm-corrected over the configuration's claims); undetermined says why.")


# --------------------------------------------------------------------------------------------
# the section


def _summary(f: Facts, tiles: list[Tile]) -> str:
    """One sentence in plain words."""
    s = f.compare or {}
    sf = (s.get("shared_fraction") or {}).get("mean") if isinstance(s.get("shared_fraction"), dict) else None
    n = len(s.get("members") or []) or len(f.evals) or None
    words = []
    if isinstance(sf, (int, float)):
        words.append(f"{pct(1 - sf)} of a seed's latents have no partner in another seed (seed-specific); "
                     f"{pct(sf)} are shared")
    stable = next((t for t in tiles if t.label.startswith("stable")), None)
    if stable is not None and stable.value != "—":
        words.append(f"{stable.value.split(' ±')[0]} of the latents that fire are stable")
    latents = sorted(set(s.get("num_latents") or []))
    size = f", {'/'.join(fmt(v) for v in latents)} latents each" if latents else ""
    head = f"{n} seeds{size}. " if n else ""
    return head + ("; ".join(words) + "." if words else "")


def headline(f: Facts) -> Headline:
    """The headline of one configuration."""
    tiles = [t for t in (shared_tile(f), stable_tile(f), dead_tile(f), lm_loss_tile(f)) if t is not None]
    claims = f.claims if isinstance(f.claims, dict) else {}
    return Headline(f.label, _summary(f, tiles), tiles, grouped(verdict_lines(claims)),
                    _verdicts_note(claims) if claims else "")


def headline_figure(owner: dict[str, Path], root: Path) -> Figure | None:
    """The stability histogram of the last comparison (the one holding the most configurations)."""
    for cdir in sorted(set(owner.values()), key=lambda p: (-list(owner.values()).count(p), str(p))):
        path = cdir / "figures" / HEADLINE_FIGURE
        labels = ", ".join(sorted(k for k, v in owner.items() if v == cdir))
        fig = png_figure(path, f"Stability of every latent, per configuration — {labels}",
                         "The figure that matters: every configuration's latents by the share of the other seeds "
                         "that share them (0 = seed-specific, 1 = in every seed), dead latents hatched — the "
                         "distribution behind the shared and stable numbers above, all configurations in one "
                         "figure", source=str(path.relative_to(root)) if path.is_relative_to(root) else str(path))
        if fig is not None:
            return fig
    return None


def headline_section(root: Output, owner: dict[str, Path]) -> Section | None:
    """The first section of the page: one headline per configuration, then the one figure; None when no output
    under `root` has a configuration to speak of."""
    facts = gather(root, owner)
    heads = [headline(f) for f in facts.values()]
    heads = [h for h in heads if h.tiles or h.verdicts]
    if not heads:
        return None
    notes = list(dict.fromkeys(h.verdicts_note for h in heads if h.verdicts_note))
    for h in heads:
        h.verdicts_note = ""
    sec = Section("headline", "Headline: what the seeds share", "headline", "",
                  [*heads, Note(" ".join([READING, *notes]))])
    fig = headline_figure(owner, root.path)
    if fig is not None:
        fig.wide = False
        sec.blocks.append(fig)
    return sec
