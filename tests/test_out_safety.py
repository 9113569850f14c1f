"""Nothing outside --out is touched, nothing read from a config or record escapes it (reliability campaign 3).

Every case snapshots the sandbox outside the command's --out (names, sizes, mtimes, hashes: tests/helpers/sandbox.py),
runs the command, and checks that nothing there changed, that no traceback was printed, and that a refusal is one
line with exit status 2. Case ids are the campaign's (B19, B38, ...); D-numbers are its defects. Most commands run
in-process (torch already imported); the kill trials run a real subprocess that SIGKILLs itself between the two
renames of an --overwrite swap.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers.sandbox import (
    KILL_AFTER_BACKUP_RENAME,
    KILLED,
    changes,
    run_in_process,
    run_subprocess,
    snapshot,
)
from helpers.synthetic_config import tiny_npy_toml

pytestmark = pytest.mark.usefixtures("one_thread")



@pytest.fixture(scope="module")
def box(tmp_path_factory) -> Path:
    """A sandbox: data.npy, ok.toml, a finished 2-seed run, a user's folder; each case writes under its own --out."""
    from saeseeds.cli import main

    root = tmp_path_factory.mktemp("outsafety")
    rng = np.random.default_rng(0)
    data = rng.standard_normal((2048, 16)).astype(np.float32)
    np.save(root / "data.npy", data)
    data[700] = np.inf  # a training row of the third batch (data.shuffle = false)
    np.save(root / "data_inf.npy", data)
    (root / "ok.toml").write_text(tiny_npy_toml(root / "data.npy", checkpoint_every=2))
    (root / "datadir").mkdir()
    (root / "cfgdir").mkdir()
    (root / "outs").mkdir()
    assert main(["train", str(root / "ok.toml"), "--out", str(root / "run")]) == 0
    foreign = root / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("\\chapter{years of work}\n")
    return root


def run_case(box: Path, argv: list[str], out: Path, capsys):
    """Run `argv` in-process; assert nothing outside `out` changed and no traceback; the result."""
    before = snapshot(box, exclude=[out])
    result = run_in_process(argv, capsys)
    result.assert_no_traceback()
    assert changes(before, snapshot(box, exclude=[out])) == [], result.describe()
    return result


def copy_run(box: Path, name: str) -> Path:
    """A private copy of the finished run."""
    return Path(shutil.copytree(box / "run", box / name, symlinks=True))


# ---------------------------------------------------------------- D3: train --overwrite replaces only a run


def test_b19_overwrite_refuses_a_foreign_folder(box: Path, capsys) -> None:
    """--overwrite on a folder of someone else's files: one line, nothing deleted (it was deleted, rc 0)."""
    out = box / "foreign"
    before = snapshot(out)
    line = run_case(box, ["train", str(box / "ok.toml"), "--out", str(out), "--overwrite"], out, capsys) \
        .assert_refused("train", str(out), "holds no saeseeds run", "replaces only an earlier saeseeds run")
    assert changes(before, snapshot(out)) == [], line


@pytest.mark.parametrize("lookalike", ["run.json", ".state"])
def test_overwrite_refuses_a_folder_that_only_looks_like_a_run(box: Path, capsys, lookalike: str) -> None:
    """Another tool's run.json, or a .state/ of other files, does not make a folder a saeseeds run."""
    out = box / "outs" / f"lookalike{lookalike}"
    out.mkdir()
    if lookalike == "run.json":
        (out / "run.json").write_text('{"tool": "another one", "epochs": 3}\n')
    else:
        (out / ".state").mkdir()
        (out / ".state" / "session.db").write_text("someone else's state\n")
    before = snapshot(out)
    run_case(box, ["train", str(box / "ok.toml"), "--out", str(out), "--overwrite"], out, capsys) \
        .assert_refused("train", str(out), "holds no saeseeds run")
    assert changes(before, snapshot(out)) == []


def test_foreign_folder_refusal_does_not_suggest_overwrite(box: Path, capsys) -> None:
    """Without --overwrite the refusal names the folder and does not offer --overwrite (it would not help)."""
    out = box / "foreign"
    line = run_case(box, ["train", str(box / "ok.toml"), "--out", str(out)], out, capsys) \
        .assert_refused("train", str(out), "holds no saeseeds run")
    assert "--overwrite" not in line


