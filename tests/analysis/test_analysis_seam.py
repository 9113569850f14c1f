"""The seam of the analyses of one configuration: an analysis plugged into `ANALYSES` sees every batch once and gives
its result after what it needs; results are written by their fields (`as_record`), less internal and unset ones."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from saeseeds.align.cross_seed import StabilityGroups
from saeseeds.analysis import instability
from saeseeds.analysis.instability import AnalyzeOptions, analyze_config, in_order
from saeseeds.analysis.tables.seam import Batch, Inputs, as_record, internal, optional, write_tables
from saeseeds.config import SaeConfig
from saeseeds.data.types import EvalBatch, EvalData
from saeseeds.errors import DataError
from saeseeds.sae.model import SparseAutoencoder

N = 8


class _Cross:
    """Stand-in cross-seed result: latents 0-3 stable in every seed, 4-7 unstable."""

    num_seeds, num_latents, digests = 2, [N, N], []

    def with_rule(self, rule: Any) -> _Cross:
        return self

    def groups(self) -> list[StabilityGroups]:
        stab = np.array([1.0] * 4 + [0.0] * 4)
        return [StabilityGroups(stab, stab == 1.0, stab == 0.0, 1) for _ in range(2)]


def _case() -> tuple[list[SparseAutoencoder], EvalData]:
    g = torch.Generator().manual_seed(0)
    saes = []
    for _ in range(2):
        sae = SparseAutoencoder(SaeConfig(architecture="relu", num_latents=N), N)
        with torch.no_grad():
            sae.W_dec.copy_(torch.eye(N))
            sae.encoder.weight.copy_(torch.eye(N))
            sae.encoder.bias.zero_()
            sae.b_dec.zero_()
        saes.append(sae.eval())
    acts = torch.rand(600, N, generator=g) * (torch.rand(600, N, generator=g) < 0.3)
    return saes, EvalData([EvalBatch({"h": acts[i : i + 200]}) for i in range(0, 600, 200)], ["h"])


@dataclass
class RowCount:
    rows: int
    alive_seen: int
    note: str | None = optional()
    batches: list[int] = internal(default_factory=list)


class RowCountAnalysis:
    """A new analysis: counts the rows it is shown, and reads the triggers' result (what it `needs`)."""

    name: ClassVar[str] = "row_count"
    needs: ClassVar[tuple[str, ...]] = ("triggers",)

    def __init__(self, inputs: Inputs) -> None:
        self.sizes: list[int] = []

    def update(self, batch: Batch) -> None:
        assert len(batch.codes) == 2 and batch.codes[0].code.values.shape[0] == batch.x.shape[0]
        self.sizes.append(int(batch.x.shape[0]))

    def result(self, done: Any) -> RowCount:
        return RowCount(sum(self.sizes), int(done.triggers.alive[0].sum()), batches=self.sizes)


def test_an_analysis_added_to_the_registry_sees_every_batch_once_and_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(instability, "ANALYSES", (RowCountAnalysis, *instability.ANALYSES))  # first: needs moves it
    saes, data = _case()
    res = analyze_config("h", "relu", [0, 1], saes, data, AnalyzeOptions(n_random=9, lm_loss=False, alternate=False),
                         _Cross())  # type: ignore[arg-type]
    counted = res.row_count  # type: ignore[attr-defined]
    assert counted.rows == 600 == res.triggers.stats[0].tokens_seen and counted.batches == [200, 200, 200]
    assert counted.alive_seen == int(res.triggers.alive[0].sum()) > 0
    assert list(res.timings_s) == ["encode", "triggers", "row_count", "stability", "ablation", "subspaces", "claims"]
    assert write_tables(res, ["row_count"], tmp_path) == ["row_count.json"]
    written = json.loads((tmp_path / "row_count.json").read_text())
    assert written["schema"] == "saeseeds.row_count/1" and written["rows"] == 600
    assert "note" not in written and "batches" not in written  # unset optional, internal: not written


def test_results_are_written_by_their_fields_in_order() -> None:
    assert as_record(RowCount(3, 1, note="x", batches=[3])) == {"rows": 3, "alive_seen": 1, "note": "x"}
    assert list(as_record(RowCount(3, 1))) == ["rows", "alive_seen"]


def test_analyses_that_need_each_other_are_refused() -> None:
    class A:
        name, needs = "a", ("b",)

    class B:
        name, needs = "b", ("a",)

    with pytest.raises(DataError, match="need each other"):
        in_order([A(), B()])
    assert [a.name for a in in_order([RowCountAnalysis.__new__(RowCountAnalysis), _Triggers()])] == ["triggers",
                                                                                                       "row_count"]


class _Triggers:
    name, needs = "triggers", ()
