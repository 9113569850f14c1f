"""The public Python API: what each `saeseeds` verb does, callable from a notebook.

    import saeseeds as ss
    run = ss.train("configs/demo.toml", "runs/demo")       # or a RunConfig
    result = ss.compare("runs/demo/run")                   # one seed set -> CrossSeedResult
    results = ss.compare_all("runs/demo/run")              # every configuration of a run
    analyses = ss.analyze("runs/demo/run", cross=results)  # no re-alignment
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Resolved on first use: a verb that needs one module of the API (`compare` needs `api.comparison`) must not
# import the others (pooling pulls in scipy.stats, the report jinja2 and matplotlib): a cold start is seconds.
_WHERE = {
    "CrossSeedResult": "saeseeds.align.cross_seed", "SeedSet": "saeseeds.align.cross_seed",
    "StabilityGroups": "saeseeds.align.cross_seed", "align_seeds": "saeseeds.align.cross_seed",
    "Alignment": "saeseeds.align.pair", "align_pair": "saeseeds.align.pair",
    "align_weights": "saeseeds.align.pair", "SharingRule": "saeseeds.align.sharing",
    "AnalyzeOptions": "saeseeds.analysis.instability", "ConfigAnalysis": "saeseeds.analysis.instability",
    "analyze": "saeseeds.api.analysis", "compare": "saeseeds.api.comparison",
    "compare_all": "saeseeds.api.comparison", "load_comparison": "saeseeds.api.comparison",
    "save_comparison": "saeseeds.api.comparison", "seed_sets": "saeseeds.api.discovery",
    "load": "saeseeds.api.loading", "PoolResult": "saeseeds.api.pooling", "pool": "saeseeds.api.pooling",
    "write_report": "saeseeds.api.report", "study": "saeseeds.api.study", "train": "saeseeds.api.training",
    "synthetic": "saeseeds.api.synthetic_experiment",
    "PoolOptions": "saeseeds.pooling.options",
    "interpret": "saeseeds.api.interpret", "InterpretResult": "saeseeds.api.interpret",
    "InterpretOptions": "saeseeds.interpret.pipeline", "SamplingOptions": "saeseeds.interpret.sampling",
}


def __getattr__(name: str) -> Any:
    """Resolve a public name from the module that defines it, on first use."""
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'saeseeds.api' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "Alignment",
    "AnalyzeOptions",
    "ConfigAnalysis",
    "CrossSeedResult",
    "SeedSet",
    "SharingRule",
    "StabilityGroups",
    "align_pair",
    "align_weights",
    "analyze",
    "compare",
    "compare_all",
    "align_seeds",
    "interpret",
    "InterpretOptions",
    "InterpretResult",
    "SamplingOptions",
    "load",
    "load_comparison",
    "PoolOptions",
    "PoolResult",
    "pool",
    "write_report",
    "save_comparison",
    "seed_sets",
    "study",
    "synthetic",
    "train",
]
