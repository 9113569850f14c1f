"""`ss.write_report(path, out=None)`: one self-contained HTML page for any saeseeds output (a run, a comparison, an
analysis, a synthetic experiment, a study, a pool, or a directory holding several), written atomically.

The page itself is built by `saeseeds.report.html`; this module adds what needs the layers below it: the
cross-seed results (`CrossSeedResult.load`) and the top contexts of the latents listed, computed with the
base seed's SAE on the run's stored held-out set.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from saeseeds.errors import ConfigError, DataError, SaeseedsError
from saeseeds.report.html.blocks import Note
from saeseeds.report.html.latents import DEFAULT_CAP

REPORT_FILE = "report.html"
N_CONTEXTS = 5
"""Top contexts shown per latent."""
CONTEXT_TOKENS = 65_536
"""Top contexts come from at most this many held-out tokens (whole chunks) of the run."""
RUN_DEPTH = 6
"""How many levels above a checkpoint its run directory is looked for (milestone copies sit deeper)."""
VERSIONED = ("saeseeds", "torch", "numpy", "scipy", "matplotlib", "jinja2", "transformers")


def _versions_line() -> str:
    found = []
    for name in VERSIONED:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


class _Contexts:
    """Top contexts of chosen latents of a seed set's base seed; the held-out set of each run is read once."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.eval_data: dict[Path, Any] = {}

    def __call__(self, result: Any) -> Any:
        def source(latents: list[int]) -> tuple[Mapping[int, Sequence[Any]], str]:
            if not self.enabled:
                return {}, "Top contexts were not computed (--no-contexts)."
            try:
                return self.compute(result, latents), ""
            except (SaeseedsError, OSError) as err:
                return {}, f"No top contexts: {err}"

        return source

    def compute(self, result: Any, latents: list[int]) -> Mapping[int, Sequence[Any]]:
        import torch

        from saeseeds.analysis.triggers import TopActivations, sparse_from_code, top_contexts
        from saeseeds.device import resolve_device
        from saeseeds.sae import load_sae

        if not result.paths:
            raise DataError("the cross-seed result names no checkpoints")
        checkpoint = Path(result.paths[0])
        if not checkpoint.is_dir():
            raise DataError(f"checkpoint {checkpoint} is not there (moved or deleted)")
        from saeseeds.training.run_dir import Run

        run = Run.containing(checkpoint, depth=RUN_DEPTH)
        if run is None:
            raise DataError(f"{checkpoint} is not inside a saeseeds run (no run.json), so no held-out tokens")
        run_dir = run.path
        if run_dir not in self.eval_data:
            self.eval_data[run_dir] = _stored_eval_data(run)
        data = self.eval_data[run_dir]
        if not data.has_tokens or data.tokenizer is None:
            raise DataError(f"the held-out set of {run_dir} has no token ids or tokenizer (e.g. synthetic data)")
        if result.hookpoint not in data.hookpoints:
            raise DataError(f"hookpoint {result.hookpoint!r} is not in the held-out set of {run_dir}")
        sae = load_sae(checkpoint, device=str(resolve_device(None)))
        top = TopActivations(sae.num_latents, N_CONTEXTS)
        with torch.no_grad():
            for batch in data.batches:
                code = sae.encode(batch.acts[result.hookpoint].to(sae.device))
                top.update(sparse_from_code(code.values, code.indices), batch.positions)
        return top_contexts(top, latents, data.chunks, data.tokenizer.decode, window_before=10, window_after=4)


def _stored_eval_data(run: Any) -> Any:
    """The run's stored held-out set, at most CONTEXT_TOKENS of it (never a new LM pass: that is analyze's job)."""
    from saeseeds.analysis.eval_data import load_eval_data

    if run.held_out_info is None:
        raise DataError(f"{run.path} stored no held-out set (train.store_eval_tokens = 0); "
                        "the contexts would need the language model run again")
    ctx_len = int(run.data.get("ctx_len") or 0)
    max_chunks = max(1, CONTEXT_TOKENS // ctx_len) if ctx_len > 0 else 0
    return load_eval_data(run, need_tokenizer=True, max_chunks=max_chunks)


def _latent_pages(cap: int, contexts: _Contexts, explained: dict[Path, Any] | None = None) -> Any:
    from saeseeds.align.cross_seed import CrossSeedResult
    from saeseeds.report.html.latents import latent_page

    def pages(set_dir: Path) -> list[Any]:
        try:
            result = CrossSeedResult.load(set_dir)
        except SaeseedsError as err:
            return [Note(f"Latents not shown: {err}", "warn")]
        if cap == 0:
            return [Note("Latent pages were left out (--max-latents 0).")]
        try:
            return [latent_page(result, cap=cap, contexts=contexts(result),
                                explanations=(explained or {}).get(Path(set_dir).resolve()))]
        except (KeyError, IndexError, ValueError) as err:  # e.g. frequencies of another length than the latents
            return [Note(f"Latents not shown: {set_dir}: {type(err).__name__}: {err}", "warn")]

    return pages


def _description(kinds: list[str], sections: list[Any]) -> str:
    """The page's opening sentence: what is in it."""
    text = (f"Everything saeseeds wrote under this directory ({', '.join(kinds)}), one section per output; "
            "figures are embedded, so this file is all a reader needs.")
    if sections and sections[0].kind == "headline":
        text = ("The headline first: per configuration, what the seeds share, in numbers and words. Then "
                + text[0].lower() + text[1:])
    if any(sub.kind == "latents" for sec in sections for sub in sec.subsections):
        text += (" Each configuration's latent page lists latents with their partners in the other seeds, "
                 "stability, firing frequency and top contexts; filter it by id or context text.")
    return text


def write_report(path: str | Path, out: str | Path | None = None, *, max_latents: int = DEFAULT_CAP,
           contexts: bool = True) -> Path:
    """Write the report of the output at `path` to `out` (default `<path>/report.html`); returns its path.

    `max_latents` caps the latents listed per configuration (0: no latent pages); `contexts=False` skips the
    top contexts (they need one encode of the held-out set per configuration). An existing `out` is replaced
    only when it is an earlier saeseeds report.
    """
    from saeseeds.report.html.discover import discover, walk
    from saeseeds.report.html.render import Page, check_report_target, render_page, write_page
    from saeseeds.report.html.sections import build_sections

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such directory")
    if not path.is_dir():
        raise DataError(f"{path}: is a file; give the directory of a saeseeds output")
    if max_latents < 0:
        raise ConfigError(f"--max-latents: {max_latents} must be ≥ 0")
    target = Path(out) if out is not None else path / REPORT_FILE
    check_report_target(target)
    root = discover(path)
    if root is None:
        raise DataError(f"{path} holds no saeseeds output (no run.json and no .saeseeds-output.json marker "
                        "in it or below it)")
    from saeseeds.report.html.interpret import (
        explanation_index,  # interpret outputs' explanations, per result
    )

    sections = build_sections(root, _latent_pages(max_latents, _Contexts(contexts), explanation_index(walk(root))))
    kinds = sorted({o.kind for o in walk(root) if o.kind != "collection"})
    page = Page(
        title=f"{path.resolve().name}: saeseeds {root.kind} report",
        root=str(path.resolve()),
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        versions_line=_versions_line(),
        description=_description(kinds, sections),
        sections=sections,
    )
    return write_page(target, render_page(page))
