"""Test fixture: a real OpenAI-compatible chat server on 127.0.0.1 (http.server on a thread) that serves a local
Hugging Face causal LM: GET /v1/models and POST /v1/chat/completions with greedy decoding and `logprobs` /
`top_logprobs`, the subset of the format vLLM, llama.cpp's server and Ollama share. It counts requests and the
most in flight at once, and can be told to fail (a status for the next requests, garbage for prompts containing a
marker) so the `openai:` backend's retries, cache and error lines are tested against real HTTP.
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import torch


class ChatServer:
    """`with ChatServer(model_dir) as server:` serves at `server.url` (ending in /v1) until the block ends."""

    def __init__(self, model_dir: str | Path, *, model_name: str = "tiny", delay_s: float = 0.0,
                 logprobs: bool = True, reject_logprobs: bool = False) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_name = model_name
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).eval()
        self.delay_s = delay_s
        """Seconds each request waits before it is answered (so concurrent requests overlap)."""
        self.logprobs = logprobs
        """False: ignore `logprobs` in requests, as servers without log-probability support do."""
        self.reject_logprobs = reject_logprobs
        """True: answer HTTP 400 to any request asking for `logprobs`, as some servers do."""
        self.bad_request_marker: str | None = None
        """A chat request whose messages contain this text gets HTTP 400 (as a prompt too long for the model)."""
        self.fail_statuses: list[int] = []
        """Statuses returned (with an error body) to the next chat requests, one each, before serving again."""
        self.garbage_marker: str | None = None
        """A chat request whose messages contain this text gets HTTP 200 with a body that is not JSON."""
        self.requests = 0
        self.chat_requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL an OpenAI client takes, e.g. http://127.0.0.1:PORT/v1."""
        assert self._httpd is not None, "start the server first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        """Bind a free port and serve on a daemon thread."""
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop serving and release the port."""
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    # ----------------------------------------------------------------------------------------

    def enter(self) -> None:
        """Count a request and how many are in flight."""
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        """A request finished."""
        with self._lock:
            self.in_flight -= 1

    def models(self) -> dict[str, Any]:
        """The /v1/models listing."""
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "owned_by": "tests"}]}

    def next_failure(self) -> int | None:
        """The status to fail the next chat request with, if any is queued."""
        with self._lock:
            self.chat_requests += 1
            return self.fail_statuses.pop(0) if self.fail_statuses else None

    @torch.inference_mode()
    def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        """A chat completion for `request`: greedy tokens, with per-token log-probabilities when asked."""
        text = self.tokenizer.apply_chat_template(request["messages"], tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with self._model_lock:
            out = self.model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=int(request.get("max_tokens", 16)),
                do_sample=False, output_scores=True, return_dict_in_generate=True,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out.sequences[0, ids.shape[1]:].tolist()
        choice: dict[str, Any] = {
            "index": 0, "finish_reason": "length",
            "message": {"role": "assistant", "content": self.tokenizer.decode(new, skip_special_tokens=True)},
            "logprobs": None,
        }
        if request.get("logprobs") and self.logprobs:
            top = int(request.get("top_logprobs") or 0)
            choice["logprobs"] = {"content": [self._token_logprobs(t, s[0], top) for t, s in zip(new, out.scores)]}
        return {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                "model": self.model_name, "choices": [choice]}

    def _token_logprobs(self, token: int, scores: torch.Tensor, top: int) -> dict[str, Any]:
        """One generated token's entry: its text and log-prob, and the `top` most likely alternatives."""
        logp = torch.log_softmax(scores.float(), dim=-1)
        values, indices = logp.topk(top) if top else (logp[:0], logp[:0].long())
        return {
            "token": self.tokenizer.decode([token]), "logprob": _finite(logp[token].item()),
            "top_logprobs": [{"token": self.tokenizer.decode([i]), "logprob": _finite(v)}
                             for v, i in zip(values.tolist(), indices.tolist())],
        }


def _finite(value: float) -> float:
    """-inf (a banned token) as a very negative number, as JSON has no infinity."""
    return value if math.isfinite(value) else -9999.0


def _handler(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to `server`."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            """Silent: tests read counters, not logs."""

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            """Write one response."""
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            """GET /v1/models."""
            server.enter()
            try:
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, json.dumps(server.models()).encode())
                else:
                    self._send(404, b'{"error": "not found"}')
            finally:
                server.leave()

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            """POST /v1/chat/completions."""
            server.enter()
            try:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                time.sleep(server.delay_s)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, b'{"error": "not found"}')
                elif (status := server.next_failure()) is not None:
                    self._send(status, b'{"error": {"message": "planned failure"}}')
                elif request.get("model") != server.model_name:
                    self._send(404, b'{"error": {"message": "The model does not exist."}}')
                elif server.reject_logprobs and "logprobs" in request:
                    self._send(400, b'{"error": {"message": "logprobs is not supported"}}')
                elif server.bad_request_marker and server.bad_request_marker in json.dumps(request.get("messages")):
                    self._send(400, b'{"error": {"message": "maximum context length exceeded"}}')
                elif server.garbage_marker and server.garbage_marker in json.dumps(request.get("messages")):
                    self._send(200, b"<html>this is not a chat completion</html>", "text/html")
                else:
                    self._send(200, json.dumps(server.complete(request)).encode())
            finally:
                server.leave()

    return Handler
