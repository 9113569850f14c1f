"""The `tokens` lexical baseline and the scores: a planted lexical latent is explained by its trigger and detected;
a latent that fires at random positions is not; AUROC, balanced accuracy and similarity follow their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from saeseeds.interpret.backends.tokens import (
    TokensExplainer,
    TokensScorer,
    grams_ending,
    top_terms,
)
from saeseeds.interpret.interface import Context, Explanation, LatentRecord
from saeseeds.interpret.scoring import (
    auroc,
    balanced_accuracy,
    detection,
    fuzzing,
    similarity,
    term_vector,
)

WORDS = [f"w{i}" for i in range(40)]


def _contexts(rng: np.random.Generator, n: int, *, trigger: str | None, random_fire: bool = False,
              length: int = 12) -> list[Context]:
    """Windows of random words; with `trigger`, it is placed once and the latent fires on it; with `random_fire`,
    the latent fires on a random token whatever it is."""
    out = []
    for _ in range(n):
        toks = [str(w) for w in rng.choice(WORDS, length)]
        acts = [0.0] * length
        if trigger is not None:
            t = int(rng.integers(length))
            toks[t] = trigger
            acts[t] = float(rng.uniform(1, 3))
        if random_fire:
            acts[int(rng.integers(length))] = float(rng.uniform(1, 3))
        out.append(Context(tuple(toks), tuple(acts)))
    return out


def _scores(trigger: bool, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    kind = {"trigger": "zebra"} if trigger else {"trigger": None, "random_fire": True}
    explain_pos, score_pos = _contexts(rng, 20, **kind), _contexts(rng, 20, **kind)
    explain_neg, score_neg = _contexts(rng, 20, trigger=None), _contexts(rng, 20, trigger=None)
    record = LatentRecord("s/seed0/1", 1, tuple(explain_pos), {"non_activating": tuple(explain_neg)})
    explanation = TokensExplainer().explain([record])[0]
    return {"explanation": explanation, **detection(TokensScorer(), explanation, score_pos, score_neg),
            **fuzzing(TokensScorer(), explanation, score_pos, rng)}


def test_a_planted_lexical_latent_is_explained_by_its_trigger_and_detected() -> None:
    got = _scores(trigger=True)
    assert got["explanation"].text.startswith('lexical: "zebra"')
    assert got["explanation"].detail["terms"][0][0] == "zebra"
    assert got["detection_auroc"] == pytest.approx(1.0)
    assert got["detection_balanced_accuracy"] == pytest.approx(1.0)
    assert got["fuzz_auroc"] == pytest.approx(1.0)


def test_a_latent_without_a_lexical_trigger_scores_at_chance() -> None:
    aurocs = [_scores(trigger=False, seed=s)["detection_auroc"] for s in range(6)]
    assert abs(float(np.mean(aurocs)) - 0.5) < 0.12


def test_the_scorer_never_sees_activations() -> None:
    """Detection gets the contexts with activations zeroed: a scorer that reads them learns nothing."""
    class Peeking:
        name = "peek"

        def detect(self, explanation, contexts):
            return [c.max_activation for c in contexts]

        def fuzz(self, explanation, contexts, marked):
            return [c.max_activation for c in contexts]

    rng = np.random.default_rng(0)
    pos, neg = _contexts(rng, 10, trigger="zebra"), _contexts(rng, 10, trigger=None)
    got = detection(Peeking(), Explanation("k", "x"), pos, neg)
    assert got["detection_auroc"] == 0.5


def test_terms_need_positive_lift_and_rank_by_activation_mass() -> None:
    """A token present as often in the non-activating contexts carries no lift and is no term, however much mass."""
    common = Context(("the", "cat"), (2.0, 1.0))
    pos = [common] * 5
    neg = [Context(("the", "dog"), (0.0, 0.0))] * 5
    terms = dict(top_terms(pos, neg))
    assert "the" not in terms and terms["cat"] == pytest.approx(1 / 3) and terms["the cat"] == pytest.approx(1 / 3)
    assert grams_ending(["a", "", "b"], 2) == ["b"]


def test_auroc_and_balanced_accuracy_follow_their_definitions() -> None:
    assert auroc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert auroc([0.5, 0.5], [1, 0]) == 0.5
    assert auroc([0.1, 0.9], [1, 0]) == 0.0
    assert math.isnan(auroc([0.1], [1]))
    assert balanced_accuracy([0.9, 0.2, 0.6, 0.1], [1, 1, 0, 0], 0.5) == pytest.approx(0.5)


def test_explanation_similarity_is_the_cosine_of_term_vectors() -> None:
    a = Explanation("a", "lexical", {"terms": [["zebra", 0.6], ["horse", 0.2]]})
    b = Explanation("b", "lexical", {"terms": [["zebra", 0.3], ["horse", 0.1]]})
    c = Explanation("c", "lexical", {"terms": [["lion", 1.0]]})
    assert similarity(term_vector(a), term_vector(b)) == pytest.approx(1.0)
    assert similarity(term_vector(a), term_vector(c)) == 0.0
    text = similarity(term_vector(Explanation("d", "Mentions of zebras")), term_vector(Explanation("e", "zebras")))
    assert text == pytest.approx(1 / math.sqrt(3))


def test_a_text_explanation_in_an_output_row_has_its_words_as_terms() -> None:
    """The pipeline compares output rows (text under "explanation"): an LLM's or delphi's explanations, which have
    no weighted terms, must still give a similarity (they once gave an empty vector, so NaN for every pair)."""
    row = {"explanation": "Mentions of zebras", "detail": {"backend": "delphi"}}
    assert term_vector(row) == {"mentions": 1.0, "of": 1.0, "zebras": 1.0}
    assert similarity(term_vector(row), term_vector({"explanation": "zebras", "detail": {}})) == pytest.approx(
        1 / math.sqrt(3))
