"""The project's central object: the seeds of one SAE configuration, their pairwise alignments, and each
latent's stability, computed once from weights and stored once on disk.

`align_seeds(...)` aligns every unordered pair of seeds once (decoder and encoder matchings, plus both sides'
decoder max-cosines) and derives the reverse direction from the same matchings (a transposed optimal
assignment is optimal). `CrossSeedResult` holds the alignments and derives everything else under a
`SharingRule`: per-latent stability (`shared` or `reappears`), the stable / unstable split, the
found-only-in-base curve and the shared-fraction matrix. Re-judging a result under another threshold,
stability estimator or cut needs no new alignment (`with_rule`); only a change of signed/absolute cosines does.

On disk (`save` / `load`, schema `saeseeds.cross_seed/1`, documented in docs/formats.md):

    cross_seed.json        label, names, paths (relative to this file), weight digests, latent counts, the rule,
                           summaries, pair index
    pairs/<i>-<j>.npz      for seeds i < j: dec_partner, dec_cos, enc_partner, enc_cos (of i's latents),
                           dec_max_cos_a [n_i], dec_max_cos_b [n_j]
    latents/<i>.npz        per latent of seed i: stability_shared, stability_reappears, stable, unstable
                           (under the rule), firing_frequency when known
"""

from __future__ import annotations

import itertools
import logging
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saeseeds.align.pair import Alignment, align_weights_both_ways, reverse_alignment, sae_weights
from saeseeds.align.screen_choice import plan_screen
from saeseeds.align.sharing import STABILITY_KINDS, SharingRule
from saeseeds.align.similarity import ScreenMode
from saeseeds.atomic import atomic_write_npz
from saeseeds.errors import DataError
from saeseeds.hashing import sha256_hex, tensor_bytes
from saeseeds.records import read_record, relative_path, resolve_path, write_record

FORMAT = "saeseeds.cross_seed/1"
RESULT_FILE = "cross_seed.json"
log = logging.getLogger(__name__)
PairMap = Callable[[list[tuple[int, int]], Callable[[tuple[int, int]], Any]], list[Any]]
"""How `align_seeds` runs its pairs: `map_pairs(pairs, fn) -> [fn(p) for p in pairs]`, however spread."""
ORDERINGS = 20
"""Random orderings of the other seeds averaged in the found-only-in-base curve (all when there are few)."""


@dataclass(frozen=True)
class SeedSet:
    """The seeds of one SAE configuration to compare with each other: names and checkpoint locations."""

    label: str
    names: tuple[str, ...]
    paths: tuple[Path, ...]
    hookpoint: str = ""
    sae_name: str = ""
    seeds: tuple[int | None, ...] = ()
    run_dir: Path | None = None
    frequencies: tuple[np.ndarray | None, ...] = field(default=(), compare=False, repr=False)
    """Per seed, its per-latent firing frequency on the run's held-out set as the trainer stored it (None for a
    seed without one); empty when the set does not come from a run."""

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class StabilityGroups:
    """One seed's per-latent stability and its stable / unstable masks under a rule."""

    stability: np.ndarray
    """float64 [n]: fraction of the other seeds in which the latent is found."""
    stable: np.ndarray
    """bool [n]."""
    unstable: np.ndarray
    """bool [n]."""
    n_others: int


