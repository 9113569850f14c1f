"""LLM backends for `saeseeds interpret --explainer`: `hf:PATH` (a local causal LM) and `openai:URL#MODEL` (any
OpenAI-compatible chat endpoint). Both write explanations from delphi-style prompts and score detection and
fuzzing by the yes/no probability of their answer (docs/definitions.md, "Interpretability").
"""

from __future__ import annotations

from pathlib import Path

from saeseeds.interpret.interface import BackendError, Explainer, Scorer

SPEC_PREFIXES = ("hf:", "openai:")


def build_backend(spec: str, *, cache_dir: Path | None = None, concurrency: int = 4, max_new_tokens: int = 128,
                  timeout_s: float = 120.0, device: str = "auto", batch_size: int = 8) -> tuple[Explainer, Scorer]:
    """The explainer and scorer (one object) for `spec`: 'hf:PATH' or 'openai:URL[#MODEL]'.

    `cache_dir` (openai only) stores responses so a rerun sends no request (None: no disk cache);
    `concurrency` bounds requests in flight (openai); `device` and `batch_size` apply to hf. A spec that cannot
    be used raises BackendError (one line).
    """
    from saeseeds.interpret.backends.lm import ChatBackend

    if max_new_tokens < 1:
        raise BackendError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if spec.startswith("hf:"):
        from saeseeds.interpret.backends.hf import HFEngine

        engine = HFEngine(spec[3:], device=device, batch_size=batch_size)
    elif spec.startswith("openai:"):
        from saeseeds.interpret.backends.openai import OpenAIEngine

        engine = OpenAIEngine(spec[7:], cache_dir=cache_dir, concurrency=concurrency, timeout_s=timeout_s)
    else:
        raise BackendError(f"--explainer {spec!r}: an LLM backend is 'hf:PATH' or 'openai:URL#MODEL'")
    backend = ChatBackend(engine, max_new_tokens=max_new_tokens)
    return backend, backend


__all__ = ["SPEC_PREFIXES", "build_backend"]
