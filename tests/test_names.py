"""The one rule for names that become path components (saeseeds.names): what passes, what is refused, and that
every place building run paths goes through it (reliability campaign 3, D4-D6)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from saeseeds.errors import CheckpointError, ConfigError
from saeseeds.names import RUN_TOP_LEVEL, check_name, check_relative, name_problem, safe_slug


@pytest.mark.parametrize("name", ["activations", "layers.1.mlp", "gpt_neox.layers.6.mlp", "topk-32", "seed0",
                                  "blocks.*.hook_mlp_out", "ünïcode name"])
def test_valid_names(name: str) -> None:
    """Hugging Face module names (dots inside) and ordinary names pass unchanged."""
    assert name_problem(name) is None
    assert check_name(name, "x", ConfigError) == name


@pytest.mark.parametrize(("name", "why"), [
    ("", "empty"), (".", "relative link"), ("..", "relative link"), ("../x", "separator"), ("/abs", "separator"),
    ("a\\b", "separator"), (".state", "dot"), (".hidden", "dot"), (" pad", "white space"), ("tab\t", "white space"),
    ("new\nline", "control"), ("C:", "drive"), ("x" * 201, "longer"), (3, "not a string"),
])
def test_refused_names(name: object, why: str) -> None:
    """What escapes, hides or cannot be a folder name is refused with the reason."""
    problem = name_problem(name)
    assert problem is not None and why in problem
    with pytest.raises(CheckpointError, match="not a valid directory name"):
        check_name(name, "run.json: saes[0].hookpoint", CheckpointError)


def test_reserved_names_are_the_run_files() -> None:
    """A hookpoint may not take the name of a run's own file or folder (they would mix)."""
    from saeseeds.run_layout import INIT_SAMPLE, MILESTONES
    from saeseeds.training.eval_store import EVAL_DIR
    from saeseeds.training.logging import METRICS, TENSORBOARD_DIR, WANDB_DIR
    from saeseeds.training.run_dir import MANIFEST

    assert {EVAL_DIR, METRICS, TENSORBOARD_DIR, WANDB_DIR, MANIFEST, MILESTONES, INIT_SAMPLE} == RUN_TOP_LEVEL
    with pytest.raises(ConfigError, match="reserved"):
        check_name("eval", "data.hookpoint", ConfigError, RUN_TOP_LEVEL)


@pytest.mark.parametrize("path", ["../x", "/etc", "a/../../b", ".state/x/seed0", "a/.hidden/seed0", "C:/x", ""])
def test_relative_paths_must_stay_inside(path: str) -> None:
    """A path read from a record (run.json) is refused when any part leaves or hides."""
    with pytest.raises(CheckpointError, match="saes"):
        check_relative(path, "run.json: saes[0].path", CheckpointError)


def test_relative_path_normalises_harmless_parts() -> None:
    assert check_relative("./a//b/seed0", "p", CheckpointError) == PurePosixPath("a/b/seed0")


@pytest.mark.parametrize("text", ["..", ".", "../../etc", ".hidden", "", "a/b c", "x" * 500])
def test_safe_slug_is_always_a_valid_name(text: str) -> None:
    assert name_problem(safe_slug(text)) is None


def test_config_hookpoint_and_run_paths_use_the_rule(tmp_path: Path) -> None:
    """data.hookpoint, lm.hookpoints and the checkpoint path builder all refuse '..'."""
    from saeseeds.config import RunConfig, apply_overrides
    from saeseeds.training.run_dir import checkpoint_dir

    for override in (["--data.hookpoint", ".."], ["--data.source", "lm", "--lm.hookpoints", "a/b"]):
        with pytest.raises(ConfigError, match="hookpoint"):
            apply_overrides(RunConfig(), override).validate()
    with pytest.raises(ConfigError, match="hookpoint"):
        checkpoint_dir(tmp_path, "..", "topk-32", 0)
    with pytest.raises(ConfigError, match="SAE name"):
        checkpoint_dir(tmp_path, "h", ".state", 0)
