"""`torchrun ... -m saeseeds study` trains and aligns over ranks and writes the table one process writes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tests.commands.test_study_cli import CONFIG

from saeseeds.cli import main


@pytest.mark.slow
def test_distributed_study_equals_single_process(tmp_path, run_torchrun) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "acts.npy", (rng.standard_normal((1600, 8)) * (rng.random((1600, 8)) < 0.3)).astype(np.float32))
    config = tmp_path / "study.toml"
    config.write_text(CONFIG.format(path=tmp_path / "acts.npy"))
    args = [str(config), "--quiet", "--study.seeds", "0,1,2", "--train.device", "cpu"]
    assert main(["study", *args, "--out", str(tmp_path / "single")]) == 0
    proc = run_torchrun(["study", *args, "--out", str(tmp_path / "spread")], 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = pd.read_csv(tmp_path / "single" / "table.csv"), pd.read_csv(tmp_path / "spread" / "table.csv")
    assert len(one) == 4  # 2 grid points x 2 milestones
    pd.testing.assert_frame_equal(one, two)
