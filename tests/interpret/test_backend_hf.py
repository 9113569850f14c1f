"""The `hf:PATH` backend on a tiny randomly initialised local causal LM (built here, no download): prompts,
parsing, batching and yes/no probabilities; not the quality of the explanations."""

from __future__ import annotations

import math

import pytest

from helpers.tiny_chat_lm import shared_answering_chat_lm
from saeseeds.errors import SaeseedsError
from saeseeds.interpret.backends import build_backend
from saeseeds.interpret.backends.lm import ChatBackend, Failure
from saeseeds.interpret.backends.prompts import (
    detection_messages,
    explainer_messages,
    firing_positions,
    parse_explanation,
    parse_yes_no,
    render,
)
from saeseeds.interpret.interface import BackendError, Context, LatentRecord, ResponseError

pytestmark = pytest.mark.usefixtures("one_thread")

CAT = Context(("the", "cat", "sat", "on", "the", "mat"), (0.0, 2.0, 0.0, 0.0, 0.0, 1.0))
DOG = Context(("a", "dog", "ran"), (0.0, 0.5, 0.0))
NUMBERS = Context(("one", "two", "three", "four", "five", "one", "two", "three", "four"), (0.0,) * 9)


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    """The tiny chat LM directory shared by the backend tests."""
    return shared_answering_chat_lm(tmp_path_factory)


@pytest.fixture(scope="module")
def backend(lm_dir):
    """The hf backend on the tiny LM, CPU, batches of 4."""
    explainer, scorer = build_backend(f"hf:{lm_dir}", device="cpu", batch_size=4, max_new_tokens=6)
    assert explainer is scorer
    return explainer


def test_render_marks_runs_and_joins_wordpiece_and_bpe_tokens():
    assert render(["the", "cat", "##s", "sat"], [1, 2]) == "the <<cats>> sat"
    assert render(["The", "Ġcat", "Ġsat", "Ġdown"], [1, 2]) == "The <<cat sat>> down"
    assert render(["The", " big", " cat"], [0, 2]) == "<<The>> big <<cat>>"
    assert firing_positions(CAT) == [1, 5]  # 1.0 > 0.3 * 2.0
    assert firing_positions(NUMBERS) == []


def test_explainer_prompt_shows_each_context_with_its_firing_tokens_marked():
    chat = explainer_messages(LatentRecord("s/0/3", 3, (CAT, DOG)))
    assert [m["role"] for m in chat] == ["system", "user"]
    assert "[EXPLANATION]:" in chat[0]["content"]
    assert chat[1]["content"].splitlines() == ["Example 1: the <<cat>> sat on the <<mat>>", "Example 2: a <<dog>> ran"]
    assert "the cat sat on the mat" in detection_messages("cats", CAT)[1]["content"]  # unmarked for detection


@pytest.mark.parametrize("reply,expected", [
    ("[EXPLANATION]: Animal nouns.", "Animal nouns."),
    ("Step 1: the words are cat, dog.\n[EXPLANATION]: the token <<cat>>\n", "the token cat"),
    ("[explanation] : Numbers", "Numbers"),
    ("I think it is about\nanimals", "animals"),
])
def test_parse_explanation_takes_the_marked_line_else_the_last(reply, expected):
    assert parse_explanation(reply) == expected


@pytest.mark.parametrize("reply", ["", "   \n", "[EXPLANATION]:   "])
def test_parse_explanation_refuses_empty_replies(reply):
    with pytest.raises(ValueError):
        parse_explanation(reply)


def test_parse_yes_no_reads_the_first_word():
    assert parse_yes_no("Yes.") == 1.0
    assert parse_yes_no("\n no, because") == 0.0
    with pytest.raises(ValueError):
        parse_yes_no("maybe yes")


def test_round_trip_explains_and_scores_with_probabilities_in_0_1(backend, lm_dir):
    records = [LatentRecord("s/0/3", 3, (CAT, DOG)), LatentRecord("s/1/7", 7, (NUMBERS,))]
    explanations = backend.explain(records)
    assert [e.key for e in explanations] == ["s/0/3", "s/1/7"]
    assert all(e.text and e.detail["backend"] == f"hf:{lm_dir.resolve()}" for e in explanations)
    detected = backend.detect(explanations[0], [CAT, DOG, NUMBERS])
    fuzzed = backend.fuzz(explanations[0], [CAT, CAT], [[1, 5], [2]])
    for p in [*detected, *fuzzed]:
        assert 0.0 <= p <= 1.0 and math.isfinite(p)
    assert len(set(detected)) == 3  # the answer depends on the prompt


