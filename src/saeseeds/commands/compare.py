"""`saeseeds compare A B [C ...] --out DIR`: align SAEs across seeds, write tables, figures and a summary.

Each argument is an SAE checkpoint directory (any format `load_any` reads) or a run directory; the
seeds of each SAE configuration of a run are compared among themselves, and the checkpoints named
directly form one more group.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from saeseeds.align.assignment import row_max_cosine
from saeseeds.align.frequency import binned_by_frequency, firing_frequency, load_activation_batches
from saeseeds.align.multiseed import MultiSeedResult, summarise_alignments
from saeseeds.align.pair import (
    DEFAULT_THRESHOLD,
    Alignment,
    align_pair,
    reverse_alignment,
    sae_weights,
    write_json_atomic,
)
from saeseeds.errors import CheckpointError, DataError


@dataclass
class Group:
    """SAEs to compare with each other: a label, their names and checkpoint paths, optional eval data."""

    label: str
    names: list[str]
    paths: list[Path]
    run_dir: Path | None = None
    hookpoint: str = ""


def register(subparsers: Any) -> None:
    """Add the `compare` verb."""
    p = subparsers.add_parser("compare", help="align SAEs across seeds: shared latents, stability, figures",
                              description=__doc__)
    p.add_argument("inputs", nargs="+", type=Path, help="SAE checkpoint directories or run directories")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="cosine threshold of a shared latent (default 0.7)")
    p.add_argument("--absolute", action="store_true", help="use |cosine| (a flipped latent counts as the same)")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    p.add_argument("--activations", type=Path, default=None,
                   help=".npy / .safetensors held-out activations [tokens, d_in] for firing frequencies")
    p.add_argument("--max-tokens", type=int, default=262_144, help="held-out tokens used for frequencies")
    p.set_defaults(func=run)


def collect_groups(inputs: list[Path]) -> list[Group]:
    """Run directories become one group per (hookpoint, configuration); loose checkpoints one group."""
    from saeseeds.train.run_dir import group_by_config, is_run_dir, list_checkpoints

    groups: list[Group] = []
    loose_names: list[str] = []
    loose_paths: list[Path] = []
    for path in inputs:
        if not path.exists():
            raise CheckpointError(f"{path} does not exist")
        if is_run_dir(path):
            refs = list_checkpoints(path)
            if not refs:
                raise CheckpointError(f"run directory {path} holds no SAE checkpoints")
            for (hook, name), members in group_by_config(refs).items():
                label = f"{path.name}:{hook}/{name}" if len(inputs) > 1 else f"{hook}/{name}"
                groups.append(Group(label, [f"seed{m.seed}" for m in members], [m.path for m in members], path, hook))
        else:
            loose_names.append(_unique(path.name or str(path), loose_names))
            loose_paths.append(path)
    if loose_paths:
        groups.append(Group("checkpoints", loose_names, loose_paths))
    if not any(len(g.paths) >= 2 for g in groups):
        raise CheckpointError("nothing to compare: give at least two checkpoints, or a run with two seeds")
    return groups


def _unique(name: str, taken: list[str]) -> str:
    """`name`, or `name-2`, `name-3`, ... when it is already used."""
    out, k = name, 1
    while out in taken:
        k += 1
        out = f"{name}-{k}"
    return out


def _slug(text: str) -> str:
    """A file-name-safe version of a label."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def compare_group(
    group: Group, args: argparse.Namespace, out: Path, bar: tqdm
) -> tuple[MultiSeedResult, list[Any], dict[int, np.ndarray]]:
    """Align every ordered pair of the group (computing each unordered pair once), save per-pair tables."""
    from saeseeds.sae import load_any

    saes = [load_any(p) for p in group.paths]
    alignments: dict[tuple[int, int], Alignment] = {}
    for i in range(len(saes)):
        for j in range(i + 1, len(saes)):
            if saes[i].d_in != saes[j].d_in:
                raise DataError(f"{group.paths[i]} has d_in {saes[i].d_in} but {group.paths[j]} has {saes[j].d_in}")
            bar.set_postfix_str(f"{group.label}: {group.names[i]} vs {group.names[j]}")
            al = align_pair(saes[i], saes[j], threshold=args.threshold, absolute=args.absolute,
                            device=args.device, name_a=group.names[i], name_b=group.names[j])
            dec_j = sae_weights(saes[j])[0]
            dec_i = sae_weights(saes[i])[0]
            back = reverse_alignment(al, row_max_cosine(dec_j, dec_i, absolute=args.absolute,
                                                        device=args.device))
            alignments[(i, j)], alignments[(j, i)] = al, back
            bar.update(1)
    table_dir = out / "pairs" / _slug(group.label)
    for al in alignments.values():
        al.save(table_dir, f"{_slug(al.name_a)}__{_slug(al.name_b)}")
    result = summarise_alignments(group.names, alignments)
    frequencies = group_frequencies(group, saes, args)
    for i, name in enumerate(group.names):
        arrays = {"stability": result.stability[i]}
        if i in frequencies:
            arrays["firing_frequency"] = frequencies[i]
        np.savez_compressed(table_dir / f"{_slug(name)}__latents.npz", **arrays)
    return result, saes, frequencies


