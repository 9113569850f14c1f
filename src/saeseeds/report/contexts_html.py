"""A self-contained HTML page of top-activating contexts for chosen latents (e.g. least and most stable).

All text from the corpus or tokenizer is HTML-escaped; the activating token is wrapped in <mark>.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from saeseeds.analysis.triggers import ContextExample
from saeseeds.atomic import atomic_write_text

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
.latent { margin: 1em 0 1.5em; }
.meta { color: #555; font-size: 0.9em; }
.ctx { font-family: ui-monospace, monospace; white-space: pre-wrap; margin: 0.15em 0; }
.act { display: inline-block; width: 5em; color: #777; }
mark { background: #ffd54f; font-weight: bold; }
"""


@dataclass(frozen=True)
class LatentSection:
    """One latent to show: its id, a one-line description of its statistics, and its contexts."""

    latent: int
    summary: str
    contexts: Sequence[ContextExample]


def _render_context(ex: ContextExample) -> str:
    parts = []
    for i, tok in enumerate(ex.tokens):
        text = html.escape(tok.replace("\n", "⏎"))
        parts.append(f"<mark>{text}</mark>" if i == ex.marked else text)
    return f'<div class="ctx"><span class="act">{ex.activation:.3g}</span>{"".join(parts)}</div>'


def render_contexts_page(title: str, groups: Mapping[str, Sequence[LatentSection]]) -> str:
    """HTML text of the page: one heading per group (e.g. "least stable"), one block per latent."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, sections in groups.items():
        body.append(f"<h2>{html.escape(heading)}</h2>")
        if not sections:
            body.append("<p>(none)</p>")
        for sec in sections:
            body.append('<div class="latent">')
            body.append(f"<h3>latent {sec.latent}</h3><div class=\"meta\">{html.escape(sec.summary)}</div>")
            if not sec.contexts:
                body.append('<div class="meta">never fired on the evaluation tokens</div>')
            body.extend(_render_context(ex) for ex in sec.contexts)
            body.append("</div>")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_contexts_page(path: str | Path, title: str, groups: Mapping[str, Sequence[LatentSection]]) -> Path:
    """Write the page atomically."""
    atomic_write_text(path, render_contexts_page(title, groups))
    return Path(path)
