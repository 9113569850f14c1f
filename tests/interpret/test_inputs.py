"""A study or demo output is read at the end of training: the comparison its record names (relative paths)."""

from __future__ import annotations

from pathlib import Path

import pytest

from saeseeds.errors import CheckpointError, DataError
from saeseeds.interpret.inputs import compare_dir_of
from saeseeds.outputs import mark_output
from saeseeds.records import write_record


def test_a_study_is_read_at_its_last_milestone_and_a_demo_through_its_summary(tmp_path: Path) -> None:
    study = tmp_path / "demo" / "study"
    study.mkdir(parents=True)
    mark_output(study, "study")
    write_record(study / "study.json", "saeseeds.study/1", {"milestones": [
        {"step": 100, "compare": "compare/step00000100"}, {"step": 400, "compare": "compare/step00000400"},
        {"step": 200, "compare": "compare/step00000200"}]})
    assert compare_dir_of(study) == study / "compare" / "step00000400"
    demo = tmp_path / "demo"
    mark_output(demo, "demo")
    write_record(demo / "summary.json", "saeseeds.demo/1", {"outputs": {"compare": "study/compare/step00000400"}})
    assert compare_dir_of(demo) == study / "compare" / "step00000400"


def test_an_unfinished_study_and_other_outputs_are_refused_in_one_line(tmp_path: Path) -> None:
    mark_output(tmp_path, "study")
    with pytest.raises(DataError, match="study.json is missing"):
        compare_dir_of(tmp_path)
    mark_output(tmp_path, "pool")
    with pytest.raises(CheckpointError, match="not a run directory, or a saeseeds compare, study or demo output"):
        compare_dir_of(tmp_path)
