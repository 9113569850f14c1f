"""The seam between `saeseeds interpret` and whatever writes and scores explanations (an offline token
baseline, a local Hugging Face LM, an OpenAI-compatible endpoint): one small interface, so the pipeline, the
claims and the report never know which backend ran.

Scoring follows delphi's definitions (docs/definitions.md, "Interpretability"): *detection* asks, for each
context, the probability that the explanation's latent fires somewhere in it; *fuzzing* asks whether the
highlighted tokens of a context are the ones on which the latent fires.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from saeseeds.errors import SaeseedsError


@dataclass(frozen=True)
class Context:
    """A window of text: its token strings and one latent's activation at each (0 where it is silent)."""

    tokens: tuple[str, ...]
    activations: tuple[float, ...]

    @property
    def max_activation(self) -> float:
        """The strongest activation in the window (0 for a non-activating context)."""
        return max(self.activations, default=0.0)


@dataclass(frozen=True)
class LatentRecord:
    """What an explainer is shown of one latent: its top-activating contexts (the explanation split)."""

    key: str
    """Unique within one interpret output: '<set>/<seed>/<latent>'."""
    latent: int
    activating: tuple[Context, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Backend-independent facts an explainer may use (e.g. firing frequency)."""


@dataclass(frozen=True)
class Explanation:
    """One latent's explanation: the text and the backend's structured detail (e.g. weighted tokens)."""

    key: str
    text: str
    detail: Mapping[str, Any] = field(default_factory=dict)


class Explainer(Protocol):
    """Writes explanations; `name` is recorded in the output (e.g. 'tokens', 'hf:/path', 'openai:URL#model')."""

    name: str

    def explain(self, records: Sequence[LatentRecord]) -> list[Explanation]:
        """One explanation per record, in order (a backend may batch or parallelise inside)."""
        ...


class Scorer(Protocol):
    """Scores an explanation against held-out contexts it has not seen."""

    name: str

    def detect(self, explanation: Explanation, contexts: Sequence[Context]) -> list[float]:
        """P(the latent fires in the context) for each context, each in [0, 1]."""
        ...

    def fuzz(self, explanation: Explanation, contexts: Sequence[Context], marked: Sequence[Sequence[int]]) -> list[float]:
        """P(the tokens at `marked[i]` of context i are where the latent fires), each in [0, 1]."""
        ...


class BackendError(SaeseedsError):
    """An explainer/scorer backend cannot be used (unreachable endpoint, not a causal LM): the run stops, exit 2."""


class ResponseError(BackendError):
    """One latent's answer from a backend was malformed; `key` names the latent, `completed` what did succeed."""

    def __init__(self, key: str, message: str, completed: Sequence[Explanation] = ()) -> None:
        super().__init__(f"latent {key}: {message}")
        self.key = key
        self.completed = list(completed)