def test_b20_overwrite_refuses_a_run_holding_its_config(box: Path, capsys) -> None:
    """The config (and data) inside the earlier run that --overwrite would delete: refused, both kept."""
    out = copy_run(box, "b20")
    shutil.copy(box / "data.npy", out / "data.npy")
    (out / "my.toml").write_text(tiny_npy_toml(out / "data.npy", checkpoint_every=2))
    before = snapshot(out)
    run_case(box, ["train", str(out / "my.toml"), "--out", str(out), "--overwrite"], out, capsys) \
        .assert_refused("train", str(out / "my.toml"), "inside --out")
    run_case(box, ["train", str(box / "ok.toml"), "--out", str(out), "--overwrite", "--data.path",
                   str(out / "data.npy")], out, capsys).assert_refused("train", "data.path", "inside --out")
    assert changes(before, snapshot(out)) == []


def test_overwrite_replaces_an_earlier_run_whole(box: Path, capsys) -> None:
    """An earlier run is replaced whole (a file added to it goes too); nothing outside it changes."""
    out = copy_run(box, "again")
    (out / "stale.txt").write_text("from the earlier run's folder\n")
    run_case(box, ["train", str(box / "ok.toml"), "--out", str(out), "--overwrite"], out, capsys).assert_ok()
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_b18_overwrite_through_a_symlink_names_it(box: Path, capsys) -> None:
    """--out a link to a run, with --overwrite: one line naming the link (was 'Cannot call rmtree on a symbolic
    link' without a path); the run it points to is untouched."""
    target = copy_run(box, "b18_target")
    link = box / "b18_link"
    link.symlink_to(target, target_is_directory=True)
    before = snapshot(target)
    run_case(box, ["train", str(box / "ok.toml"), "--out", str(link), "--overwrite"], link, capsys) \
        .assert_refused("train", str(link), "symbolic link")
    assert changes(before, snapshot(target)) == []


# ---------------------------------------------------------------- D4-D6: names that become paths


@pytest.mark.parametrize(("case", "hookpoint", "why"), [
    ("B38", "../escape_here/x", "path separator"),
    ("B39", "/abs_escape", "path separator"),
    ("B40", ".state", "starts with a dot"),
    ("B41", "eval", "reserved"),
    ("BX1", "..", "relative link"),
])
def test_hookpoint_that_escapes_or_hides_is_refused(box: Path, capsys, case: str, hookpoint: str, why: str) -> None:
    """data.hookpoint becomes a folder of the run: one that leaves --out, hides or collides is refused up front."""
    out = box / "outs" / case
    run_case(box, ["train", str(box / "ok.toml"), "--out", str(out), "--data.hookpoint", hookpoint], out,
             capsys).assert_refused("train", "data.hookpoint", why)
    assert not out.exists()


def test_dotted_module_name_is_a_valid_hookpoint(box: Path, capsys) -> None:
    """HF module names contain dots: `layers.1.mlp` stays the folder name as it is."""
    out = box / "outs" / "dotted"
    run_case(box, ["train", str(box / "ok.toml"), "--out", str(out), "--data.hookpoint", "layers.1.mlp"], out,
             capsys).assert_ok()
    assert sorted(p.name for p in (out / "layers.1.mlp" / "topk-32").iterdir()) == ["seed0", "seed1"]


def test_b42_export_run_hookpoint_outside_is_refused(box: Path, capsys) -> None:
    """export --format run --hookpoint ../escape_here/y wrote outside --out; now one line, nothing written."""
    seeds = sorted((box / "run" / "activations" / "topk-32").glob("seed*"))
    out = box / "outs" / "B42"
    run_case(box, ["export", *map(str, seeds), "--format", "run", "--hookpoint", "../escape_here/y", "--out",
                   str(out)], out, capsys).assert_refused("export", "--hookpoint", "path separator")
    assert not out.exists()


@pytest.mark.parametrize(("case", "path"), [("B43", "../outside_ck"), ("BX2", "/tmp"), ("BX3", ".state/x/seed0")])
def test_b43_run_json_paths_outside_the_run_are_refused(box: Path, capsys, case: str, path: str) -> None:
    """A run.json listing a checkpoint outside the run (or in a hidden folder): export and compare refuse."""
    run = copy_run(box, f"run_{case}")
    manifest = json.loads((run / "run.json").read_text())
    manifest["saes"][0]["path"] = path
    (run / "run.json").write_text(json.dumps(manifest))
    out = box / "outs" / case
    run_case(box, ["export", str(run), "--out", str(out)], out, capsys) \
        .assert_refused("export", "run.json", "saes[0].path")
    run_case(box, ["compare", str(run), "--out", str(out)], out, capsys) \
        .assert_refused("compare", "run.json", "saes[0].path")
    assert not out.exists()


