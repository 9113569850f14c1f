"""Studies: a grid of SAE configurations (sizes, k, architectures, layers) over seeds and training milestones.

The pure parts live here (grid expansion, aggregation of stored cross-seed results, the table, the figures); the
orchestration that trains and compares is `saeseeds.api.study` (`ss.study`, `saeseeds study`).
"""

from saeseeds.study.grid import GridPoint, grid_points, pass_configs
from saeseeds.study.table import write_table

__all__ = ["GridPoint", "grid_points", "pass_configs", "write_table"]
