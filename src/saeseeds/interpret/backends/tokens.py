"""The `tokens` explainer and scorer: a lexical baseline, offline, no language model (docs/definitions.md,
"Interpretability").

Explanation: the latent's top n-grams (n ≤ 3) of normalised token text (stripped, lower-cased) that end on a
token where it fires, weighted by their share of the latent's activation mass in the explanation split, among the
n-grams whose presence lift over the explanation split's frequency-matched non-activating contexts is positive.
Detection: the score s(c) = Σ weights of the explanation's n-grams present in context c, mapped to P(fires) by a
two-parameter logistic fitted (ridge, Newton steps) on the explanation split; the detection threshold is the one
with the best balanced accuracy there. Fuzzing: for marked tokens, the mean over them of the largest weight of an
explanation n-gram ending on that token, relative to the top weight. It only ever sees token text: it is a lexical
baseline, and says so wherever it is printed.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from saeseeds.interpret.interface import Context, Explanation, LatentRecord

NAME = "tokens"
LABEL = "lexical baseline"
MAX_N = 3
N_TERMS = 8
RIDGE = 1e-2
"""L2 penalty on the logistic's slope: keeps it finite when the explanation split is perfectly separated."""


def normalise(tokens: Sequence[str]) -> list[str]:
    """Token text as the explainer compares it: stripped of surrounding white space, lower-cased."""
    return [t.strip().lower() for t in tokens]


def grams_ending(norm: Sequence[str], t: int, max_n: int = MAX_N) -> list[str]:
    """The n-grams (n ≤ max_n) of non-empty tokens ending at position t."""
    out = []
    for n in range(1, max_n + 1):
        lo = t - n + 1
        if lo < 0 or any(not s for s in norm[lo: t + 1]):
            break
        out.append(" ".join(norm[lo: t + 1]))
    return out


def grams_in(tokens: Sequence[str], max_n: int = MAX_N) -> set[str]:
    """Every n-gram (n ≤ max_n) of non-empty tokens in a context."""
    norm = normalise(tokens)
    return {g for t in range(len(norm)) for g in grams_ending(norm, t, max_n)}


def top_terms(activating: Sequence[Context], non_activating: Sequence[Context], *, n_terms: int = N_TERMS,
              max_n: int = MAX_N) -> list[tuple[str, float]]:
    """The explanation's weighted n-grams: largest activation-mass share among those with positive lift."""
    mass: dict[str, float] = defaultdict(float)
    total = 0.0
    for ctx in activating:
        norm = normalise(ctx.tokens)
        for t, a in enumerate(ctx.activations):
            if a > 0:
                total += a
                for g in grams_ending(norm, t, max_n):
                    mass[g] += a
    if total <= 0:
        return []
    in_pos = Counter(g for ctx in activating for g in grams_in(ctx.tokens, max_n))
    in_neg = Counter(g for ctx in non_activating for g in grams_in(ctx.tokens, max_n))
    n_a, n_n = len(activating), len(non_activating)

    def lift(g: str) -> float:
        return math.log((in_pos[g] + 0.5) / (n_a + 1)) - math.log((in_neg[g] + 0.5) / (n_n + 1))

    ranked = sorted(((m / total, g) for g, m in mass.items() if lift(g) > 0), key=lambda x: (-x[0], x[1]))
    return [(g, float(w)) for w, g in ranked[:n_terms]]


def raw_score(terms: Sequence[tuple[str, float]], ctx: Context) -> float:
    """s(c): the summed weight of the explanation's n-grams present in the context."""
    present = grams_in(ctx.tokens)
    return float(sum(w for g, w in terms if g in present))


def fit_logistic(scores: np.ndarray, labels: np.ndarray, *, ridge: float = RIDGE, steps: int = 25) -> tuple[float, float]:
    """(a, b) of P = σ(a + b·s) by Newton's method on the log-likelihood with an L2 penalty on b."""
    a, b = 0.0, 0.0
    x = np.stack([np.ones_like(scores), scores], axis=1)
    penalty = np.diag([0.0, ridge])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(a + b * scores)))
        grad = x.T @ (labels - p) - penalty @ np.array([a, b])
        hess = x.T @ (x * (p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        a, b = a + float(step[0]), b + float(step[1])
        if float(np.abs(step).max()) < 1e-9:
            break
    return a, b


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold (P ≥ t counts as "fires") with the best balanced accuracy; the lowest of ties."""
    from saeseeds.interpret.scoring import balanced_accuracy

    candidates = np.unique(scores)
    best_t, best = 0.5, -1.0
    for t in candidates.tolist():
        ba = balanced_accuracy(scores, labels, t)
        if ba > best + 1e-12:
            best_t, best = t, ba
    return float(best_t)


def render(terms: Sequence[tuple[str, float]]) -> str:
    """The explanation as text: `lexical: "the" 31%, "of the" 12%`."""
    if not terms:
        return "lexical: (no token predicts it)"
    return "lexical: " + ", ".join(f'"{g}" {w:.0%}' for g, w in terms)


class TokensExplainer:
    """The offline lexical explainer; reads `extra["non_activating"]` (the explanation split's negatives)."""

    name = NAME
    label = LABEL

    def __init__(self, n_terms: int = N_TERMS) -> None:
        self.n_terms = n_terms

    def explain(self, records: Sequence[LatentRecord]) -> list[Explanation]:
        return [self.explain_one(r) for r in records]

    def explain_one(self, record: LatentRecord) -> Explanation:
        negatives: Sequence[Context] = record.extra.get("non_activating", ())
        terms = top_terms(record.activating, negatives, n_terms=self.n_terms)
        detail: dict[str, Any] = {"terms": [[g, w] for g, w in terms], "lexical": True}
        if record.activating and negatives:
            s = np.array([raw_score(terms, c) for c in (*record.activating, *negatives)])
            y = np.array([1.0] * len(record.activating) + [0.0] * len(negatives))
            a, b = fit_logistic(s, y)
            p = 1.0 / (1.0 + np.exp(-(a + b * s)))
            detail.update(logistic=[a, b], threshold=best_threshold(p, y))
        return Explanation(record.key, render(terms), detail)


def _terms(explanation: Explanation) -> list[tuple[str, float]]:
    return [(str(g), float(w)) for g, w in explanation.detail.get("terms", [])]


class TokensScorer:
    """Detection and fuzzing from an explanation's weighted n-grams (never from activations)."""

    name = NAME
    label = LABEL

    def detect(self, explanation: Explanation, contexts: Sequence[Context]) -> list[float]:
        terms = _terms(explanation)
        a, b = explanation.detail.get("logistic", (0.0, 1.0))
        return [float(1.0 / (1.0 + math.exp(-(a + b * raw_score(terms, c))))) for c in contexts]

    def fuzz(self, explanation: Explanation, contexts: Sequence[Context], marked: Sequence[Sequence[int]]) -> list[float]:
        terms = dict(_terms(explanation))
        top = max(terms.values(), default=0.0)
        out = []
        for ctx, marks in zip(contexts, marked):
            norm = normalise(ctx.tokens)
            hits = [max((terms.get(g, 0.0) for g in grams_ending(norm, t)), default=0.0) for t in marks]
            out.append(float(np.mean(hits) / top) if hits and top > 0 else 0.0)
        return out


def build(options: Mapping[str, Any] | None = None) -> tuple[TokensExplainer, TokensScorer]:
    """The `tokens` backend's explainer and scorer."""
    return TokensExplainer(), TokensScorer()
