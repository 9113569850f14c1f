"""The public Python API: what each `saeseeds` verb does, callable from a notebook.

    import saeseeds as ss
    run = ss.train("configs/demo.toml", "runs/demo")       # or a RunConfig
    result = ss.compare("runs/demo/run")                   # one seed set -> CrossSeedResult
    results = ss.compare_all("runs/demo/run")              # every configuration of a run
    analyses = ss.analyze("runs/demo/run", cross=results)  # no re-alignment
"""

from saeseeds.align.cross_seed import CrossSeedResult, SeedSet, StabilityGroups, align_seeds
from saeseeds.align.pair import Alignment, align_pair, align_weights
from saeseeds.align.sharing import SharingRule
from saeseeds.analysis.instability import AnalyzeOptions, ConfigAnalysis
from saeseeds.api.analysis import analyze
from saeseeds.api.comparison import compare, compare_all, load_comparison, save_comparison
from saeseeds.api.discovery import seed_sets
from saeseeds.api.loading import load
from saeseeds.api.pooling import PoolResult, pool
from saeseeds.api.report import write_report
from saeseeds.api.study import study
from saeseeds.api.training import train
from saeseeds.pooling.options import PoolOptions

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
    "load",
    "load_comparison",
    "PoolOptions",
    "PoolResult",
    "pool",
    "write_report",
    "save_comparison",
    "seed_sets",
    "study",
    "train",
]
