"""The output directory of `saeseeds pool` (schema `saeseeds.pooling/1`, docs/formats.md): pool.json, clusters.npz,
the pooled SAE, each split's halves and the compute-matched baseline as sparsify-layout checkpoints (with where
their latents came from in saeseeds.json), and the figures, drawn by the injected `draw`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from saeseeds.align.cross_seed import CrossSeedResult
from saeseeds.atomic import atomic_dir, atomic_write_npz
from saeseeds.outputs import mark_output
from saeseeds.pooling.clusters import Clusters
from saeseeds.pooling.experiment import PoolResult
from saeseeds.records import relative_path, write_record
from saeseeds.sae import save_sae
from saeseeds.sae.checkpoint import update_checkpoint_extra
from saeseeds.sae.model import SparseAutoencoder

FORMAT = "saeseeds.pooling/1"
"""pool.json's schema."""
KIND = "pool"
"""The output marker of a pool directory (`saeseeds.outputs`)."""


def write_pool(out: Path, res: PoolResult, result: CrossSeedResult, data: dict[str, Any], *,
               draw: Callable[[dict[str, Any], Clusters, np.ndarray, Path], list[Path]] | None = None) -> None:
    """Everything `saeseeds pool` built and measured into `out`, built aside and swapped in whole (`data`: run.json's
    data section; `draw`: the report's figure drawer, injected, `report.pool_plots.plot_pool`)."""
    trained, scores, hookpoint = res.trained, res.scores, result.hookpoint
    assert trained is not None and scores is not None, "run_pool fills both"
    model = str(data.get("model", ""))
    provenance = {"schema": FORMAT, "run_dir": res.record["run_dir"], "config": result.label,
                  "seeds": list(result.names), "digests": list(result.digests),
                  "options": res.record["options"], "fit": res.record["fit"]}

    def save(sae: SparseAutoencoder, path: Path, seed: int | None, extra: dict[str, Any] | None) -> None:
        save_sae(sae, path, hookpoint=hookpoint, model=model, seed=seed, input_scale=trained.scale, data=data)
        if extra is not None:  # a normal checkpoint whose saeseeds.json also records where its latents came from
            update_checkpoint_extra(path, pooling=extra | {"run_dir": relative_path(extra["run_dir"], path)})

    with atomic_dir(out) as tmp:
        mark_output(tmp, KIND)
        c = res.clusters
        atomic_write_npz(tmp / "clusters.npz", members=c.members, support=c.support, edges=c.edges, weight=c.weight,
                         contribution=scores, chosen=res.chosen.astype(np.int64))
        save(trained.pooled, tmp / "pooled", None, provenance | {"from": "every seed"})
        for k, (a, b) in enumerate(trained.splits):
            row = res.record["splits"][k]
            save(a, tmp / "splits" / str(k) / "a", None, provenance | {"seeds": row["a"], "fit": row["fit"]["a"]})
            save(b, tmp / "splits" / str(k) / "b", None, provenance | {"seeds": row["b"], "fit": row["fit"]["b"]})
        baseline = res.record.get("baseline") or {}
        for sae, seed in zip(trained.baseline, baseline.get("seeds", [])):
            save(sae, tmp / "baseline" / f"seed{seed}", seed, None)
        drawn = draw(res.record, c, res.chosen, tmp / "figures") if draw is not None else []
        res.record["figures"] = [str(p.relative_to(tmp)) for p in drawn]
        write_record(tmp / "pool.json", FORMAT, _on_disk(res.record, tmp))  # tmp lies beside out


def _on_disk(record: dict[str, Any], base: Path) -> dict[str, Any]:
    """pool.json as stored in `base`: `run_dir` and the cross-seed checkpoint paths relative to it."""
    cross = record["cross_seed"] | {"paths": [relative_path(p, base) for p in record["cross_seed"]["paths"]]}
    return record | {"run_dir": relative_path(record["run_dir"], base), "cross_seed": cross}
