"""A configuration's latent page: the base seed's latents with their partner in every other seed (decoder
cosine, shared or not), stability, firing frequency and top contexts.

The page lists at most `cap` latents per configuration: half of them the most stable, half the least stable of
the latents that fire (ties broken by higher frequency), since those are the ones a reader compares; the note
above the list says how many there are in all and which were chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from saeseeds.report.html.blocks import Context, LatentRow, Latents, Partner, fmt

DEFAULT_CAP = 100
"""Latents listed per configuration by default (`saeseeds report --max-latents`)."""


def choose_latents(stability: np.ndarray, frequency: np.ndarray | None, cap: int) -> tuple[list[int], str]:
    """The latents to list (most stable first, then least stable) and a sentence saying which and why."""
    n = int(stability.shape[0])
    alive = np.ones(n, dtype=bool) if frequency is None else frequency > 0
    idx = np.flatnonzero(alive)
    freq = np.zeros(n) if frequency is None else frequency
    order = idx[np.lexsort((-freq[idx], -stability[idx]))]  # most stable first, frequent first among ties
    dead = n - int(alive.sum())
    dead_text = f" ({dead} never fired on the held-out tokens and are left out)" if frequency is not None else ""
    if order.size <= cap:
        return order.tolist(), f"All {order.size} firing latents of {n}{dead_text}, most stable first."
    top = order[: cap - cap // 2]
    rev = idx[np.lexsort((-freq[idx], stability[idx]))]
    taken = set(top.tolist())
    bottom = [i for i in rev.tolist() if i not in taken][: cap // 2]
    text = (f"The {len(top)} most stable and the {len(bottom)} least stable of {order.size} firing latents "
            f"(of {n}{dead_text}); at most {cap} are listed per configuration to keep this page small "
            "(saeseeds report --max-latents).")
    return top.tolist() + bottom, text


def _contexts(examples: Sequence[Any]) -> list[Context]:
    out = []
    for ex in examples:
        tokens = [t.replace("\n", "⏎") for t in ex.tokens]
        out.append(Context(fmt(float(ex.activation)), "".join(tokens[: ex.marked]), tokens[ex.marked],
                           "".join(tokens[ex.marked + 1:])))
    return out


ContextSource = Callable[[list[int]], tuple[Mapping[int, Sequence[Any]], str]]
"""chosen latents → (latent → top contexts, a note saying why there are none, or "")."""


def explained_text(row: Mapping[str, str] | None) -> str:
    """An interpret output's explanation of a latent, with its detection score when it was scored."""
    if not row:
        return ""
    text = row.get("explanation", "") or row.get("note", "")
    if row.get("detection_auroc"):
        text += f" · detection AUROC {fmt(float(row['detection_auroc']))}"
        if row.get("detection_balanced_accuracy"):
            text += f", balanced accuracy {fmt(float(row['detection_balanced_accuracy']))}"
    return text


def latent_page(result: Any, *, cap: int = DEFAULT_CAP, frequency: np.ndarray | None = None,
                contexts: ContextSource | None = None, base: int = 0,
                explanations: tuple[str, Mapping[tuple[str, int], Mapping[str, str]]] | None = None) -> Latents:
    """The latent page of a cross-seed result (`saeseeds.align.cross_seed.CrossSeedResult`) for seed `base`.

    `frequency` defaults to the result's stored firing frequencies; `contexts` gives the chosen latents' top
    contexts (`saeseeds.analysis.triggers.ContextExample`) or a note saying why there are none; `explanations`
    (explainer label, (seed name, latent) → interpret row) puts the base seed's interpreted latents first and shows
    every explanation and score, the partners' too.
    """
    stability = np.asarray(result.stability(base), dtype=np.float64)
    if frequency is None and len(result.frequencies) > base:
        frequency = result.frequencies[base]
    group = result.groups()[base]
    chosen, note = choose_latents(stability, frequency, cap)
    explainer, explained = explanations if explanations is not None else ("", {})
    scored = sorted(lat for (seed, lat), row in explained.items()
                    if seed == result.names[base] and row.get("role") == "sampled")
    if scored:
        chosen = scored + [lat for lat in chosen if lat not in set(scored)][: max(0, cap - len(scored))]
        note = (f"The {len(scored)} latents of this seed that `saeseeds interpret` scored come first, with their "
                f"explanations; then: {note}")
    others = [j for j in range(result.num_seeds) if j != base]
    found, contexts_note = contexts(chosen) if contexts is not None else ({}, "no contexts were asked for")
    rows = []
    for lat in chosen:
        partners = []
        for j in others:
            al = result.alignments[(base, j)]
            partner = int(al.dec_partner[lat])
            partners.append(Partner(result.names[j], "—" if partner < 0 else str(partner),
                                    fmt(float(al.dec_cos[lat])), bool(al.shared[lat]),
                                    fmt(float(al.dec_max_cos[lat])),
                                    explained_text(explained.get((result.names[j], partner)))))
        kind = "stable" if group.stable[lat] else "unstable" if group.unstable[lat] else "between"
        ctx = _contexts(found.get(lat, ()))
        freq = "—" if frequency is None else fmt(float(frequency[lat]))
        search = " ".join([str(lat), kind, *(c.before + c.token + c.after for c in ctx)]).lower()
        expl = explained_text(explained.get((result.names[base], lat)))
        rows.append(LatentRow(lat, kind, fmt(float(stability[lat])), freq, partners, ctx,
                              f"{search} {expl.lower()}".strip(), expl))
    label = result.label or result.sae_name or "configuration"
    return Latents(label, "", result.names[base], note, rows, contexts_note, explainer=explainer if explained else "")
