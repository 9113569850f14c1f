"""Compare the seeds of SAE configurations: one `CrossSeedResult` per seed set, stored in one output directory.

Output layout (`save_comparison`, format `saeseeds.compare/1`, docs/formats.md):

    summary.json           the rule, one entry per seed set (its summary, directory and checkpoint paths, relative to
                           summary.json), every ordered pair
    sets/<slug>/           one CrossSeedResult (cross_seed.json, pairs/, latents/)
    figures/               PNG figures with the numbers behind them as JSON
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from saeseeds.align.cross_seed import CrossSeedResult, SeedSet, align_seeds, pw_mcc
from saeseeds.align.pair import sae_weights
from saeseeds.align.screen_choice import check_screen
from saeseeds.align.sharing import SharingRule, describe_stability
from saeseeds.analysis.frequency import binned_by_frequency, firing_frequency
from saeseeds.api.discovery import comparable, seed_sets, slug
from saeseeds.atomic import atomic_dir
from saeseeds.data.arrays import load_activation_batches
from saeseeds.distributed import spread_pairs
from saeseeds.errors import DataError
from saeseeds.outputs import check_output_dir, mark_output
from saeseeds.progress import tqdm
from saeseeds.records import read_record, relative_path, resolve_path, write_record
from saeseeds.sae import load_any

FORMAT = "saeseeds.compare/1"
KIND = "compare"
log = logging.getLogger(__name__)


def compare(
    inputs: SeedSet | Sequence[str | Path] | str | Path,
    *,
    rule: SharingRule | None = None,
    device: str | None = None,
    activations: str | Path | None = None,
    max_tokens: int = 262_144,
    progress: bool = False,
    screen: str = "auto",
) -> CrossSeedResult:
    """The cross-seed result of one seed set: a `SeedSet`, a list of checkpoints, or a one-configuration run.
    `screen` (auto, int8, bf16, fp32) is the sparse alignment's screen (`saeseeds.align.screen_choice`)."""
    check_screen(screen)
    if isinstance(inputs, SeedSet):
        chosen = inputs
    else:
        sets = comparable(seed_sets(inputs))
        if len(sets) != 1:
            labels = ", ".join(s.label for s in sets)
            raise DataError(f"the inputs hold {len(sets)} seed sets ({labels}); use compare_all, or pick one")
        chosen = sets[0]
    return compare_all([chosen], rule=rule, device=device, activations=activations, max_tokens=max_tokens,
                       progress=progress, screen=screen)[0]


