"""saeseeds.records: the stamp, the schema check, paths relative to the file (absolute ones, from another tree,
read as they are)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import saeseeds as ss
from saeseeds.config import SaeConfig
from saeseeds.errors import DataError
from saeseeds.outputs import check_output_dir, output_kind
from saeseeds.records import read_record, relative_path, resolve_path, stamp, write_record
from saeseeds.sae import SparseAutoencoder, save_sae
from saeseeds.version import __version__


def test_stamp_puts_schema_and_version_first_and_replaces_old_ones() -> None:
    record = stamp("saeseeds.thing/1", {"a": 1, "schema": "x", "saeseeds_version": "0.0.1", "format": "saelens"})
    assert list(record)[:2] == ["schema", "saeseeds_version"]
    assert record == {"schema": "saeseeds.thing/1", "saeseeds_version": __version__, "a": 1, "format": "saelens"}
    with pytest.raises(TypeError):
        stamp("saeseeds.thing/1", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="saeseeds.<kind>/<version>"):
        stamp("thing-1", {})


def test_read_record_checks_the_schema_in_one_line(tmp_path: Path) -> None:
    path = write_record(tmp_path / "r.json", "saeseeds.thing/2", {"a": 1})
    assert read_record(path, "saeseeds.thing/2", "missing")["a"] == 1
    cases = {
        "saeseeds.thing/3": "newer than this saeseeds reads",  # a later saeseeds wrote it
        "saeseeds.other/2": "expected 'saeseeds.thing/2'",
    }
    for schema, message in cases.items():
        write_record(path, schema, {"a": 1})
        with pytest.raises(DataError, match=message) as err:
            read_record(path, "saeseeds.thing/2", "missing")
        assert "\n" not in str(err.value) and str(path) in str(err.value)
    with pytest.raises(DataError, match="^nothing here$"):
        read_record(tmp_path / "absent.json", "saeseeds.thing/2", "nothing here")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot read"):
        read_record(tmp_path / "bad.json", "saeseeds.thing/2", "missing")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="holds a JSON list"):
        read_record(tmp_path / "list.json", "saeseeds.thing/2", "missing")
    # the schema is read under `schema` only (no second spelling)
    (tmp_path / "other.json").write_text(json.dumps({"format": "saeseeds.thing/2", "a": 2}))
    with pytest.raises(DataError, match="schema is None"):
        read_record(tmp_path / "other.json", "saeseeds.thing/2", "missing")


def test_paths_are_stored_relative_to_the_file_and_read_back(tmp_path: Path) -> None:
    base = tmp_path / "out" / "sets" / "x"
    target = tmp_path / "run" / "hook" / "seed0"
    rel = relative_path(target, base)
    assert rel == "../../../run/hook/seed0"
    assert resolve_path(rel, base) == target
    assert relative_path(base, base) == "." and resolve_path(".", base) == base
    # another top-level tree (or drive) than the file's: kept absolute, since the two never move together
    assert relative_path("/elsewhere/run", base) == "/elsewhere/run"
    assert resolve_path("/elsewhere/run", base) == Path("/elsewhere/run")


def test_relative_inputs_are_taken_from_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert relative_path("run/seed0", "cmp/sets/x") == "../../../run/seed0"
    assert resolve_path("../../../run/seed0", tmp_path / "cmp" / "sets" / "x") == tmp_path / "run" / "seed0"


def _with_paths(path: Path, paths: list[str]) -> None:
    """Rewrite a record's `paths` as given (absolute ones: a record that names checkpoints on another tree)."""
    record = json.loads(path.read_text())
    record["paths"] = paths
    path.write_text(json.dumps(record))


def test_a_compare_output_with_absolute_paths_reads(tmp_path: Path) -> None:
    saes = [SparseAutoencoder(SaeConfig(num_latents=24, k=3), 12, generator=torch.Generator().manual_seed(s))
            for s in range(3)]
    seeds = [save_sae(sae, tmp_path / "ck" / f"seed{i}") for i, sae in enumerate(saes)]
    out = tmp_path / "cmp"
    ss.save_comparison(ss.compare_all(seeds), out, figures=False)
    fresh = ss.load_comparison(out)
    assert [Path(p) for p in fresh[0].paths] == seeds
    absolute = [str(p.absolute()) for p in seeds]
    for set_dir in (out / "sets").iterdir():
        _with_paths(set_dir / "cross_seed.json", absolute)
    (old,) = ss.load_comparison(out)
    assert old.paths == absolute and old.shared_fraction_stats() == fresh[0].shared_fraction_stats()
    assert output_kind(out) == "compare"
    check_output_dir(out, "compare", overwrite=True)  # still recognised as an earlier compare output
    # a record of another kind, or one naming its schema under another key, is refused in one line
    for record in ({"schema": "saeseeds.analyze/1"}, {"format": "saeseeds.compare/1"}):
        (out / "summary.json").write_text(json.dumps(record))
        with pytest.raises(DataError, match="expected 'saeseeds.compare/1'"):
            ss.load_comparison(out)


def test_a_cache_manifest_written_before_the_stamp_still_reads(tmp_path: Path) -> None:
    from saeseeds.data.cache import MANIFEST, read_manifest

    (tmp_path / MANIFEST).write_text(json.dumps({"format": "saeseeds-activation-cache", "version": 1, "d_in": {}}))
    assert read_manifest(tmp_path)["d_in"] == {}
    (tmp_path / MANIFEST).write_text(json.dumps({"schema": "saeseeds.cache/1", "d_in": {}}))
    assert read_manifest(tmp_path)["d_in"] == {}
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(DataError, match="not a saeseeds activation cache"):
        read_manifest(tmp_path)
