"""saeseeds: train sparse autoencoders over many seeds on one data stream and find which features are real.

`import saeseeds as ss` gives the Python API (`ss.train`, `ss.load`, `ss.compare`, `ss.analyze`, ...; see
`saeseeds.api`). The names are resolved on first use so that `import saeseeds` (and the CLI) start fast.
"""

from __future__ import annotations

from typing import Any

from saeseeds.version import __version__  # noqa: F401  (re-exported)

_API = (
    "Alignment", "AnalyzeOptions", "ConfigAnalysis", "CrossSeedResult", "SeedSet", "SharingRule",
    "StabilityGroups", "align_pair", "align_weights", "analyze", "compare", "compare_all", "align_seeds",
    "load", "load_comparison", "PoolOptions", "PoolResult", "pool", "save_comparison", "seed_sets",
    "study", "train", "write_report",
)


def __getattr__(name: str) -> Any:
    """Resolve the public API lazily from `saeseeds.api`."""
    if name in _API:
        from saeseeds import api

        return getattr(api, name)
    raise AttributeError(f"module 'saeseeds' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
