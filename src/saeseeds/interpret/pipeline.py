"""One configuration's interpretation: encode the analysis rows with each seed's SAE, sample latents per group,
build their contexts, explain and score them through the backend, journal each latent, judge the claims.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from saeseeds.align.sharing import SharingRule
from saeseeds.interpret.claims import MARGIN, PairSimilarities, SeedScores, judge
from saeseeds.interpret.contexts import Corpus, LatentFiring, encode_firing, window_maxima
from saeseeds.interpret.delphi import DelphiLatent
from saeseeds.interpret.interface import (
    Context,
    Explainer,
    Explanation,
    LatentRecord,
    ResponseError,
    Scorer,
)
from saeseeds.interpret.journal import Journal
from saeseeds.interpret.sampling import (
    GROUP_PAIRS,
    SamplingOptions,
    Split,
    eligible,
    group_masks,
    latent_rng,
    latent_split,
    match_negatives,
    matched_sample,
)
from saeseeds.interpret.scoring import detection, fuzzing, similarity, term_vector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InterpretOptions:
    """Everything that decides an interpretation besides its inputs and backend (recorded in interpret.json)."""

    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    rule: SharingRule = field(default_factory=SharingRule)
    margin: float = MARGIN
    n_draws: int = 999
    alpha: float = 0.05
    batch: int = 16
    """Latents per explain call (a backend may batch inside); each is journaled once scored."""
    fuzz: bool = True
    progress: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"sampling": self.sampling.to_dict(), "rule": self.rule.to_dict(), "margin": self.margin,
                "n_draws": self.n_draws, "alpha": self.alpha, "fuzz": self.fuzz}


@dataclass
class SeedData:
    """One seed's firings and what follows from them."""

    name: str
    firing: LatentFiring
    frequency: np.ndarray
    n_activating: np.ndarray
    stability: dict[str, np.ndarray]


@dataclass
class SetRun:
    """One configuration being interpreted: what each step needs besides the seeds' data and the backend."""

    label: str
    index: int
    """The configuration's position in the output (part of every latent's random stream)."""
    result: Any
    corpus: Corpus
    opts: InterpretOptions
    done: dict[str, dict[str, Any]]
    """key → finished row (those journaled by an earlier attempt included); filled as latents are finished."""
    journal: Journal | None = None
    say: Callable[[str], None] = lambda _m: None


@dataclass(frozen=True)
class DelphiSource:
    """Explanations and scores delphi wrote for one configuration (`delphi.read_delphi`, one folder per seed), used
    in place of an explainer and scorer: latents it did not score are left out of the group sampling."""

    name: str
    seeds: Sequence[Mapping[int, DelphiLatent]]
    """Per seed of the configuration (in its order): latent → what delphi left for it."""

    def scored(self, seed: int, num_latents: int) -> np.ndarray:
        """Latents of `seed` with a finite delphi detection AUROC (the only ones that can be sampled)."""
        mask = np.zeros(num_latents, dtype=bool)
        for latent, found in self.seeds[seed].items():
            score = found.scores.get("detection")
            if 0 <= latent < num_latents and score is not None and math.isfinite(score.auroc):
                mask[latent] = True
        return mask


Backend = tuple[Explainer, Scorer] | DelphiSource


