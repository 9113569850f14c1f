"""`Run`: a run directory opened once. Its names are defined once (`saeseeds.run_layout`), it is found from a
checkpoint inside it, it reads run.json once for a whole `analyze`, and its held-out set is checked when read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import saeseeds as ss
from saeseeds.config import DataConfig, RunConfig, SaeConfig, TrainConfig
from saeseeds.data.types import SourcePair
from saeseeds.errors import CheckpointError
from saeseeds.run_layout import (
    EVAL_DIR,
    LOCK_FILE,
    MANIFEST,
    METRICS,
    MILESTONES,
    POINTER,
    STATE_DIR,
)
from saeseeds.training import train_run
from saeseeds.training.run_dir import Run

SRC = Path(__file__).resolve().parents[2] / "src" / "saeseeds"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seeds of a 16-latent TopK SAE on 8-d random rows, the held-out set stored."""
    x = torch.randn(64 * 4 + 150, 8, generator=torch.Generator().manual_seed(2)) * 5
    train = TrainConfig(seeds=[0, 1], batch_size=64, num_tokens=64 * 4, progress=False)
    cfg = RunConfig(data=DataConfig(source="npy"), train=train,
                    saes=[SaeConfig(architecture="topk", num_latents=16, k=3)])
    out = tmp_path_factory.mktemp("run") / "run"
    train_run(cfg, SourcePair(list(x[:-150].split(64)), [x[-150:-50], x[-50:]], {"source": "test"}), out)
    return out


def test_a_folder_without_run_json_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"is not a saeseeds run directory: run\.json is missing") as err:
        Run.open(tmp_path)
    assert "\n" not in str(err.value)
    (tmp_path / MANIFEST).write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="should hold a JSON object"):
        Run.open(tmp_path)


def test_the_run_of_a_checkpoint_is_found_from_inside(run_dir: Path, tmp_path: Path) -> None:
    run = Run.open(run_dir)
    checkpoint = run.checkpoints()[0].path
    found = Run.containing(checkpoint)
    assert found is not None and found.path == run_dir.resolve() and found.manifest == run.manifest
    assert Run.containing(checkpoint, depth=1) is None  # the run is three levels up
    assert Run.containing(tmp_path) is None and Run.containing(tmp_path / "absent") is None


def test_seed_sets_and_layout(run_dir: Path) -> None:
    run = Run.open(run_dir)
    (one,) = run.seed_sets()
    assert one == ss.seed_sets(run_dir)[0] and one.names == ("seed0", "seed1") and one.run_dir == run_dir
    assert run.milestone(5) == run_dir / MILESTONES / "step00000005"
    assert run.metrics_path == run_dir / METRICS and any(r.get("kind") == "eval" for r in run.metrics())
    assert run.input_scale(one.hookpoint) > 0 and run.complete
    with pytest.raises(CheckpointError, match="no input_scale for hookpoint 'nope'"):
        run.input_scale("nope")
    assert run.latent_frequency(one.hookpoint, one.sae_name, 0).shape == (16,)


def test_seed_sets_carry_the_stored_frequencies_and_compare_uses_them(run_dir: Path, tmp_path: Path) -> None:
    """The run reads eval/latents.safetensors once for all its seed sets; compare takes each seed's frequencies
    from its set (no second reading); a set moved to other checkpoints (a milestone) must drop them."""
    import dataclasses

    import numpy as np

    from saeseeds.training.run_dir import load_latent_frequencies, read_latent_frequencies

    run = Run.open(run_dir)
    (one,) = run.seed_sets()
    stored = [load_latent_frequencies(run_dir, one.hookpoint, one.sae_name, s) for s in (0, 1)]
    assert all(f is not None for f in stored) and len(read_latent_frequencies(run_dir)) == 2
    assert all(np.array_equal(a, b) for a, b in zip(one.frequencies, stored, strict=True))
    (result,) = ss.compare_all([one])
    assert all(np.array_equal(a, b) for a, b in zip(result.frequencies, stored, strict=True))
    assert dataclasses.replace(one, frequencies=()) == one  # frequencies do not take part in a set's identity
    bare = dataclasses.replace(one, run_dir=None, frequencies=())
    assert ss.compare_all([bare])[0].frequencies == [None, None]
    assert read_latent_frequencies(tmp_path) == {}  # a run without the file: none, not an error


def test_milestone_seed_sets_do_not_borrow_the_final_frequencies(run_dir: Path, tmp_path: Path) -> None:
    import shutil

    from saeseeds.api.study import _seed_sets

    shutil.copytree(run_dir, tmp_path / "run")
    run = Run.open(tmp_path / "run")
    (final,) = _seed_sets([run], 4, 4)
    assert final.frequencies and all(f is not None for f in final.frequencies)
    for s in (0, 1):  # a milestone at step 2 holding copies of the checkpoints
        shutil.copytree(run.checkpoints()[s].path, run.milestone(2) / one_path(run, s))
    (early,) = _seed_sets([run], 2, 4)
    assert early.frequencies == () and early.run_dir is None and early.paths[0].is_relative_to(run.milestone(2))


def one_path(run: Run, seed: int) -> Path:
    """A checkpoint's place inside the run (the same inside a milestone folder)."""
    return run.checkpoints()[seed].path.relative_to(run.path)


def test_analyze_reads_run_json_once(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every stage of analyze works from the one opened run: run.json is read from disk once (it was read five
    times when each stage re-opened the directory)."""
    reads: list[Path] = []
    original = Path.read_text

    def counting(self: Path, *args, **kwargs) -> str:
        if self.name == MANIFEST:
            reads.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    opts = ss.AnalyzeOptions(n_random=2, lm_loss=False, max_tokens=0)
    (analysis,) = ss.analyze(run_dir, options=opts)
    assert analysis.seeds == [0, 1]
    assert len(reads) == 1, reads


def test_an_edited_held_out_set_is_refused_wherever_it_is_read(run_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    acts = next((copy / EVAL_DIR / "acts").iterdir())
    data = bytearray(acts.read_bytes())
    data[-1] ^= 0xFF
    acts.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="not the one training wrote"):
        Run.open(copy).held_out_batches()


def _module_constants(path: Path) -> dict[str, str]:
    """Module-level `NAME = "text"` assignments of one file."""
    out = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = node.value.value
    return out


def test_each_run_file_name_is_defined_once() -> None:
    """run.json, metrics.jsonl, milestones/, eval/, .state/, trainer.json and the lock file are constants of
    `saeseeds.run_layout` only; every other module imports them (metrics.jsonl was once defined twice)."""
    names = {MANIFEST, METRICS, MILESTONES, EVAL_DIR, STATE_DIR, POINTER, LOCK_FILE}
    defined: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        for value in _module_constants(path).values():
            if value in names:
                defined.setdefault(value, []).append(str(path.relative_to(SRC)))
    assert defined == {name: ["run_layout.py"] for name in names}
