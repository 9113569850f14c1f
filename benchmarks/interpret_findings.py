"""The findings section "Are unshared latents interpretable? (lexical baseline)": runs `saeseeds interpret` on an
output (or reads an earlier interpret output) and prints the markdown docs/findings.md quotes. Every number comes
from the interpret output's files (interpret.json); the wall time and the machine's load are measured here.

Usage (from the repository root):
    python benchmarks/interpret_findings.py --source saeseeds-demo --out interp     # run it, then print
    python benchmarks/interpret_findings.py --out interp                           # print an earlier output
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from saeseeds.signflip import VERDICT_WORDS


def _num(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def run(source: str, out: str, extra: list[str]) -> dict[str, Any]:
    """Run the CLI, timing it and reading the load average before and after."""
    cmd = ["saeseeds", "interpret", source, "--out", out, "--overwrite", "--quiet", *extra]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "saeseeds", *cmd[1:]], check=True)
    wall = time.perf_counter() - t0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"command": shlex.join(cmd), "wall_s": wall, "load_before": load_before[0],
            "load_after": os.getloadavg()[0], "cores": cores}


def markdown(record: dict[str, Any], timing: dict[str, Any] | None) -> str:
    """The section's text from interpret.json (and the measured wall time)."""
    ex = record["explainer"]
    opts = record["options"]
    rows = record["analysis_rows"]
    lines = ["## Are unshared latents interpretable? (lexical baseline)", ""]
    lines.append(f"Explainer: `{ex['name']}`, a **{ex['label']}**: each latent's explanation is its top tokens and "
                 "n-grams (no language model), so these numbers say how *lexical* a latent is, not how interpretable "
                 "it is to a reader or an LLM explainer (`--explainer hf:PATH` / `openai:URL` for that). Detection "
                 "AUROC on held-out windows the explainer never saw, against windows of matched token frequency "
                 "(docs/definitions.md, \"Interpretability\").")
    lines.append("")
    tokens = ", ".join(f"{r['tokens']:,} rows ({r['held_out_rows']:,} held-out, {r['train_rows']:,} training; LM "
                       f"forward: {'yes' if r['lm_forward'] else 'no'})" for r in rows)
    s = opts["sampling"]
    lines.append(f"Contexts: {tokens}; windows of {s['window']} tokens; {s['latents']} latents per group and seed, "
                 f"frequency-matched in {s['freq_bins']} bins; {s['n_top']} + {s['n_explain_random']} windows "
                 f"explained, {s['n_score']} scored per latent; rule τ = {opts['rule']['threshold']}, cut "
                 f"{opts['rule']['cut']}; equivalence margin δ = {opts['margin']} AUROC; {opts['n_draws']} "
                 f"permutation draws; seed {s['seed']}.")
    lines.append("")
    if timing:
        lines.append(f"Command: `{timing['command']}` — wall time {timing['wall_s']:.0f} s on {timing['cores']} CPU "
                     f"cores with a 1-minute load average of {timing['load_before']:.1f} before and "
                     f"{timing['load_after']:.1f} after (a machine shared with other jobs).")
    else:
        lines.append(f"Time inside `ss.interpret`: {record['seconds']:.0f} s.")
    lines.append("")
    verdicts: dict[str, list[Any]] = {}
    for entry in record["sets"].values():
        for claim, v in entry["claims"].items():
            verdicts.setdefault(claim, []).append(v.get("holds"))
    summary = "; ".join(f"`{c}` holds in {sum(1 for h in hs if h is True)} of {len(hs)} configurations "
                        f"({sum(1 for h in hs if h is None)} undetermined)" for c, hs in verdicts.items())
    lines.append(f"Across configurations: {summary}. Each configuration is its own Holm family of three claims; "
                 "the verdicts are about the lexical baseline's detection scores on this small held-out set only.")
    lines.append("")
    for name, entry in record["sets"].items():
        lines.append(f"**{name}** (seeds {', '.join(entry['seeds'])})")
        lines.append("")
        lines.append("| group | detection AUROC, mean ± sd over seeds | latents scored |")
        lines.append("|---|---|---|")
        for group, g in entry["summary"].items():
            n = sum(p["n"] for p in g["per_seed"])
            lines.append(f"| {group} | {_num(g['detection_auroc_mean'])} ± {_num(g['detection_auroc_sd'])} | {n} |")
        lines.append("")
        lines.append("| claim | paper | verdict | p (Holm) | effect, mean [95% CI over units] |")
        lines.append("|---|---|---|---|---|")
        for claim, v in entry["claims"].items():
            eff = v.get("effect_size") or {}
            ci = eff.get("ci95") or [None, None]
            why = f" ({v['reason']})" if v.get("holds") is None and v.get("reason") else ""
            lines.append(f"| `{claim}` | {v.get('paper', '')} | {VERDICT_WORDS[v.get('holds')]}{why} | "
                         f"{_num(v.get('p_value'))} ({_num(v.get('p_holm'))}) | {eff.get('name', '')}: "
                         f"{_num(eff.get('mean'))} [{_num(ci[0])}, {_num(ci[1])}] |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=None, help="run or output to interpret (omit: read --out as it is)")
    parser.add_argument("--out", required=True, help="the interpret output")
    parser.add_argument("extra", nargs="*", help="more flags for saeseeds interpret (after --)")
    args = parser.parse_args()
    timing = run(args.source, args.out, args.extra) if args.source else None
    record = json.loads((Path(args.out) / "interpret.json").read_text())
    print(markdown(record, timing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
