"""The `openai:URL#MODEL` backend against a real OpenAI-compatible HTTP server on 127.0.0.1 serving the tiny local
LM (tests/helpers/chat_server.py): round trip, cache, concurrency bound, retries and one-line errors."""

from __future__ import annotations

import socket

import pytest

from helpers.chat_server import ChatServer
from helpers.tiny_chat_lm import shared_answering_chat_lm
from saeseeds.interpret.backends import build_backend
from saeseeds.interpret.backends.openai import OpenAIEngine, _yes_from_logprobs, parse_spec
from saeseeds.interpret.interface import BackendError, Context, LatentRecord, ResponseError

pytestmark = pytest.mark.usefixtures("one_thread")

CAT = Context(("the", "cat", "sat", "on", "the", "mat"), (0.0, 2.0, 0.0, 0.0, 0.0, 1.0))
DOG = Context(("a", "dog", "ran", "in", "the", "park"), (0.0, 0.5, 0.0, 0.0, 0.0, 0.0))
NUMBERS = Context(("one", "two", "three", "four", "five"), (0.0,) * 5)
RECORDS = [LatentRecord("s/0/3", 3, (CAT, DOG)), LatentRecord("s/1/7", 7, (NUMBERS,))]


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    """The tiny chat LM directory (shared with the hf tests)."""
    return shared_answering_chat_lm(tmp_path_factory)


@pytest.fixture
def server(lm_dir):
    """A fresh chat server (fresh counters) on a free port."""
    with ChatServer(lm_dir) as running:
        yield running


def _openai(server, **kwargs):
    """The openai backend on `server`'s tiny model."""
    kwargs.setdefault("max_new_tokens", 6)
    explainer, scorer = build_backend(f"openai:{server.url}#tiny", **kwargs)
    assert explainer is scorer
    return explainer


def test_round_trip_matches_the_same_model_run_locally(server, lm_dir):
    backend = _openai(server, concurrency=3)
    explanations = backend.explain(RECORDS)
    detected = backend.detect(explanations[0], [CAT, DOG, NUMBERS])
    fuzzed = backend.fuzz(explanations[0], [CAT, CAT], [[1, 5], [2]])
    local, _ = build_backend(f"hf:{lm_dir}", device="cpu", max_new_tokens=6)
    assert [(e.key, e.text) for e in explanations] == [(e.key, e.text) for e in local.explain(RECORDS)]
    assert detected == pytest.approx(local.detect(explanations[0], [CAT, DOG, NUMBERS]), abs=1e-4)
    assert fuzzed == pytest.approx(local.fuzz(explanations[0], [CAT, CAT], [[1, 5], [2]]), abs=1e-4)
    assert all(0.0 < p < 1.0 for p in detected + fuzzed)  # from log-probabilities, not a 0/1 text answer
    assert backend.name == f"openai:{server.url}#tiny"
    assert server.chat_requests == 2 + 3 + 2


def test_the_cache_makes_a_rerun_send_no_request(server, tmp_path):
    cache = tmp_path / "cache"
    first = _openai(server, cache_dir=cache)
    explanations = first.explain(RECORDS)
    probabilities = first.detect(explanations[1], [CAT, DOG])
    sent = server.requests
    assert sent == 1 + 2 + 2  # one probe of /v1/models, then the chats
    again = _openai(server, cache_dir=cache)
    assert again.explain(RECORDS) == explanations
    assert again.detect(explanations[1], [CAT, DOG]) == probabilities
    assert server.requests == sent  # nothing reached the server, not even the probe
    assert again.engine.cache.hits == 4 and len(list(cache.rglob("*.json"))) == 4


def test_at_most_concurrency_requests_are_in_flight(lm_dir):
    with ChatServer(lm_dir, delay_s=0.15) as server:
        backend = _openai(server, concurrency=2)
        backend.detect(_explanation(), [CAT, DOG, NUMBERS, CAT, DOG, NUMBERS])
        assert server.max_in_flight == 2  # in parallel, never above the bound


def test_a_503_then_200_is_retried(server):
    server.fail_statuses = [503]
    backend = _openai(server)
    assert 0.0 < backend.detect(_explanation(), [CAT])[0] < 1.0
    assert server.chat_requests == 2 and server.fail_statuses == []


def test_an_unreachable_endpoint_is_one_line_naming_the_url():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    backend, _ = build_backend(f"openai:{url}#tiny")  # building sends nothing; the first call probes
    with pytest.raises(BackendError) as err:
        backend.explain(RECORDS)
    message = str(err.value)
    assert message.startswith(f"openai endpoint {url} is unreachable") and "\n" not in message


def test_a_malformed_response_names_the_latent_and_loses_nothing(server, tmp_path):
    zebra = LatentRecord("s/2/9", 9, (Context(("a", "zebra"), (0.0, 1.0)),))
    records = [RECORDS[0], zebra, RECORDS[1]]
    server.garbage_marker = "zebra"
    backend = _openai(server, cache_dir=tmp_path / "cache")
    with pytest.raises(ResponseError) as err:
        backend.explain(records)
    assert str(err.value).startswith("latent s/2/9: explainer request failed: the server's reply is not a chat "
                                     "completion ('<html>this is not a chat completion</html>')")
    assert err.value.key == "s/2/9" and [e.key for e in err.value.completed] == ["s/0/3", "s/1/7"]
    server.garbage_marker = None
    chats = server.chat_requests
    assert [e.key for e in backend.explain(records)] == ["s/0/3", "s/2/9", "s/1/7"]
    assert server.chat_requests == chats + 1  # only the failed latent is asked again


