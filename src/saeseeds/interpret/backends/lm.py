"""An Explainer and Scorer on top of any chat engine that can complete prompts and weigh a yes against a no.

The engines (a local Hugging Face model, an OpenAI-compatible endpoint) only answer chats; this class builds the
prompts, parses the answers and turns a malformed one into a `ResponseError` naming the latent, keeping every
answer that did parse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from saeseeds.interpret.backends.prompts import (
    Messages,
    detection_messages,
    explainer_messages,
    fuzzing_messages,
    parse_explanation,
    snippet,
)
from saeseeds.interpret.interface import Context, Explanation, LatentRecord, ResponseError


@dataclass(frozen=True)
class Failure:
    """One prompt whose answer was unusable: what was wrong and the start of what came back."""

    reason: str
    reply: str = ""

    def line(self) -> str:
        """The reason, with the reply's start when there was one."""
        return f"{self.reason} ({snippet(self.reply)!r})" if self.reply else self.reason


class ChatEngine(Protocol):
    """What a backend must answer: free completions and yes/no probabilities, one entry per chat, in order."""

    name: str

    def complete(self, chats: Sequence[Messages], max_new_tokens: int) -> list[str | Failure]:
        """The reply text of each chat (greedy), or a Failure."""
        ...

    def yes_probability(self, chats: Sequence[Messages]) -> list[float | Failure]:
        """P(yes) / (P(yes) + P(no)) of each chat's answer, or a Failure."""
        ...


class ChatBackend:
    """Explainer and Scorer (delphi-style prompts) over a `ChatEngine`."""

    def __init__(self, engine: ChatEngine, *, max_new_tokens: int = 128) -> None:
        self.engine = engine
        self.max_new_tokens = max_new_tokens

    @property
    def name(self) -> str:
        """The engine's name, e.g. 'hf:/abs/path' or 'openai:URL#MODEL' (recorded in the output)."""
        return self.engine.name

    def explain(self, records: Sequence[LatentRecord]) -> list[Explanation]:
        """One explanation per record; a malformed reply raises ResponseError carrying the others."""
        replies = self.engine.complete([explainer_messages(r) for r in records], self.max_new_tokens)
        done: list[Explanation] = []
        failed: list[tuple[str, str]] = []
        for record, reply in zip(records, replies, strict=True):
            if isinstance(reply, Failure):
                failed.append((record.key, f"explainer request failed: {reply.line()}"))
                continue
            try:
                text = parse_explanation(reply)
            except ValueError as err:
                failed.append((record.key, f"{err} ({snippet(reply)!r})"))
                continue
            done.append(Explanation(record.key, text, {"backend": self.name, "reply": reply}))
        if failed:
            key, message = failed[0]
            more = f"; {len(failed) - 1} more latent(s) failed in this call" if len(failed) > 1 else ""
            raise ResponseError(key, message + more, completed=done)
        return done

    def detect(self, explanation: Explanation, contexts: Sequence[Context]) -> list[float]:
        """P(the latent fires in each context) read from the scorer's yes/no answer."""
        chats = [detection_messages(explanation.text, c) for c in contexts]
        return self._probabilities(explanation.key, "detection", self.engine.yes_probability(chats))

    def fuzz(self, explanation: Explanation, contexts: Sequence[Context], marked: Sequence[Sequence[int]]) -> list[float]:
        """P(the marked tokens of each context are where the latent fires) from the yes/no answer."""
        if len(marked) != len(contexts):
            raise ValueError(f"fuzz: {len(contexts)} contexts but {len(marked)} marked sets")
        chats = [fuzzing_messages(explanation.text, c, m) for c, m in zip(contexts, marked)]
        return self._probabilities(explanation.key, "fuzzing", self.engine.yes_probability(chats))

    @staticmethod
    def _probabilities(key: str, task: str, answers: Sequence[float | Failure]) -> list[float]:
        """The answers as floats in [0, 1]; the first Failure raises ResponseError naming the latent and context."""
        for i, answer in enumerate(answers):
            if isinstance(answer, Failure):
                raise ResponseError(key, f"{task} answer for context {i}: {answer.line()}")
        return [min(1.0, max(0.0, float(a))) for a in answers]
