"""Scores of an explanation on contexts it was not written from (docs/definitions.md, "Interpretability").

Detection (delphi's definition): the scorer gives P(fires) for each scoring-split context, activating and
frequency-matched non-activating alike, shown without activations; reported as AUROC (ties count ½) and balanced
accuracy at the explanation's threshold (`detail["threshold"]`, chosen on the explanation split; 0.5 when the
backend sets none). Fuzzing: each activating scoring context is shown twice, once with the tokens where the latent
fires marked and once with as many tokens where it is silent marked; AUROC and balanced accuracy at 0.5 of the
scorer's P(the marking is right). Explanation similarity: the cosine of two explanations' term vectors (the
weighted n-grams of the tokens explainer; for text explanations, word counts).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from saeseeds.interpret.contexts import zeroed
from saeseeds.interpret.interface import Context, Explanation, Scorer


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve: P(a positive scores above a negative), ties ½; NaN without both classes."""
    from scipy.stats import rankdata

    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def balanced_accuracy(scores: Sequence[float], labels: Sequence[int], threshold: float) -> float:
    """Mean of the true-positive and true-negative rates with "fires" ⇔ score ≥ threshold; NaN without both."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    if not y.any() or y.all():
        return math.nan
    hit = s >= threshold
    return float((hit[y].mean() + (~hit[~y]).mean()) / 2)


def detection(scorer: Scorer, explanation: Explanation, positive: Sequence[Context], negative: Sequence[Context]
              ) -> dict[str, Any]:
    """Detection scores on the scoring split (activations hidden from the scorer)."""
    probs = scorer.detect(explanation, zeroed([*positive, *negative]))
    labels = [1] * len(positive) + [0] * len(negative)
    threshold = float(explanation.detail.get("threshold", 0.5))
    return {"detection_auroc": auroc(probs, labels),
            "detection_balanced_accuracy": balanced_accuracy(probs, labels, threshold),
            "detection_threshold": threshold, "n_activating": len(positive), "n_non_activating": len(negative)}


def fuzzing(scorer: Scorer, explanation: Explanation, positive: Sequence[Context], rng: np.random.Generator
            ) -> dict[str, Any]:
    """Fuzzing scores: right vs wrong marking of the activating scoring contexts (NaN when the scorer has none)."""
    shown, marks, labels = [], [], []
    for ctx in positive:
        firing = [i for i, a in enumerate(ctx.activations) if a != 0]
        silent = [i for i, a in enumerate(ctx.activations) if a == 0]
        if not firing or not silent:
            continue
        wrong = sorted(rng.choice(silent, min(len(firing), len(silent)), replace=False).tolist())
        shown += [ctx, ctx]
        marks += [firing, wrong]
        labels += [1, 0]
    try:
        probs = scorer.fuzz(explanation, zeroed(shown), marks) if shown else []
    except NotImplementedError:
        return {"fuzz_auroc": math.nan, "fuzz_balanced_accuracy": math.nan}
    return {"fuzz_auroc": auroc(probs, labels), "fuzz_balanced_accuracy": balanced_accuracy(probs, labels, 0.5)}


_WORD = re.compile(r"\w+")


def term_vector(explanation: Explanation | Mapping[str, Any]) -> dict[str, float]:
    """An explanation (or an output row, whose text is under "explanation") as a vector: its weighted n-grams
    (`detail["terms"]`), else the counts of its lower-cased words."""
    detail = explanation.detail if isinstance(explanation, Explanation) else explanation.get("detail", {})
    text = (explanation.text if isinstance(explanation, Explanation)
            else str(explanation.get("text", explanation.get("explanation", ""))))
    terms = (detail or {}).get("terms")
    if terms:
        return {str(g): float(w) for g, w in terms}
    return {w: float(c) for w, c in Counter(_WORD.findall(text.lower())).items()}


def similarity(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Cosine of two term vectors; NaN when either is empty."""
    na = math.sqrt(sum(v * v for v in a.values()))
    nb = math.sqrt(sum(v * v for v in b.values()))
    if na == 0 or nb == 0:
        return math.nan
    return float(sum(v * b.get(k, 0.0) for k, v in a.items()) / (na * nb))
