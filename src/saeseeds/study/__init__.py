"""Studies: a grid of SAE configurations (sizes, k, architectures, layers) over seeds and training milestones,
trained in lockstep, compared once per milestone, and aggregated into one table and the papers' figures."""

from saeseeds.study.grid import GridPoint, grid_points, pass_configs
from saeseeds.study.runner import FORMAT, KIND, StudyResult, run_study

__all__ = ["FORMAT", "KIND", "GridPoint", "StudyResult", "grid_points", "pass_configs", "run_study"]