def group_frequencies(group: Group, saes: list[Any], args: argparse.Namespace) -> dict[int, np.ndarray]:
    """Firing frequency of each SAE of the group on held-out activations, when any are available."""
    batches = None
    if args.activations is not None:
        batches = load_activation_batches(str(args.activations), max_rows=args.max_tokens)
    elif group.run_dir is not None:
        try:
            from saeseeds.train.run_dir import eval_batches_for_run

            batches = eval_batches_for_run(group.run_dir)
        except Exception as err:  # the run's data may not be reachable from here (no network, moved files)
            print(f"note: no held-out activations for {group.label} ({err}); skipping frequencies")
    if not batches:
        return {}
    return {i: firing_frequency(sae, batches, hookpoint=group.hookpoint) for i, sae in enumerate(saes)}


def run(args: argparse.Namespace) -> int:
    """Compare, write DIR/summary.json, per-latent tables and figures, print a table."""
    from saeseeds.report import alignment_plots as plots

    groups = collect_groups(list(args.inputs))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    fig_dir = out / "figures"
    n_pairs = sum(len(g.paths) * (len(g.paths) - 1) // 2 for g in groups)
    summary: dict[str, Any] = {"threshold": args.threshold, "absolute": args.absolute, "pairs": [],
                               "groups": [], "figures": []}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    stabilities: dict[str, np.ndarray] = {}
    with tqdm(total=n_pairs, desc="aligning pairs", unit="pair") as bar:
        for group in groups:
            if len(group.paths) < 2:
                continue
            result, saes, freqs = compare_group(group, args, out, bar)
            slug = _slug(group.label)
            for al in result.alignments.values():
                summary["pairs"].append({"group": group.label, **{k: v for k, v in al.summary().items()
                                                                   if k != "stats"}})
            curves[group.label] = (result.only_in_base, result.only_in_base_std)
            stabilities[group.label] = np.concatenate(result.stability)
            first = result.alignments[(0, 1)]
            summary["figures"].append(str(plots.plot_dec_vs_enc(first, fig_dir, f"fig_a_dec_vs_enc__{slug}")))
            gsum: dict[str, Any] = {
                "label": group.label, "members": group.names, "paths": [str(p) for p in group.paths],
                "shared_fraction": result.shared_fraction_stats(),
                "stability": result.stability_summary(),
                "only_in_base": {"mean": result.only_in_base.tolist(), "std": result.only_in_base_std.tolist()},
            }
            if 0 in freqs:
                summary["figures"].append(str(plots.plot_similarity_vs_frequency(
                    freqs[0], first.dec_cos, fig_dir, label=f"{group.label}: {first.name_a} vs {first.name_b}",
                    name=f"fig_c_similarity_vs_frequency__{slug}")))
                summary["figures"].append(str(plots.plot_similarity_vs_frequency(
                    freqs[0], result.stability[0], fig_dir, label=f"{group.label}: {first.name_a}",
                    name=f"fig_c_stability_vs_frequency__{slug}", ylabel="feature stability")))
                gsum["stability_by_frequency"] = binned_by_frequency(freqs[0], result.stability[0])
                gsum["dead_latents"] = {n: int((freqs[i] == 0).sum()) for i, n in enumerate(group.names)}
            summary["groups"].append(gsum)
    summary["figures"].append(str(plots.plot_only_in_base(curves, fig_dir)))
    summary["figures"].append(str(plots.plot_stability_histogram(stabilities, fig_dir)))
    write_json_atomic(out / "summary.json", summary)
    print_table(summary)
    print(f"wrote {out / 'summary.json'}, per-latent tables in {out / 'pairs'}, figures in {fig_dir}")
    return 0


def print_table(summary: dict[str, Any]) -> None:
    """A readable table of the pairs and the per-group spread."""
    rows = summary["pairs"]
    wa = max([len(r["a"]) for r in rows] + [1])
    wg = max([len(r["group"]) for r in rows] + [5])
    print(f"{'group':<{wg}}  {'a':<{wa}}  {'b':<{wa}}  {'latents':>8}  {'shared':>7}  {'fraction':>8}  {'MMCS':>6}")
    for r in rows:
        print(f"{r['group']:<{wg}}  {r['a']:<{wa}}  {r['b']:<{wa}}  {r['num_latents_a']:>8}  "
              f"{r['n_shared']:>7}  {r['shared_fraction']:>8.1%}  {r['mmcs']:>6.3f}")
    for g in summary["groups"]:
        s = g["shared_fraction"]
        print(f"{g['label']}: shared fraction {s['mean']:.1%} ± {s['std']:.1%} over {len(g['members'])} seeds; "
              f"stable latents {g['stability'].get('stable_fraction', float('nan')):.1%}")
