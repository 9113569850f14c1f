"""Time `saeseeds analyze` stage by stage on a run and print its claim verdicts (CPU or GPU as available).

Usage: PYTHONPATH=src python benchmarks/analyze_bench.py RUN_DIR [extra analyze flags...]
Prints a table (configuration × stage seconds) and writes benchmarks/out/analyze_bench.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from saeseeds.cli import main as cli_main
from saeseeds.records import relative_path, write_record

STAGES = ("stability", "triggers", "ablation", "subspaces", "contexts")


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    run_dir = Path(sys.argv[1])
    out_root = Path(__file__).parent / "out"
    out = out_root / f"analyze_{run_dir.name}"
    t0 = time.perf_counter()
    rc = cli_main(["analyze", str(run_dir), "--out", str(out), "--quiet", "--overwrite", *sys.argv[2:]])
    total = time.perf_counter() - t0
    if rc:
        return rc
    summary = json.loads((out / "analysis.json").read_text())
    print(f"{'configuration':<44}" + "".join(f"{s:>11}" for s in STAGES) + f"{'total':>9}")
    for key, cfg in summary["configs"].items():
        t = cfg["timings_s"]
        print(f"{key:<44}" + "".join(f"{t.get(s, 0.0):>10.1f}s" for s in STAGES) + f"{cfg['seconds']:>8.1f}s")
    print(f"whole command (incl. evaluation forward, loading, figures): {total:.1f}s")
    print()
    for key, cfg in summary["configs"].items():
        print(key)
        for claim, verdict in cfg["claims"].items():
            state = {True: "holds", False: "does not hold", None: "undetermined"}[verdict["holds"]]
            numbers = {k: v for k, v in verdict.items() if k not in ("holds", "rule", "sizes")}
            print(f"  {claim:<34} {state:<14} {json.dumps(numbers, default=str)[:300]}")
    write_record(out_root / "analyze_bench.json", "saeseeds.analyze_bench/1",
                 {**summary, "run_dir": relative_path(run_dir, out_root), "total_s": total})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