def compare_all(
    inputs: Sequence[SeedSet] | Sequence[str | Path] | str | Path,
    *,
    rule: SharingRule | None = None,
    device: str | None = None,
    activations: str | Path | None = None,
    max_tokens: int = 262_144,
    progress: bool = False,
    screen: str = "auto",
) -> list[CrossSeedResult]:
    """One cross-seed result per seed set (every unordered pair aligned once), with firing frequencies when
    the run stored them or `activations` (a .npy / .safetensors file of held-out rows) is given. `screen`:
    auto (what this machine runs fastest, timed once per machine), int8, bf16 or fp32 (docs/cli.md)."""
    screen = check_screen(screen)
    rule = rule or SharingRule()
    if isinstance(inputs, (str, Path)) or not all(isinstance(s, SeedSet) for s in inputs):
        sets = comparable(seed_sets(inputs))  # type: ignore[arg-type]
    else:
        sets = comparable(list(inputs))  # type: ignore[arg-type]
    batches = load_activation_batches(activations, max_rows=max_tokens) if activations is not None else None
    n_pairs = sum(len(s) * (len(s) - 1) // 2 for s in sets)
    log.debug("%d seed set(s), %d pair(s), device %s, %s", len(sets), n_pairs, device or "auto", rule.describe())
    results = []
    with tqdm(total=n_pairs, desc="aligning pairs", unit="pair", disable=not progress) as bar:
        for seed_set in sets:
            t0 = time.perf_counter()
            saes = [load_any(p) for p in seed_set.paths]
            weights = [sae_weights(s) for s in saes]
            pair_map = spread_pairs([int(dec.shape[0]) for dec, _ in weights])  # under torchrun: by cost
            t1 = time.perf_counter()
            frequencies = ([firing_frequency(sae, batches, hookpoint=seed_set.hookpoint) for sae in saes]
                           if batches is not None else list(seed_set.frequencies or [None] * len(saes)))
            t2 = time.perf_counter()
            result = align_seeds(
                weights, list(seed_set.names), rule=rule, label=seed_set.label, hookpoint=seed_set.hookpoint,
                sae_name=seed_set.sae_name, paths=seed_set.paths, device=device, screen=screen,
                on_pair=lambda a, b, lbl=seed_set.label: (bar.set_postfix_str(f"{lbl}: {a} vs {b}"), bar.update(1)),
                map_pairs=pair_map,
            )
            result.frequencies = frequencies
            log.debug("%s: %d seeds loaded in %.2fs, frequencies in %.2fs, aligned in %.2fs", seed_set.label,
                      len(saes), t1 - t0, t2 - t1, time.perf_counter() - t2)
            results.append(result)
    return results


def save_comparison(results: Sequence[CrossSeedResult], out: str | Path, *, overwrite: bool = False,
                    figures: bool = True) -> Path:
    """Write every result, the figures and `summary.json` into `out` (built aside, swapped in whole);
    `figures=False` skips the per-set figures (a study's intermediate milestones: it draws its own)."""
    from saeseeds.report import alignment_plots as plots

    out = Path(out)
    check_output_dir(out, KIND, overwrite=overwrite)
    rules = {json.dumps(r.rule.to_dict(), sort_keys=True) for r in results}
    if len(rules) > 1:
        raise DataError("save_comparison: the results were judged by different sharing rules")
    with atomic_dir(out) as tmp:
        mark_output(tmp, KIND)
        fig_dir = tmp / "figures"
        summary: dict[str, Any] = {"rule": results[0].rule.to_dict() if results else None,
                                   "screens": screens_used(results), "sets": [], "pairs": [], "figures": []}
        drawn: list[Path] = []
        curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        stabilities: dict[str, np.ndarray] = {}
        dead: dict[str, np.ndarray] = {}
        seeds: dict[str, int] = {}
        for result in results:
            name = slug(result.label)
            result.save(tmp / "sets" / name)
            entry = {"dir": f"sets/{name}", **result.summary(),
                     "paths": [relative_path(p, tmp) for p in result.paths]}  # tmp lies beside out
            for _, al in sorted(result.alignments.items(), key=lambda kv: kv[0]):
                summary["pairs"].append({"set": result.label, **{k: v for k, v in al.summary().items()
                                                                 if k != "stats"}, "pw_mcc": pw_mcc(al)})
            curves[result.label] = result.only_in_base()
            stabilities[result.label] = np.concatenate(result.stabilities)
            if result.frequencies and all(f is not None for f in result.frequencies):
                dead[result.label] = np.concatenate([np.asarray(f) == 0 for f in result.frequencies])
            seeds[result.label] = len(result.stabilities)
            first = result.alignments[(0, 1)]
            if figures:
                drawn.append(plots.plot_dec_vs_enc(first, fig_dir, f"fig_a_dec_vs_enc__{name}", label=result.label))
            freq = result.frequencies[0] if result.frequencies else None
            if freq is not None:
                base_stability = result.stability(0)
            if freq is not None and figures:
                drawn.append(plots.plot_similarity_vs_frequency(
                    freq, first.dec_cos, fig_dir, label=f"{result.label}: {first.name_a} vs {first.name_b}",
                    name=f"fig_c_similarity_vs_frequency__{name}"))
                drawn.append(plots.plot_similarity_vs_frequency(
                    freq, base_stability, fig_dir, label=f"{result.label}: {first.name_a}",
                    name=f"fig_c_stability_vs_frequency__{name}", ylabel="feature stability"))
            if freq is not None:
                entry["stability_by_frequency"] = binned_by_frequency(freq, base_stability)
                entry["dead_latents"] = {n: int((f == 0).sum()) for n, f in zip(result.names, result.frequencies)
                                         if f is not None}
            summary["sets"].append(entry)
        if figures:
            drawn.append(plots.plot_only_in_base(curves, fig_dir))
            drawn.append(plots.plot_stability_histogram(stabilities, fig_dir, dead=dead, seeds=seeds))
        summary["figures"] = [str(Path(f).relative_to(tmp)) for f in drawn]
        write_record(tmp / "summary.json", FORMAT, summary)
    return out / "summary.json"


def screens_used(results: Sequence[CrossSeedResult]) -> list[dict[str, Any]]:
    """The distinct screen choices (screen, why, timings) of the sparse matchings in `results`; empty when every
    matching was solved densely (no screen ran)."""
    seen: dict[str, dict[str, Any]] = {}
    for result in results:
        for (i, j), al in result.alignments.items():
            for side in ("decoder", "encoder") if i < j else ():
                choice = ((al.stats or {}).get(side) or {}).get("screen_choice")
                if choice:
                    seen.setdefault(json.dumps(choice, sort_keys=True), choice)
    return list(seen.values())


def load_comparison(out: str | Path) -> list[CrossSeedResult]:
    """Every cross-seed result of a `compare` output directory."""
    out = Path(out)
    summary = read_record(out / "summary.json", FORMAT, f"{out} is not a compare output (summary.json is missing)")
    try:
        dirs = [resolve_path(entry["dir"], out) for entry in summary.get("sets", [])]
    except (KeyError, TypeError, AttributeError) as err:
        raise DataError(f"{out / 'summary.json'}: malformed sets ({type(err).__name__}: {err})") from err
    return [CrossSeedResult.load(d) for d in dirs]


def print_comparison(results: Sequence[CrossSeedResult]) -> None:
    """A readable table of the pairs and each set's spread."""
    rows = [(r.label, al) for r in results for _, al in sorted(r.alignments.items(), key=lambda kv: kv[0])]
    if not rows:
        return
    wa = max(len(al.name_a) for _, al in rows)
    wg = max([len(lbl) for lbl, _ in rows] + [3])
    print(f"{'set':<{wg}}  {'a':<{wa}}  {'b':<{wa}}  {'latents':>8}  {'shared':>7}  {'fraction':>8}  {'MMCS':>6}")
    for lbl, al in rows:
        print(f"{lbl:<{wg}}  {al.name_a:<{wa}}  {al.name_b:<{wa}}  {al.num_latents_a:>8}  "
              f"{al.n_shared:>7}  {al.shared_fraction:>8.1%}  {al.mmcs:>6.3f}")
    for r in results:
        s, st = r.shared_fraction_stats(), r.stability_summary()
        print(f"{r.label}: shared fraction {s['mean']:.1%} ± {s['std']:.1%} over {r.num_seeds} seeds; "
              f"{describe_stability(st)} ({r.rule.describe()})")
