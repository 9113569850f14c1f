"""`--explainer SPEC` → an (Explainer, Scorer): `tokens` (offline lexical baseline, `backends/tokens.py`), `hf:PATH`
and `openai:URL[#MODEL]` (LLM backends, `backends/__init__.py: build_backend`, imported only when asked for)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saeseeds.errors import ConfigError
from saeseeds.interpret.interface import Explainer, Scorer

ALLOWED = ("tokens (offline lexical baseline), hf:PATH (a local Hugging Face causal LM) or openai:URL[#MODEL] "
           "(an OpenAI-compatible chat endpoint)")


def check_spec(spec: str) -> str:
    """`spec` when it names a backend form; ConfigError in one line listing the allowed forms otherwise."""
    if spec == "tokens" or (spec.startswith(("hf:", "openai:")) and spec.split(":", 1)[1]):
        return spec
    raise ConfigError(f"--explainer {spec!r} is not an explainer (allowed: {ALLOWED})")


def choose(spec: str, *, cache_dir: Path | None = None, **options: Any) -> tuple[Explainer, Scorer]:
    """The explainer and scorer of `spec` (`options` go to the LLM backends: concurrency, device, ...)."""
    check_spec(spec)
    if spec == "tokens":
        from saeseeds.interpret.backends.tokens import build

        return build()
    from saeseeds.interpret.backends import build_backend

    return build_backend(spec, cache_dir=cache_dir, **options)
