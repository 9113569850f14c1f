"""analyze writes the same JSON tables as before the typed-results refactor: a tiny synthetic run's outputs are
compared with a golden copy captured from the earlier code (timings and the version stamp aside).

Regenerate (only when an output is meant to change, and say so in docs/formats.md):
`python tests/analysis/test_golden_outputs.py` from the repository root.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden" / "analyze_synthetic.json"
TINY = """
[data]
source = "synthetic"
hookpoint = "synthetic"

[synthetic]
d_in = 16
num_features = 40
num_ambiguous_groups = 1
num_control_groups = 1
num_identifiable_groups = 1
group_rank = 3
group_firing_prob = 0.2
max_firing_prob = 0.3

[train]
seeds = [0, 1, 2]
batch_size = 256
num_tokens = 2560
eval_tokens = 1024
lr = 3e-3
lr_warmup_steps = 2
device = "cpu"
progress = false

[[sae]]
architecture = "topk"
num_latents = 24
k = 4
"""
UNSTABLE_KEYS = {"timings_s", "seconds", "saeseeds_version"}
"""Wall-clock timings and the package version: the only values that may differ between two identical analyses."""

pytestmark = pytest.mark.usefixtures("one_thread")


def analyze_outputs(root: Path) -> dict[str, Any]:
    """Train the tiny run under `root`, analyze it into `root/an`, and return every JSON file written, by path."""
    import saeseeds as ss
    from saeseeds.config import load_config
    from saeseeds.data.synthetic import build_synthetic_source
    from saeseeds.training import train_run

    (root / "tiny.toml").write_text(TINY)
    cfg = load_config(root / "tiny.toml", [])
    train_run(cfg, build_synthetic_source(cfg), root / "run")
    ss.analyze(root / "run", options=ss.AnalyzeOptions(n_random=19, max_tokens=0), out=root / "an")
    return {str(p.relative_to(root / "an")): _strip(json.loads(p.read_text()))
            for p in sorted((root / "an").rglob("*.json"))}


def _strip(value: Any) -> Any:
    """The record without the values that may differ between runs of the same analysis (UNSTABLE_KEYS)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in UNSTABLE_KEYS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _differences(got: Any, want: Any, where: str = "") -> list[str]:
    """Where two JSON values differ: keys and types exactly, floats to 1e-6 relative (other CPUs round otherwise)."""
    if isinstance(want, dict) and isinstance(got, dict):
        if list(got) != list(want):
            return [f"{where}: keys {list(got)} != {list(want)}"]
        return [d for k in want for d in _differences(got[k], want[k], f"{where}/{k}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return [f"{where}: length {len(got)} != {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in _differences(g, w, f"{where}[{i}]")]
    if isinstance(want, float) and isinstance(got, float):
        same = math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-12)
        return [] if same else [f"{where}: {got!r} != {want!r}"]
    return [] if (type(got), got) == (type(want), want) else [f"{where}: {got!r} != {want!r}"]


def test_analyze_writes_the_golden_tables(tmp_path: Path) -> None:
    got = analyze_outputs(tmp_path)
    want = json.loads(GOLDEN.read_text())
    assert list(got) == list(want)
    problems = _differences(got, want)
    assert not problems, "\n".join(problems[:20])


def test_the_comparison_sees_a_changed_value() -> None:
    want = json.loads(GOLDEN.read_text())
    changed = json.loads(GOLDEN.read_text())
    claims = changed["synthetic/topk-24/claims.json"]["unstable_rarer"]
    claims["p_value"] = (claims["p_value"] or 0.0) + 0.01
    assert _differences(changed, want)
    changed = json.loads(GOLDEN.read_text())
    changed["synthetic/topk-24/stability.json"]["extra"] = 1
    assert _differences(changed, want)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        outputs = analyze_outputs(Path(tmp))
    GOLDEN.write_text(json.dumps(outputs, indent=1, sort_keys=False) + "\n")
    print(f"wrote {GOLDEN} ({len(outputs)} files)", file=sys.stderr)