# ---------------------------------------------------------------- D17: path messages


def test_b14_data_path_a_directory_says_so(box: Path, capsys) -> None:
    """data.path a directory: the line says it is a directory (was 'does not exist')."""
    out = box / "outs" / "B14"
    line = run_case(box, ["train", str(box / "ok.toml"), "--out", str(out), "--data.path", str(box / "datadir")],
                    out, capsys).assert_refused("train", str(box / "datadir"), "directory")
    assert "does not exist" not in line


def test_b47_config_path_a_directory_says_so(box: Path, capsys) -> None:
    """The config path a directory: the line says it is a directory (was 'does not exist')."""
    out = box / "outs" / "B47"
    line = run_case(box, ["train", str(box / "cfgdir"), "--out", str(out)], out, capsys) \
        .assert_refused("train", str(box / "cfgdir"), "directory")
    assert "does not exist" not in line


def test_b59_a_250_character_out(box: Path, capsys) -> None:
    """An --out name of 250 characters: the temporary beside it stays under NAME_MAX (it failed), also on
    --overwrite; nothing is left beside it."""
    out = box / ("n" * 250)
    run_case(box, ["compare", str(box / "run"), "--out", str(out)], out, capsys).assert_ok()
    run_case(box, ["compare", str(box / "run"), "--out", str(out), "--overwrite"], out, capsys).assert_ok()
    assert (out / "summary.json").is_file()


# ---------------------------------------------------------------- D18: a fresh --out that failed


def test_d18_bad_rows_before_the_first_checkpoint_leave_nothing(box: Path, capsys) -> None:
    """inf in a later training batch, no checkpoint committed yet: the --out (and the parent it made) is gone."""
    out = box / "outs" / "D18" / "run"
    run_case(box, ["train", str(box / "ok.toml"), "--out", str(out), "--data.path", str(box / "data_inf.npy"),
                   "--data.shuffle", "false", "--train.checkpoint_every", "100"], out.parent, capsys) \
        .assert_refused("train", "data_inf.npy", "NaN or inf")
    assert not out.parent.exists()


def test_d18_bad_rows_after_a_checkpoint_keep_the_resumable_run(box: Path, capsys) -> None:
    """A checkpoint was committed before the bad batch: the run stays, resumable."""
    out = box / "outs" / "D18b"
    run_case(box, ["train", str(box / "ok.toml"), "--out", str(out), "--data.path", str(box / "data_inf.npy"),
                   "--data.shuffle", "false", "--train.checkpoint_every", "1"], out, capsys) \
        .assert_refused("train", "data_inf.npy")
    assert json.loads((out / "run.json").read_text())["step"] >= 1
    assert (out / ".state" / "trainer.json").is_file()


# ---------------------------------------------------------------- D10: kill between the two renames


@pytest.mark.slow
@pytest.mark.parametrize("verb", ["compare", "analyze", "pool"])
def test_d10_kill_between_the_renames_is_undone_by_the_next_run(box: Path, capsys, verb: str) -> None:
    """SIGKILL right after the old output was moved aside (the new one not yet in): --out was missing with the
    old output under a hidden backup forever. The next run of the verb puts the old output back (then refuses
    without --overwrite, one line) and removes the temporaries; nothing else outside --out changed."""
    out = box / "outs" / f"D10_{verb}"
    run_case(box, [verb, str(box / "run"), "--out", str(out)], out, capsys).assert_ok()
    old = snapshot(out)
    outside = snapshot(box, exclude=[out])
    killed = run_subprocess([verb, str(box / "run"), "--out", str(out), "--overwrite"],
                            prelude=KILL_AFTER_BACKUP_RENAME)
    assert killed.returncode == KILLED, killed.describe()
    litter = sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))
    assert not out.exists() and any(n.endswith(".saeseeds-old") for n in litter), litter
    run_in_process([verb, str(box / "run"), "--out", str(out)], capsys) \
        .assert_refused(verb, str(out), "already holds")
    assert snapshot(out) == old
    assert changes(outside, snapshot(box, exclude=[out])) == []
