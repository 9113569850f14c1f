"""The analyses of one configuration, one module each (stability, triggers, ablation, subspaces, claims).

Each module holds a typed result (a dataclass, written as `<name>.json` by `seam.write_tables`) and an analysis
with the `update(batch)` / `result(done)` seam (`seam.Analysis`); `saeseeds.analysis.instability.ANALYSES` lists
them, and `analyze_config` composes them.
"""
