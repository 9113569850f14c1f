"""`openai:URL#MODEL`: any OpenAI-compatible chat endpoint (vLLM, llama.cpp server, Ollama), standard library only.

URL is the base URL OpenAI clients take (e.g. http://127.0.0.1:8000/v1): requests go to URL/chat/completions,
and URL/models is probed once, at the first request the cache cannot answer (or at once when the spec names no
model: the first one listed is used), so an unreachable endpoint is one clear line naming it. At most `concurrency` requests are in flight at once; connection errors, timeouts, 429
and 5xx answers are retried with exponential backoff. Yes/no answers ask for `logprobs` / `top_logprobs` and
weigh every spelling of yes against no at the answer token; a server that gives no log-probabilities is read
from its text (yes → 1, no → 0). Responses that parse are cached on disk (see cache.py), so a rerun sends nothing.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from saeseeds.interpret.backends.cache import ResponseCache, request_key
from saeseeds.interpret.backends.lm import Failure
from saeseeds.interpret.backends.prompts import (
    YES,
    Messages,
    answer_word,
    parse_explanation,
    parse_yes_no,
)
from saeseeds.interpret.interface import BackendError

TOP_LOGPROBS = 5
"""Alternatives asked for at each answer token (delphi asks for 5 too)."""
ANSWER_TOKENS = 3
"""Longest yes/no answer requested, in tokens (room for a leading space or newline token)."""
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
FATAL_STATUSES = frozenset({401, 403, 404, 405})
"""Answers that no prompt can fix (wrong key, URL or model): the run stops with one line. Other 4xx fail the
latent whose prompt caused them (e.g. a prompt longer than the model's context)."""


class MalformedResponse(Exception):
    """The server answered, but not with a usable chat completion (carries the reason and the body's start)."""

    def __init__(self, reason: str, body: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.body = body


def parse_spec(spec: str) -> tuple[str, str | None]:
    """'URL#MODEL' → (base URL without a trailing '/' or '/chat/completions', MODEL or None)."""
    url, _, model = spec.partition("#")
    url = url.strip().rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    if not url.startswith(("http://", "https://")):
        raise BackendError(f"--explainer openai:{spec}: the URL must start with http:// or https:// "
                           "(e.g. openai:http://127.0.0.1:8000/v1#MODEL)")
    return url, (model.strip() or None)


def _opener(url: str) -> urllib.request.OpenerDirector:
    """urllib's opener; for a server on this machine one that ignores http_proxy (a cluster proxy cannot reach it)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in ("localhost", "::1") or host.startswith("127."):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


class OpenAIEngine:
    """Chat completions over HTTP with a bounded pool, retries, a disk cache and yes/no log-probabilities."""

    def __init__(self, spec: str, *, cache_dir: Path | None = None, concurrency: int = 4, timeout_s: float = 120.0,
                 retries: int = 4, backoff_s: float = 0.5) -> None:
        self.url, self.model = parse_spec(spec)
        self.concurrency = max(1, int(concurrency))
        self.timeout_s = float(timeout_s)
        self.retries = max(0, int(retries))
        self.backoff_s = float(backoff_s)
        self.cache = ResponseCache(cache_dir) if cache_dir is not None else None
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._probe_lock = threading.Lock()
        self._probed = False
        self._logprobs = True
        self._opener = _opener(self.url)
        self._count_lock = threading.Lock()
        self.requests = 0
        """HTTP requests sent (probes and retries included)."""
        if self.model is None:
            self.probe()  # the model is part of the name recorded in the output and of every cache key

    @property
    def name(self) -> str:
        """'openai:URL#MODEL' (without '#MODEL' in the spec: the first model URL/models lists)."""
        return f"openai:{self.url}#{self.model or ''}"

    # ----------------------------------------------------------------------------------------
    # HTTP

    def _headers(self) -> dict[str, str]:
        """JSON headers, with a bearer token when OPENAI_API_KEY is set."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get("OPENAI_API_KEY")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _http(self, path: str, payload: dict[str, Any] | None) -> tuple[int, str]:
        """One request (GET without payload, else POST JSON): (status, body). Raises OSError when unreachable."""
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(self.url + path, data=data, headers=self._headers(),
                                         method="GET" if payload is None else "POST")
        with self._slots:
            with self._count_lock:
                self.requests += 1
            try:
                with self._opener.open(request, timeout=self.timeout_s) as response:
                    return response.status, response.read().decode("utf-8", errors="replace")
            except urllib.error.HTTPError as err:
                return err.code, err.read().decode("utf-8", errors="replace")

    def _unreachable(self, err: BaseException) -> BackendError:
        """The one-line error naming the endpoint."""
        reason = getattr(err, "reason", None) or err
        return BackendError(f"openai endpoint {self.url} is unreachable ({reason}); start the server or fix "
                            "--explainer openai:URL#MODEL")

    def probe(self) -> None:
        """GET URL/models once: BackendError naming the URL when nothing answers; picks the model if none given."""
        with self._probe_lock:
            if self._probed:
                return
            try:
                status, body = self._http("/models", None)
            except (OSError, http.client.HTTPException) as err:
                raise self._unreachable(err) from err
            if self.model is None:
                self.model = self._first_model(status, body)
            self._probed = True

    def _first_model(self, status: int, body: str) -> str:
        """The first model id URL/models lists (when the spec names none)."""
        try:
            ids = [m["id"] for m in json.loads(body)["data"]] if status == 200 else []
        except (ValueError, KeyError, TypeError):
            ids = []
        if not ids:
            raise BackendError(f"openai endpoint {self.url}: no model named after '#' and {self.url}/models lists "
                               f"none (HTTP {status}); use --explainer openai:{self.url}#MODEL")
        return str(ids[0])

    def _post_chat(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST one chat completion with retries; the parsed body, or MalformedResponse / BackendError."""
        attempt = 0
        while True:
            try:
                status, body = self._http("/chat/completions", payload)
            except (OSError, http.client.HTTPException) as err:
                if attempt >= self.retries:
                    if isinstance(err, OSError):
                        raise self._unreachable(err) from err
                    raise MalformedResponse(f"broken HTTP reply ({type(err).__name__})") from err
            else:
                if status == 200:
                    return _completion(body)
                if status == 400 and "logprobs" in payload:
                    return self._without_logprobs(payload, body)
                if status in FATAL_STATUSES:
                    raise BackendError(f"openai endpoint {self.url}: HTTP {status} for model {self.model!r} "
                                       f"({' '.join(body.split())[:200]})")
                if status not in RETRY_STATUSES:
                    raise MalformedResponse(f"HTTP {status}", body)  # e.g. a prompt too long for the model
                if attempt >= self.retries:
                    raise MalformedResponse(f"HTTP {status} after {attempt + 1} tries", body)
            time.sleep(self.backoff_s * (2**attempt))
            attempt += 1

    def _without_logprobs(self, payload: dict[str, Any], first_body: str) -> dict[str, Any]:
        """After a 400 to a request with log-probabilities: ask once without; if that works the server rejects
        them, and from now on answers are read as text; if not, the 400 was this prompt's (MalformedResponse)."""
        plain = {k: v for k, v in payload.items() if k not in ("logprobs", "top_logprobs")}
        try:
            response = self._post_chat(plain)
        except MalformedResponse as err:
            raise MalformedResponse(f"HTTP 400 ({err.reason} without log-probabilities too)", first_body) from err
        self._logprobs = False
        return response

    def chat(self, messages: Messages, params: dict[str, Any], usable: Callable[[dict[str, Any]], bool]
             ) -> dict[str, Any]:
        """The completion for `messages`: from the cache when there, else asked for, and cached when `usable`
        (an answer the caller cannot use is asked again on a rerun rather than replayed forever)."""
        key = request_key(str(self.model), messages, params) if self.cache is not None else None
        if key is not None and (hit := self.cache.get(key)) is not None:
            return hit
        self.probe()
        payload = {"model": self.model, "messages": messages, **params}
        if not self._logprobs:
            payload = {k: v for k, v in payload.items() if k not in ("logprobs", "top_logprobs")}
        response = self._post_chat(payload)
        if key is not None and usable(response):
            self.cache.put(key, response)
        return response

    # ----------------------------------------------------------------------------------------
    # the ChatEngine interface

    def _map(self, fn: Any, chats: Sequence[Messages]) -> list[Any]:
        """`fn` over `chats` on up to `concurrency` threads, in order; MalformedResponse becomes a Failure."""
        def guarded(chat: Messages) -> Any:
            try:
                return fn(chat)
            except MalformedResponse as err:
                return Failure(err.reason, err.body)

        if len(chats) <= 1 or self.concurrency == 1:
            return [guarded(c) for c in chats]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(chats))) as pool:
            return list(pool.map(guarded, chats))

    def complete(self, chats: Sequence[Messages], max_new_tokens: int) -> list[str | Failure]:
        """Greedy (temperature 0) replies of at most `max_new_tokens` tokens."""
        params = {"temperature": 0, "max_tokens": int(max_new_tokens)}
        return self._map(lambda chat: _content(self.chat(chat, params, _explains)), chats)

    def yes_probability(self, chats: Sequence[Messages]) -> list[float | Failure]:
        """P(yes) / (P(yes) + P(no)) at the answer token; the text answer when the server gives no log-probs."""
        params = {"temperature": 0, "max_tokens": ANSWER_TOKENS, "logprobs": True, "top_logprobs": TOP_LOGPROBS}

        def one(chat: Messages) -> float | Failure:
            return _yes_probability(self.chat(chat, params, _answers))

        return self._map(one, chats)


def _completion(body: str) -> dict[str, Any]:
    """A chat-completion body parsed and checked: choices[0].message.content is a string."""
    try:
        data = json.loads(body)
        content = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise MalformedResponse("the server's reply is not a chat completion", body) from err
    if not isinstance(content, str):
        raise MalformedResponse("the reply's message content is not text", body)
    return data


def _content(response: dict[str, Any]) -> str:
    """The reply text of a checked completion."""
    return response["choices"][0]["message"]["content"]


def _explains(response: dict[str, Any]) -> bool:
    """True when a reply holds an explanation (see prompts.parse_explanation)."""
    try:
        parse_explanation(_content(response))
    except ValueError:
        return False
    return True


def _yes_probability(response: dict[str, Any]) -> float | Failure:
    """P(yes) from the log-probabilities, else from the text answer, else a Failure."""
    p = _yes_from_logprobs(response)
    if p is not None:
        return p
    text = _content(response)
    try:
        return parse_yes_no(text)
    except ValueError as err:
        return Failure(str(err), text or "(empty reply)")


def _answers(response: dict[str, Any]) -> bool:
    """True when a reply gives a yes/no probability."""
    return not isinstance(_yes_probability(response), Failure)


def _yes_from_logprobs(response: dict[str, Any]) -> float | None:
    """P(yes) / (P(yes) + P(no)) at the first answer token that spells yes or no; None without usable log-probs."""
    try:
        tokens = response["choices"][0].get("logprobs", {}) or {}
        tokens = tokens.get("content") or []
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    for entry in tokens:
        if not isinstance(entry, dict) or answer_word(str(entry.get("token", ""))) is None:
            continue
        mass = {"yes": 0.0, "no": 0.0}
        seen = entry.get("top_logprobs") or [entry]
        for alt in seen:
            word = answer_word(str(alt.get("token", ""))) if isinstance(alt, dict) else None
            logprob = alt.get("logprob") if isinstance(alt, dict) else None
            if word is not None and isinstance(logprob, (int, float)) and math.isfinite(logprob):
                mass[word] += math.exp(logprob)
        total = mass[YES] + mass["no"]
        return mass[YES] / total if total > 0 else None
    return None