@dataclass
class CrossSeedResult:
    """Alignments between every ordered pair of S seeds of one configuration, judged by one rule."""

    label: str
    names: list[str]
    rule: SharingRule
    alignments: dict[tuple[int, int], Alignment]
    num_latents: list[int]
    hookpoint: str = ""
    sae_name: str = ""
    paths: list[str] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    """sha256 of each seed's (decoder, encoder) float32 weights: ties the result to its checkpoints."""
    frequencies: list[np.ndarray | None] = field(default_factory=list)
    """Per seed, per-latent firing frequency on held-out data, when known."""

    # ------------------------------------------------------------------ basic views

    @property
    def num_seeds(self) -> int:
        """Number of seeds compared."""
        return len(self.names)

    def found_with(self, i: int, kind: str | None = None) -> list[np.ndarray]:
        """For seed i, one bool array per other seed: which of i's latents are found there."""
        kind = kind or self.rule.stability
        if kind not in STABILITY_KINDS:
            raise DataError(f"stability: {kind!r} is not one of {', '.join(STABILITY_KINDS)}")
        out = []
        for j in range(self.num_seeds):
            if j == i:
                continue
            al = self.alignments[(i, j)]
            out.append(al.shared.copy() if kind == "shared" else self.rule.reappears(al.dec_max_cos))
        return out

    def stability(self, i: int, kind: str | None = None) -> np.ndarray:
        """Per-latent stability of seed i: the fraction of the other seeds in which the latent is found."""
        found = self.found_with(i, kind)
        if not found:
            return np.zeros(self.num_latents[i])
        return np.mean(np.stack(found).astype(np.float64), axis=0)

    @property
    def stabilities(self) -> list[np.ndarray]:
        """Stability of every seed's latents under the rule."""
        return [self.stability(i) for i in range(self.num_seeds)]

    def groups(self) -> list[StabilityGroups]:
        """The stable / unstable split of every seed under the rule's cut."""
        out = []
        for i in range(self.num_seeds):
            s = self.stability(i)
            out.append(StabilityGroups(s, self.rule.stable(s), self.rule.unstable(s), self.num_seeds - 1))
        return out

    def shared_fractions(self) -> np.ndarray:
        """[S, S] share of row seed's latents shared (Paulo & Belrose) with the column seed; NaN diagonal."""
        out = np.full((self.num_seeds, self.num_seeds), np.nan)
        for (i, j), al in self.alignments.items():
            out[i, j] = al.shared_fraction
        return out

    def shared_fraction_stats(self) -> dict[str, float]:
        """Mean, standard deviation, min and max of the off-diagonal shared fractions."""
        m = self.shared_fractions()
        off = m[~np.eye(self.num_seeds, dtype=bool)]
        if off.size == 0:
            return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan")}
        return {"mean": float(off.mean()), "std": float(off.std()), "min": float(off.min()),
                "max": float(off.max())}

    def mmcs_stats(self) -> dict[str, float]:
        """Mean and standard deviation of the MMCS over ordered pairs."""
        vals = np.array([al.mmcs for al in self.alignments.values()])
        return {"mean": float(vals.mean()), "std": float(vals.std())} if vals.size else {
            "mean": float("nan"), "std": float("nan")}

    def pw_mcc_stats(self) -> dict[str, float]:
        """Mean and standard deviation of the PW-MCC (`pw_mcc`) over ordered pairs (each unordered pair's value
        twice: the matching and so the PW-MCC are the same both ways)."""
        vals = np.array([pw_mcc(al) for al in self.alignments.values()])
        return {"mean": float(vals.mean()), "std": float(vals.std())} if vals.size else {
            "mean": float("nan"), "std": float("nan")}

    def dead(self) -> list[np.ndarray] | None:
        """Per seed, the latents that never fired on the held-out rows (firing frequency 0); None when any seed's
        frequencies are unknown."""
        if len(self.frequencies) != self.num_seeds or any(f is None for f in self.frequencies):
            return None
        masks = [np.asarray(f, dtype=np.float64) == 0 for f in self.frequencies]  # type: ignore[arg-type]
        if [len(m) for m in masks] != list(self.num_latents):
            return None
        return masks

    def stability_summary(self) -> dict[str, Any]:
        """Stable / unstable shares and mean stability under the rule, over all latents of all seeds and over the
        alive ones, with the dead latents counted apart (a dead latent is found in no other seed, so over all
        latents it counts as unstable: `unstable_dead` says how many of the unstable are dead)."""
        groups = self.groups()
        dead = self.dead()
        if not groups:
            return {"stable_fraction": float("nan"), "unstable_fraction": float("nan"),
                    "mean_stability": float("nan"), "latents": 0, "dead": None, "alive": None}
        stab = np.concatenate([g.stability for g in groups])
        stable = np.concatenate([g.stable for g in groups])
        unstable = np.concatenate([g.unstable for g in groups])
        out: dict[str, Any] = {
            "stable_fraction": float(stable.mean()), "unstable_fraction": float(unstable.mean()),
            "mean_stability": float(stab.mean()), "latents": int(stab.size),
            "dead": None, "alive": None, "dead_fraction": None, "unstable_dead": None,
            "stable_fraction_alive": None, "unstable_fraction_alive": None, "mean_stability_alive": None,
            "fractions_note": "stable_fraction, unstable_fraction and mean_stability are over all latents, dead "
                              "ones included (counted unstable); the *_alive ones over the latents that fire on "
                              "the held-out rows; dead = never fired there (null: frequencies not stored)",
        }
        if dead is not None:
            is_dead = np.concatenate(dead)
            alive = ~is_dead
            out.update(dead=int(is_dead.sum()), alive=int(alive.sum()), dead_fraction=float(is_dead.mean()),
                       unstable_dead=int((unstable & is_dead).sum()))
            if alive.any():
                out.update(stable_fraction_alive=float(stable[alive].mean()),
                           unstable_fraction_alive=float(unstable[alive].mean()),
                           mean_stability_alive=float(stab[alive].mean()))
        return out

    def only_in_base(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread of the count of base latents found in none of M other seeds, M = 0 .. S-1.

        Averaged over every choice of base and over orderings of the others; the spread combines the
        within-base (orderings) and between-base variances. "Found" follows the rule's stability estimator.
        """
        curves, spreads = [], []
        for i in range(self.num_seeds):
            found = self.found_with(i)
            if found:
                mean, std = only_in_base_curve(found, orderings=ORDERINGS, seed=i)
                curves.append(mean)
                spreads.append(std)
        if not curves:
            return np.zeros(0), np.zeros(0)
        width = min(len(c) for c in curves)
        stack = np.stack([c[:width] for c in curves])
        within = np.stack([sp[:width] ** 2 for sp in spreads]).mean(axis=0)
        return stack.mean(axis=0), np.sqrt(within + stack.var(axis=0))

    def with_rule(self, rule: SharingRule) -> CrossSeedResult:
        """The same alignments judged by another rule; no new alignment (DataError if `absolute` differs)."""
        if rule == self.rule:
            return self
        alignments = {key: al.under(rule) for key, al in self.alignments.items()}
        return CrossSeedResult(self.label, list(self.names), rule, alignments, list(self.num_latents),
                               self.hookpoint, self.sae_name, list(self.paths), list(self.digests),
                               list(self.frequencies))

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: the rule, spread of shared fractions and MMCS, stability, found-only-in-base."""
        mean, std = self.only_in_base()
        return {
            "label": self.label,
            "hookpoint": self.hookpoint,
            "sae_name": self.sae_name,
            "members": list(self.names),
            "num_latents": list(self.num_latents),
            "rule": self.rule.to_dict(),
            "shared_fraction": self.shared_fraction_stats(),
            "mmcs": self.mmcs_stats(),
            "pw_mcc": self.pw_mcc_stats(),
            "stability": self.stability_summary(),
            "only_in_base": {"mean": mean.tolist(), "std": std.tolist()},
        }

    # ------------------------------------------------------------------ storage

    def save(self, directory: str | Path) -> Path:
        """Write the result in schema `saeseeds.cross_seed/1` (see the module docstring); returns the JSON path."""
        directory = Path(directory)
        pair_index = []
        for i, j in self.pair_keys():
            al, back = self.alignments[(i, j)], self.alignments[(j, i)]
            rel = f"pairs/{i}-{j}.npz"
            atomic_write_npz(
                directory / rel, dec_partner=al.dec_partner, dec_cos=al.dec_cos, enc_partner=al.enc_partner,
                enc_cos=al.enc_cos, dec_max_cos_a=al.dec_max_cos, dec_max_cos_b=back.dec_max_cos,
            )
            pair_index.append({"i": i, "j": j, "file": rel, "dec_total": al.dec_total,
                               "enc_total": al.enc_total, "stats": al.stats})
        for i, group in enumerate(self.groups()):
            tables: dict[str, np.ndarray] = {
                f"stability_{kind}": self.stability(i, kind) for kind in STABILITY_KINDS
            }
            tables["stable"], tables["unstable"] = group.stable, group.unstable
            freq = self.frequencies[i] if i < len(self.frequencies) else None
            if freq is not None:
                tables["firing_frequency"] = np.asarray(freq, dtype=np.float64)
            atomic_write_npz(directory / "latents" / f"{i}.npz", **tables)
        record = {
            **self.summary(),
            "paths": [relative_path(p, directory) for p in self.paths],  # the folder can move with its checkpoints
            "digests": list(self.digests),
            "pairs": [p | {k: v for k, v in self.alignments[(p["i"], p["j"])].summary().items()
                           if k in ("a", "b", "n_shared", "shared_fraction", "mmcs")}
                      | {"pw_mcc": pw_mcc(self.alignments[(p["i"], p["j"])])}
                      for p in pair_index],
        }
        return write_record(directory / RESULT_FILE, FORMAT, record)

    def pair_keys(self) -> list[tuple[int, int]]:
        """Unordered pairs (i < j), the ones actually aligned."""
        return [(i, j) for i in range(self.num_seeds) for j in range(i + 1, self.num_seeds)]

    @classmethod
    def load(cls, directory: str | Path) -> CrossSeedResult:
        """Read a result written by `save`; DataError naming the file when it is missing or malformed."""
        directory = Path(directory)
        path = directory / RESULT_FILE
        record = read_record(path, FORMAT, f"{directory} holds no cross-seed result ({RESULT_FILE} is missing)")
        try:
            rule = SharingRule.from_dict(record["rule"], f"{path}: rule")
            names = [str(n) for n in record["members"]]
            num_latents = [int(n) for n in record["num_latents"]]
            alignments: dict[tuple[int, int], Alignment] = {}
            for entry in record["pairs"]:
                i, j = int(entry["i"]), int(entry["j"])
                arrays = read_npz(directory / entry["file"])
                al = Alignment(
                    dec_partner=arrays["dec_partner"], dec_cos=arrays["dec_cos"],
                    enc_partner=arrays["enc_partner"], enc_cos=arrays["enc_cos"],
                    shared=rule.shared(arrays["dec_partner"], arrays["dec_cos"], arrays["enc_partner"],
                                       arrays["enc_cos"]),
                    dec_max_cos=arrays["dec_max_cos_a"], threshold=rule.threshold, absolute=rule.absolute,
                    num_latents_b=num_latents[j], dec_total=float(entry["dec_total"]),
                    enc_total=float(entry["enc_total"]), name_a=names[i], name_b=names[j],
                    stats=dict(entry.get("stats", {})),
                )
                _check_lengths(al, num_latents[i], path)
                alignments[(i, j)] = al
                alignments[(j, i)] = reverse_alignment(al, arrays["dec_max_cos_b"])
            frequencies: list[np.ndarray | None] = []
            for i in range(len(names)):
                frequencies.append(read_npz(directory / "latents" / f"{i}.npz").get("firing_frequency"))
        except DataError:
            raise
        except (KeyError, ValueError, OSError, IndexError) as err:
            raise DataError(f"{path}: malformed cross-seed result ({type(err).__name__}: {err})") from err
        missing = [(i, j) for i, j in itertools.permutations(range(len(names)), 2) if (i, j) not in alignments]
        if missing:
            raise DataError(f"{path}: pairs {missing[:3]} are missing")
        return cls(str(record.get("label", "")), names, rule, alignments, num_latents,
                   str(record.get("hookpoint", "")), str(record.get("sae_name", "")),
                   [str(resolve_path(p, directory)) for p in record.get("paths", [])],
                   [str(d) for d in record.get("digests", [])],
                   frequencies)


def pw_mcc(al: Alignment) -> float:
    """PW-MCC (Song et al. 2025, "Position: Mechanistic Interpretability Should Prioritize Feature Consistency in
    SAEs"): the mean decoder cosine over the pairs of the one-to-one (Hungarian) decoder matching of a to b.

    Only matched latents enter (partner ≥ 0; with unequal sizes the min(n_a, n_b) pairs of the matching), each
    with its exact cosine (|cos| under an absolute rule); NaN when nothing is matched (docs/definitions.md)."""
    cos = np.asarray(al.dec_cos, dtype=np.float64)[np.asarray(al.dec_partner) >= 0]
    return float(cos.mean()) if cos.size else float("nan")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file; DataError naming the file when it is missing, cut or corrupt (a damaged zip
    raises zipfile, zlib and EOF errors besides numpy's own)."""
    if not path.is_file():
        raise DataError(f"{path} is missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError, RuntimeError) as err:
        raise DataError(f"{path} is not a readable .npz file ({type(err).__name__}: {err})".splitlines()[0]) from err


def _check_lengths(al: Alignment, n: int, path: Path) -> None:
    """Per-latent arrays must have one entry per latent of the first seed."""
    for key in ("dec_partner", "dec_cos", "enc_partner", "enc_cos", "dec_max_cos"):
        if len(getattr(al, key)) != n:
            raise DataError(f"{path}: {key} of pair {al.name_a}/{al.name_b} has {len(getattr(al, key))} "
                            f"entries for {n} latents")


def weights_digest(dec: torch.Tensor, enc: torch.Tensor) -> str:
    """sha256 of the float32 decoder and encoder rows (what an alignment depends on)."""
    return sha256_hex(tensor_bytes(torch.as_tensor(dec).detach().float()),
                      tensor_bytes(torch.as_tensor(enc).detach().float()))


def same_weights(result: Any, saes: Sequence[Any]) -> bool:
    """Whether `saes` hold the very weights `result` aligned: their `weights_digest`s equal the ones it recorded
    (a result that recorded none cannot tell, and passes)."""
    return not result.digests or [weights_digest(*sae_weights(s)) for s in saes] == list(result.digests)


def align_seeds(
    weights: Sequence[tuple[torch.Tensor, torch.Tensor]],
    names: Sequence[str],
    *,
    rule: SharingRule | None = None,
    label: str = "",
    hookpoint: str = "",
    sae_name: str = "",
    paths: Sequence[str | Path] = (),
    device: str | torch.device | None = None,
    screen: ScreenMode | None = None,
    on_pair: Callable[[str, str], None] | None = None,
    map_pairs: PairMap | None = None,
) -> CrossSeedResult:
    """Align every unordered pair of seeds once, given (decoder rows, encoder rows) per seed.

    `on_pair(name_a, name_b)` is called after each pair (progress reporting). `map_pairs(pairs, fn)` runs
    `fn` over the pairs and returns the results in order: sequential by default; a distributed run passes
    `saeseeds.distributed.map_gathered`, which spreads the pairs over ranks and gathers them on every rank.
    """
    rule = rule or SharingRule()
    if len(weights) != len(names):
        raise DataError(f"cross_seed: {len(weights)} weight pairs for {len(names)} names")
    if len(set(names)) != len(names):
        raise DataError(f"cross_seed: seed names must be distinct, got {list(names)}")
    if len(weights) < 2:
        raise DataError(f"{label or 'cross_seed'}: needs at least two seeds, got {len(weights)}")
    d_ins = {int(dec.shape[1]) for dec, _ in weights}
    if len(d_ins) != 1:
        raise DataError(f"{label or 'cross_seed'}: seeds differ in d_in ({sorted(d_ins)})")

    digests = [weights_digest(dec, enc) for dec, enc in weights]
    plan = plan_screen(screen, device)  # the device and screen of every pair, resolved once

    def align_pair(pair: tuple[int, int]) -> tuple[Alignment, np.ndarray]:
        i, j = pair
        (dec_i, enc_i), (dec_j, enc_j) = weights[i], weights[j]
        al, back_max = align_weights_both_ways(dec_i, enc_i, dec_j, enc_j, plan, rule=rule,
                                               name_a=names[i], name_b=names[j])
        if on_pair is not None:
            on_pair(names[i], names[j])
        return al, back_max

    pairs = list(itertools.combinations(range(len(weights)), 2))
    done = map_pairs(pairs, align_pair) if map_pairs is not None else [align_pair(p) for p in pairs]
    alignments: dict[tuple[int, int], Alignment] = {}
    for (i, j), (al, back_max) in zip(pairs, done):
        alignments[(i, j)], alignments[(j, i)] = al, reverse_alignment(al, back_max)
        log.debug("%s: %s vs %s: %s", label, al.name_a, al.name_b, al.how())
    return CrossSeedResult(
        label, list(names), rule, alignments, [int(dec.shape[0]) for dec, _ in weights], hookpoint, sae_name,
        [str(p) for p in paths], digests, [None] * len(weights),
    )


def only_in_base_curve(
    found_with: Sequence[np.ndarray], *, orderings: int = ORDERINGS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Count of base latents found in none of the first M others, M = 0..len(others).

    Averaged over `orderings` random orderings of the others (all of them when there are few);
    returns (mean [M+1], std [M+1]).
    """
    others = [np.asarray(s, dtype=bool) for s in found_with]
    n_others = len(others)
    if n_others == 0:
        return np.zeros(1), np.zeros(1)
    n = len(others[0])
    all_perms = list(itertools.permutations(range(n_others))) if n_others <= 5 else []
    if all_perms and len(all_perms) <= orderings:
        perms: list[tuple[int, ...]] = all_perms
    else:
        rng = np.random.default_rng(seed)
        perms = [tuple(int(k) for k in rng.permutation(n_others)) for _ in range(orderings)]
    curves = np.empty((len(perms), n_others + 1))
    for k, perm in enumerate(perms):
        seen = np.zeros(n, dtype=bool)
        curves[k, 0] = n
        for m, other in enumerate(perm, start=1):
            seen |= others[other]
            curves[k, m] = n - seen.sum()
    return curves.mean(axis=0), curves.std(axis=0)