def test_batched_and_single_answers_agree(lm_dir, backend):
    """Left padding with padding-aware positions: a prompt's answer does not depend on its batch mates."""
    one, _ = build_backend(f"hf:{lm_dir}", device="cpu", batch_size=1, max_new_tokens=6)
    explanation = backend.explain([LatentRecord("s/0/3", 3, (CAT,))])[0]
    contexts = [CAT, DOG, NUMBERS, DOG, CAT]  # different lengths, so batches of 4 are padded
    assert backend.detect(explanation, contexts) == pytest.approx(one.detect(explanation, contexts), abs=1e-5)
    assert backend.explain([LatentRecord("a", 1, (CAT,)), LatentRecord("b", 2, (NUMBERS, DOG))]) == [
        *one.explain([LatentRecord("a", 1, (CAT,))]), *one.explain([LatentRecord("b", 2, (NUMBERS, DOG))])]


def test_uses_the_chat_template_else_a_transcript(backend):
    chat = detection_messages("cats", CAT)
    assert backend.engine.prompt_text(chat).endswith("<|endoftext|> assistant :")
    template = backend.engine.tokenizer.chat_template
    try:
        backend.engine.tokenizer.chat_template = None
        text = backend.engine.prompt_text(chat)
    finally:
        backend.engine.tokenizer.chat_template = template
    assert text.startswith("System: ") and text.endswith("\n\nAssistant:")


def test_yes_and_no_are_read_from_every_single_token_spelling(backend):
    tok = backend.engine.tokenizer
    assert sorted(backend.engine.yes_ids) == sorted(tok.convert_tokens_to_ids(["yes", "Yes", "YES"]))
    assert tok.unk_token_id not in backend.engine.yes_ids + backend.engine.no_ids


def test_the_embedded_default_encoder_is_refused_in_one_line():
    from saeseeds.data.default_model import default_model_path

    with pytest.raises(BackendError) as err:
        build_backend(f"hf:{default_model_path()}", device="cpu")
    message = str(err.value)
    assert "not a causal language model" in message and "BertModel" in message and "\n" not in message
    assert isinstance(err.value, SaeseedsError)  # the CLI prints it as one line, exit 2


@pytest.mark.parametrize("spec,words", [
    ("hf:/nonexistent/model", "no such directory"),
    ("gpt:foo", "'hf:PATH' or 'openai:URL#MODEL'"),
])
def test_unusable_specs_are_one_line(spec, words, tmp_path):
    with pytest.raises(BackendError, match=words):
        build_backend(spec)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendError, match="no config.json"):
        build_backend(f"hf:{tmp_path / 'empty'}")


class _Engine:
    """A chat engine answering from a script (for the parsing of malformed replies, independent of any LM)."""

    name = "script"

    def __init__(self, replies, answers=()):
        self.replies, self.answers = list(replies), list(answers)

    def complete(self, chats, max_new_tokens):
        return self.replies[: len(chats)]

    def yes_probability(self, chats):
        return self.answers[: len(chats)]


def test_a_malformed_explanation_names_its_latent_and_keeps_the_others():
    backend = ChatBackend(_Engine(["[EXPLANATION]: cats", "", "[EXPLANATION]: dogs"]))
    records = [LatentRecord(f"s/0/{i}", i, (CAT,)) for i in range(3)]
    with pytest.raises(ResponseError) as err:
        backend.explain(records)
    assert err.value.key == "s/0/1" and str(err.value).startswith("latent s/0/1: the explainer returned an empty")
    assert [(e.key, e.text) for e in err.value.completed] == [("s/0/0", "cats"), ("s/0/2", "dogs")]


def test_a_malformed_score_names_the_latent_and_the_context():
    backend = ChatBackend(_Engine([], [0.3, Failure("the answer is neither yes nor no", "Sure!")]))
    explanation = ChatBackend(_Engine(["[EXPLANATION]: cats"])).explain([LatentRecord("s/2/9", 9, (CAT,))])[0]
    with pytest.raises(ResponseError, match=r"^latent s/2/9: detection answer for context 1: the answer is "
                                            r"neither yes nor no \('Sure!'\)$"):
        backend.detect(explanation, [CAT, DOG])


def test_a_prompt_longer_than_the_model_is_one_line_for_its_latent(backend):
    long = Context(("cat",) * 600, (1.0,) * 600)  # the tiny model has 512 positions
    with pytest.raises(ResponseError, match=r"^latent s/0/2: explainer request failed: the prompt \(\d+ tokens, "
                                            r"\+ 6 to generate\) exceeds the model's 512 positions") as err:
        backend.explain([LatentRecord("s/0/1", 1, (CAT,)), LatentRecord("s/0/2", 2, (long,))])
    assert [e.key for e in err.value.completed] == ["s/0/1"]
    with pytest.raises(ResponseError, match="detection answer for context 1: the prompt"):
        backend.detect(err.value.completed[0], [CAT, long])


def test_a_template_that_refuses_a_system_role_gets_it_in_the_user_turn(backend):
    refusing = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
                "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}assistant :")
    template = backend.engine.tokenizer.chat_template
    try:
        backend.engine.tokenizer.chat_template = refusing
        text = backend.engine.prompt_text(detection_messages("cats", CAT))
    finally:
        backend.engine.tokenizer.chat_template = template
    assert text.startswith("user : You check explanations") and "Explanation: cats" in text