def activating_counts(firing: LatentFiring, corpus: Corpus) -> np.ndarray:
    """Number of windows in which each latent fires."""
    lat = np.repeat(np.arange(firing.num_latents), np.diff(firing.offsets))
    keys = np.unique(lat * corpus.n_windows + corpus.window_of(firing.positions))
    return np.bincount(keys // corpus.n_windows, minlength=firing.num_latents)


def seed_data(result: Any, saes: Sequence[Any], data: Any, corpus: Corpus) -> list[SeedData]:
    """Encode the analysis rows once per seed."""
    out = []
    for i, sae in enumerate(saes):
        firing = encode_firing(sae, data, result.hookpoint)
        out.append(SeedData(result.names[i], firing, firing.frequency(), activating_counts(firing, corpus),
                            {k: result.stability(i, k) for k in ("shared", "reappears")}))
    return out


def sample_groups(run: SetRun, seeds: Sequence[SeedData], delphi: DelphiSource | None = None
                  ) -> tuple[list[SeedScores], list[dict[str, Any]]]:
    """Per seed, the frequency-matched samples of each group pair and how many latents each group offered.

    With `delphi`, delphi's scores replace our contexts: a latent is eligible when it fires on the analysis rows
    (its frequency is what the groups are matched on) and delphi scored it; unscored latents are left out.
    """
    scores, counts = [], []
    opts = run.opts
    for i, sd in enumerate(seeds):
        masks = group_masks(run.result, i, opts.rule)
        if delphi is None:
            ok = eligible(sd.n_activating, run.corpus.n_windows, opts.sampling) & (sd.frequency > 0)
        else:
            ok = delphi.scored(i, sd.frequency.size) & (sd.frequency > 0)
        rng = latent_rng(opts.sampling.seed, run.index, i)
        samples, strata, count = {}, {}, {"seed": sd.name}
        for pair, (first, second, _) in GROUP_PAIRS.items():
            a, b, st = matched_sample(sd.frequency, masks[first] & ok, masks[second] & ok, opts.sampling.latents,
                                      opts.sampling, rng)
            samples[first], samples[second], strata[pair] = a, b, st
            for g in (first, second):
                count[g] = {"latents": int(masks[g].sum()), "eligible": int((masks[g] & ok).sum()),
                            "sampled": int(samples[g].size)}
                if delphi is not None:
                    count[g]["delphi_scored"] = int((masks[g] & delphi.scored(i, sd.frequency.size)).sum())
        scores.append(SeedScores(i, samples, strata))
        counts.append(count)
    return scores, counts


def _contexts(corpus: Corpus, firing: LatentFiring, latent: int, windows: np.ndarray) -> tuple[Context, ...]:
    pos, val = firing.of(latent)
    return tuple(corpus.context(int(w), pos, val) for w in windows)


def partner_split(activating: np.ndarray, corpus: Corpus, opts: SamplingOptions, rng: np.random.Generator) -> Split:
    """A partner is only explained: its strongest windows (up to the explanation split's size) and matched negatives."""
    explain = activating[: opts.n_top + opts.n_explain_random]
    used = np.zeros(corpus.n_windows, dtype=bool)
    used[activating] = True
    neg = match_negatives(explain, np.flatnonzero(~used), corpus.commonness, used, rng)
    empty = np.zeros(0, dtype=np.int64)
    return Split(explain, empty, neg, empty)


@dataclass
class Job:
    """One latent to explain (and, when sampled, score)."""

    key: str
    seed: int
    latent: int
    sampled: bool
    groups: list[str]
    partners: list[dict[str, Any]]


def plan(label: str, result: Any, scores: Sequence[SeedScores], seeds: Sequence[SeedData]) -> list[Job]:
    """The sampled latents of every seed, then their decoder partners in the other seeds (explained only)."""
    jobs: dict[tuple[int, int], Job] = {}
    for s in scores:
        for group, ids in s.samples.items():
            for x in ids.tolist():
                job = jobs.setdefault((s.seed, x), Job(f"{label}/{seeds[s.seed].name}/{x}", s.seed, x, True, [], []))
                job.groups.append(group)
    for (i, x), job in sorted(jobs.items()):
        for j in range(result.num_seeds):
            if j == i:
                continue
            al = result.alignments[(i, j)]
            y = int(al.dec_partner[x])
            job.partners.append({"seed": seeds[j].name, "latent": y, "cosine": float(al.dec_cos[x]),
                                 "shared": bool(al.shared[x])})
    names = [sd.name for sd in seeds]
    for _key, job in sorted(jobs.items()):
        for p in job.partners:
            j = names.index(p["seed"])
            if p["latent"] >= 0 and (j, p["latent"]) not in jobs:
                jobs[(j, p["latent"])] = Job(f"{label}/{p['seed']}/{p['latent']}", j, p["latent"], False, [], [])
    return [jobs[k] for k in sorted(jobs, key=lambda k: (not jobs[k].sampled, k))]


def _row(job: Job, label: str, sd: SeedData, explanation: Explanation | None, scored: dict[str, Any],
         note: str = "") -> dict[str, Any]:
    return {
        "key": job.key, "set": label, "seed": sd.name, "latent": job.latent, "role": "sampled" if job.sampled else
        "partner", "groups": sorted(job.groups), "firing_frequency": float(sd.frequency[job.latent]),
        "stability_shared": float(sd.stability["shared"][job.latent]),
        "stability_reappears": float(sd.stability["reappears"][job.latent]),
        "explanation": explanation.text if explanation is not None else "",
        "detail": dict(explanation.detail) if explanation is not None else {}, "partners": job.partners,
        "note": note, **scored,
    }


def _finisher(run: SetRun, seeds: Sequence[SeedData]) -> Callable[..., None]:
    """`finish(job, explanation, scored, note)`: the job's row into `run.done` and the journal."""

    def finish(job: Job, explanation: Explanation | None, scored: dict[str, Any], note: str = "") -> None:
        row = _row(job, run.label, seeds[job.seed], explanation, scored, note)
        if run.journal is not None:
            run.journal.append(row)
        run.done[job.key] = row

    return finish


def _pending(run: SetRun, jobs: Sequence[Job]) -> list[Job]:
    """The jobs not finished yet (an earlier attempt's journal holds the others)."""
    pending = [j for j in jobs if j.key not in run.done]
    if len(pending) < len(jobs):
        run.say(f"{run.label}: {len(jobs) - len(pending)} latents already done (journal), {len(pending)} to go")
    return pending


def run_jobs(run: SetRun, jobs: Sequence[Job], seeds: Sequence[SeedData], explainer: Explainer, scorer: Scorer
             ) -> None:
    """Explain (and score) every job not yet in `run.done`, journaling each latent as soon as it is finished."""
    corpus, opts = run.corpus, run.opts
    write = _finisher(run, seeds)
    prepared: list[tuple[Job, LatentRecord, Split, np.random.Generator]] = []

    def finish(job: Job, split: Split, rng: np.random.Generator, explanation: Explanation) -> None:
        scored: dict[str, Any] = {}
        if job.sampled:
            firing = seeds[job.seed].firing
            pos = _contexts(corpus, firing, job.latent, split.score)
            neg = _contexts(corpus, firing, job.latent, split.score_negative)
            scored = detection(scorer, explanation, pos, neg)
            if opts.fuzz:
                scored.update(fuzzing(scorer, explanation, pos, rng))
        write(job, explanation, scored)

    def flush() -> None:
        if not prepared:
            return
        try:
            explanations = explainer.explain([r for _, r, _, _ in prepared])
        except ResponseError as err:  # what the backend finished before the bad answer is kept (matched by key)
            by_key = {e.key: e for e in err.completed}
            for job, rec, split, rng in prepared:
                if rec.key in by_key:
                    finish(job, split, rng, by_key[rec.key])
            raise
        for (job, _rec, split, rng), expl in zip(prepared, explanations):
            finish(job, split, rng, expl)
        prepared.clear()

    for job in _pending(run, jobs):
        sd = seeds[job.seed]
        pos, val = sd.firing.of(job.latent)
        activating, _ = window_maxima(corpus, pos, val)
        rng = latent_rng(opts.sampling.seed, run.index, job.seed, job.latent)
        if activating.size == 0:
            write(job, None, {}, "never fires on the analysis rows")
            continue
        split = (latent_split(activating, corpus.n_windows, corpus.commonness, opts.sampling, rng) if job.sampled
                 else partner_split(activating, corpus, opts.sampling, rng))
        record = LatentRecord(job.key, job.latent, _contexts(corpus, sd.firing, job.latent, split.explain), {
            "non_activating": _contexts(corpus, sd.firing, job.latent, split.explain_negative),
            "firing_frequency": float(sd.frequency[job.latent])})
        prepared.append((job, record, split, rng))
        if len(prepared) >= opts.batch:
            flush()
    flush()


def delphi_scores(found: DelphiLatent, fuzz: bool) -> dict[str, Any]:
    """One sampled latent's score columns from delphi's records (detection, and fuzzing when asked and present)."""
    out: dict[str, Any] = {}
    det = found.scores.get("detection")
    if det is not None:
        n_pos = sum(det.activating)
        out.update(detection_auroc=det.auroc, detection_balanced_accuracy=det.balanced_accuracy,
                   detection_threshold=0.5, n_activating=n_pos, n_non_activating=det.n - n_pos,
                   detection_auroc_source=det.auroc_source, detection_failed=det.n_failed)
    if fuzz:
        fz = found.scores.get("fuzz")
        out.update(fuzz_auroc=fz.auroc if fz else math.nan, fuzz_balanced_accuracy=fz.balanced_accuracy if fz
                   else math.nan)
    return out


def run_delphi(run: SetRun, jobs: Sequence[Job], seeds: Sequence[SeedData], source: DelphiSource) -> None:
    """Every job not yet in `run.done` finished from delphi's files: its explanation and (sampled) its scores."""
    write = _finisher(run, seeds)
    for job in _pending(run, jobs):
        found = source.seeds[job.seed].get(job.latent)
        if found is None:
            write(job, None, {}, "delphi did not explain this latent")
            continue
        scored = delphi_scores(found, run.opts.fuzz) if job.sampled else {}
        write(job, replace(found.explanation, key=job.key), scored)


def similarities(result: Any, scores: Sequence[SeedScores], done: dict[str, dict[str, Any]], label: str,
                 seeds: Sequence[SeedData]) -> list[PairSimilarities]:
    """Per seed pair, every sampled latent of either seed with its decoder partner: cosine and explanation similarity."""
    out = []
    for i in range(result.num_seeds):
        for j in range(i + 1, result.num_seeds):
            seen: dict[tuple[int, int], tuple[float, float]] = {}
            for a, b in ((i, j), (j, i)):
                al = result.alignments[(a, b)]
                sampled = np.unique(np.concatenate(list(scores[a].samples.values())))
                for x in sampled.tolist():
                    y = int(al.dec_partner[x])
                    ra, rb = done.get(f"{label}/{seeds[a].name}/{x}"), done.get(f"{label}/{seeds[b].name}/{y}")
                    if y < 0 or ra is None or rb is None:
                        continue
                    pair = (x, y) if a == i else (y, x)
                    seen[pair] = (float(al.dec_cos[x]), similarity(term_vector(ra), term_vector(rb)))
            vals = np.array(list(seen.values()), dtype=np.float64).reshape(-1, 2)
            out.append(PairSimilarities((i, j), vals[:, 0], vals[:, 1]))
    return out


def group_summary(scores: Sequence[SeedScores], seeds: Sequence[SeedData]) -> dict[str, Any]:
    """Per group: per seed and over seeds, the mean detection AUROC and balanced accuracy of its sampled latents."""
    out: dict[str, Any] = {}
    for group in ("shared", "unshared", "stable", "unstable"):
        per_seed = []
        for s in scores:
            rows = [s.auroc.get(int(x), math.nan) for x in s.samples[group]]
            finite = [v for v in rows if math.isfinite(v)]
            per_seed.append({"seed": seeds[s.seed].name, "n": len(finite),
                             "detection_auroc": float(np.mean(finite)) if finite else math.nan})
        means = np.array([p["detection_auroc"] for p in per_seed], dtype=np.float64)
        means = means[np.isfinite(means)]
        out[group] = {"detection_auroc_mean": float(means.mean()) if means.size else math.nan,
                      "detection_auroc_sd": float(means.std(ddof=1)) if means.size > 1 else math.nan,
                      "per_seed": per_seed}
    return out


def interpret_set(run: SetRun, saes: Sequence[Any], data: Any, backend: Backend) -> dict[str, Any]:
    """Sample, explain, score and judge one configuration; the per-latent rows go to `run.done` (and the journal).

    `backend`: an (Explainer, Scorer), or a DelphiSource whose explanations and scores are used as they are.
    """
    result, label = run.result, run.label
    delphi = backend if isinstance(backend, DelphiSource) else None
    seeds = seed_data(result, saes, data, run.corpus)
    scores, counts = sample_groups(run, seeds, delphi)
    jobs = plan(label, result, scores, seeds)
    if delphi is not None:
        for i, sd in enumerate(seeds):
            n = int(delphi.scored(i, sd.frequency.size).sum())
            run.say(f"{label}/{sd.name}: delphi scored {n} of {sd.frequency.size} latents; the {sd.frequency.size - n} "
                    "it did not are left out, groups are sampled and frequency-matched among the scored ones")
        run_delphi(run, jobs, seeds, delphi)
        lexical = False
    else:
        run.say(f"{label}: {sum(j.sampled for j in jobs)} sampled latents to explain and score, "
                f"{sum(not j.sampled for j in jobs)} partners to explain")
        explainer, scorer = backend
        run_jobs(run, jobs, seeds, explainer, scorer)
        lexical = bool(getattr(explainer, "name", "") == "tokens")
    for s in scores:
        for ids in s.samples.values():
            for x in ids.tolist():
                row = run.done[f"{label}/{seeds[s.seed].name}/{x}"]
                value = row.get("detection_auroc")
                s.auroc[x] = float(value) if value is not None else math.nan
    pairs = similarities(result, scores, run.done, label, seeds)
    opts = run.opts
    claims = judge(scores, pairs, lexical=lexical, margin=opts.margin, n_draws=opts.n_draws, alpha=opts.alpha,
                   seed=opts.sampling.seed)
    return {"label": label, "hookpoint": result.hookpoint, "sae_name": result.sae_name, "seeds": list(result.names),
            "groups": counts, "summary": group_summary(scores, seeds), "claims": claims,
            "samples": {seeds[s.seed].name: {g: ids.tolist() for g, ids in s.samples.items()} for s in scores}}
