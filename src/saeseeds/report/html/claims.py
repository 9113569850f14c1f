"""How a claim reads on the report page: its test row, the paper's descriptive answer and the answers under both
stability estimators; shared by the analysis and interpretation sections (so neither imports the other)."""

from __future__ import annotations

import re
from typing import Any

from saeseeds.report.html.blocks import ClaimRow, Claims, fmt, pct_spread, records_table
from saeseeds.signflip import VERDICT_WORDS


def anchor(text: str) -> str:
    """An HTML id made of `text`."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "top"




def _claim_row(name: str, claim: dict[str, Any]) -> ClaimRow:
    """The claim's test row: its name with the stability estimator, and the question the test answers."""
    eff = claim.get("effect_size") or {}
    ci = eff.get("ci95") or [None, None]
    effect = f"{eff.get('name', 'effect')}: {fmt(eff.get('mean'))}"
    if ci[0] is not None or ci[1] is not None:
        effect += f" [95% CI {fmt(ci[0])}, {fmt(ci[1])}]"
    n = claim.get("n") or {}
    per_seed = n.get("per_seed") or []
    counts = " · ".join("/".join(fmt(v) for v in rec.values()) for rec in per_seed if isinstance(rec, dict))
    keys = "/".join(per_seed[0].keys()) if per_seed and isinstance(per_seed[0], dict) else ""
    n_text = f"{fmt(n.get('seeds'))} seeds" + (f"; {keys}: {counts}" if counts else "")
    estimator = (claim.get("stability") or {}).get("estimator") if isinstance(claim.get("stability"), dict) else None
    label = name.replace("_", " ") + (f" [{estimator}]" if estimator else "")
    test = str(claim.get("test", ""))
    if claim.get("question"):
        test = f"{claim['question']} — {test}"
    return ClaimRow(label, VERDICT_WORDS.get(claim.get("holds")), fmt(claim.get("p_value")), fmt(claim.get("p_holm")),
                    fmt(claim.get("alpha")), effect, n_text, test, str(claim.get("reason", "") or ""))


def _share(desc: dict[str, Any], key: str) -> str:
    rec = desc.get(key) or {}
    return pct_spread(rec.get("mean"), rec.get("std")) if isinstance(rec, dict) and rec else "—"


def _descriptive_row(name: str, claim: dict[str, Any]) -> ClaimRow | None:
    """The paper's own statement (no control, no p-value) as a second row under a functional claim."""
    desc = claim.get("descriptive")
    if not isinstance(desc, dict):
        return None
    effect = (f"share of ablation harm: stable {_share(desc, 'harm_share_stable')}, unstable "
              f"{_share(desc, 'harm_share_unstable')}; carried alone: stable {_share(desc, 'alone_share_stable')}, "
              f"unstable {_share(desc, 'alone_share_unstable')} (mean ± sd over seeds)")
    return ClaimRow(f"{name.replace('_', ' ')} — as the paper states it", VERDICT_WORDS.get(desc.get("holds")), "—", "—",
                    "—", effect, "descriptive: no control, no p-value",
                    f"{desc.get('question', '')} — {desc.get('rule', '')}", str(desc.get("reason", "") or ""))


def _estimator_records(claims: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per claim: its answers under both stability estimators, whether they differ, and Holm over
    the run's configurations."""
    out = []
    for name, c in claims.items():
        if not isinstance(c, dict) or not isinstance(c.get("alternate"), dict):
            continue
        alt = c["alternate"]
        est, other = (c.get("stability") or {}).get("estimator"), (alt.get("stability") or {}).get("estimator")
        rec: dict[str, Any] = {"claim": name.replace("_", " "), f"test ({est})": VERDICT_WORDS.get(c.get("holds")),
                               f"test ({other})": VERDICT_WORDS.get(alt.get("holds"))}
        if isinstance(c.get("descriptive"), dict):
            rec[f"as stated ({est})"] = VERDICT_WORDS.get(c["descriptive"].get("holds"))
            rec[f"as stated ({other})"] = VERDICT_WORDS.get((alt.get("descriptive") or {}).get("holds"))
        rec["answer changes"] = bool(c.get("estimator_changes_answer"))
        run = c.get("run_holm")
        if isinstance(run, dict):
            rec["Holm over the run"] = f"{VERDICT_WORDS.get(run.get('holds'))} (m = {run.get('family')})"
        out.append(rec)
    return out


def claim_blocks(claims: dict[str, Any], label: str) -> list[Any]:
    """The claims table (each test row, and under a functional claim the paper's descriptive answer), then the
    answers under both stability estimators."""
    rows = []
    for name, claim in claims.items():
        if isinstance(claim, dict):
            rows.append(_claim_row(name, claim))
            desc = _descriptive_row(name, claim)
            if desc is not None:
                rows.append(desc)
    blocks: list[Any] = [Claims(rows, f"Claims · {label}")]
    records = _estimator_records(claims)
    if records:
        blocks.append(records_table(records, f"Answers under both stability estimators · {label}", first="claim"))
    return blocks