def test_without_logprobs_the_text_answer_is_used(lm_dir, server):
    explanation = _explanation()
    with_logprobs = _openai(server).detect(explanation, [CAT, DOG, NUMBERS])
    with ChatServer(lm_dir, logprobs=False) as plain:
        text_only = _openai(plain).detect(explanation, [CAT, DOG, NUMBERS])
    assert text_only == [float(p > 0.5) for p in with_logprobs]  # the greedy answer is the likelier word


def test_a_server_rejecting_logprobs_is_asked_again_and_read_as_text(lm_dir, server):
    explanation = _explanation()
    with_logprobs = _openai(server).detect(explanation, [CAT, DOG, NUMBERS])
    with ChatServer(lm_dir, reject_logprobs=True) as strict:
        backend = _openai(strict, concurrency=1)
        assert backend.detect(explanation, [CAT, DOG, NUMBERS]) == [float(p > 0.5) for p in with_logprobs]
        assert strict.chat_requests == 2 + 2  # the first is asked twice, then no more log-probabilities are asked


def test_a_400_for_one_prompt_fails_only_that_latent(server):
    server.bad_request_marker = "zebra"
    backend = _openai(server, concurrency=1)
    zebra = Context(("a", "zebra"), (0.0, 1.0))
    with pytest.raises(ResponseError, match=r"^latent s/0/3: detection answer for context 1: HTTP 400 \(HTTP 400 "
                                            r"without log-probabilities too\) \('.*maximum context length"):
        backend.detect(_explanation(), [CAT, zebra])
    assert 0.0 < backend.detect(_explanation(), [DOG])[0] < 1.0  # log-probabilities still used afterwards


def test_a_wrong_model_name_stops_with_one_line(server):
    backend, _ = build_backend(f"openai:{server.url}#nope")
    with pytest.raises(BackendError, match=r"^openai endpoint http://127\.0\.0\.1:\d+/v1: HTTP 404 for model "
                                           r"'nope' \(.*The model does not exist"):
        backend.explain(RECORDS[:1])


def test_the_model_defaults_to_the_first_listed(server):
    explainer, _ = build_backend(f"openai:{server.url}/", max_new_tokens=2)
    assert explainer.name == f"openai:{server.url}#tiny" and server.requests == 1  # probed at once
    explainer.explain(RECORDS[:1])
    assert server.chat_requests == 1


def test_spec_parsing():
    assert parse_spec("http://h:1/v1/chat/completions#org/model:7b") == ("http://h:1/v1", "org/model:7b")
    assert parse_spec("https://h/v1/") == ("https://h/v1", None)
    with pytest.raises(BackendError, match="must start with http"):
        OpenAIEngine("localhost:8000/v1#m")


def test_yes_no_mass_is_read_at_the_first_answer_token():
    import math

    response = {"choices": [{"message": {"content": "\nYes"}, "logprobs": {"content": [
        {"token": "\n", "logprob": -0.01, "top_logprobs": [{"token": "\n", "logprob": -0.01}]},
        {"token": "Yes", "logprob": -0.5, "top_logprobs": [
            {"token": "Yes", "logprob": -0.5}, {"token": " yes", "logprob": -2.0},
            {"token": "No", "logprob": -1.5}, {"token": "Maybe", "logprob": -3.0}]}]}}]}
    yes, no = math.exp(-0.5) + math.exp(-2.0), math.exp(-1.5)
    assert _yes_from_logprobs(response) == pytest.approx(yes / (yes + no))
    assert _yes_from_logprobs({"choices": [{"message": {"content": "yes"}, "logprobs": None}]}) is None


def _explanation():
    """A fixed explanation to score."""
    from saeseeds.interpret.interface import Explanation

    return Explanation("s/0/3", "animals")


def test_an_unusable_answer_is_not_cached_so_a_rerun_asks_again(tmp_path):
    from helpers.tiny_chat_lm import build_tiny_chat_lm

    babbler = build_tiny_chat_lm(tmp_path / "babbler")  # random weights: answers with random words
    cache = tmp_path / "cache"
    with ChatServer(babbler, logprobs=False) as server:
        with pytest.raises(ResponseError, match=r"^latent s/0/3: detection answer for context 0: the answer is "
                                                r"neither yes nor no \('"):
            _openai(server, cache_dir=cache).detect(_explanation(), [CAT])
        assert _openai(server, cache_dir=cache).explain(RECORDS[:1])[0].text  # any text explains: cached
        assert len(list(cache.rglob("*.json"))) == 1
        sent = server.chat_requests
        with pytest.raises(ResponseError):
            _openai(server, cache_dir=cache).detect(_explanation(), [CAT])
        _openai(server, cache_dir=cache).explain(RECORDS[:1])
        assert server.chat_requests == sent + 1  # the unusable answer is asked again, the explanation is not


def test_a_local_server_is_reached_past_a_proxy(server, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # a proxy that refuses: only a bypass gets through
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert 0.0 < _openai(server).detect(_explanation(), [CAT])[0] < 1.0
