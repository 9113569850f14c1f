"""Bad config input from the third reliability campaign (defects D13, D14, D17): each is refused in one line
naming the field (or, for `--train.seeds 3`, said in a warning), never a traceback or a silent coercion."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from saeseeds.cli import main
from saeseeds.config import SaeConfig, load_config
from saeseeds.errors import ConfigError

BASE = """\
[data]
source = "npy"
path = "acts.npy"

[train]
seeds = [0, 1]
batch_size = 256
num_tokens = 1024

[[sae]]
architecture = "topk"
num_latents = 32
k = 4
"""


def _toml(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI in-process; it must refuse with exit status 2 and exactly one stderr line, which is returned."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_d14_k_string_in_toml_is_refused_not_coerced(tmp_path: Path) -> None:
    path = _toml(tmp_path, BASE.replace("k = 4", 'k = "8"'))
    with pytest.raises(ConfigError, match=r"saes\[0\]\.k: expected an integer, got the string '8'"):
        load_config(path)
    for text in ('batch_size = "256"', 'normalize_activations = "true"', 'lr = "0.001"'):
        edited = BASE.replace("batch_size = 256", text)
        with pytest.raises(ConfigError, match="got the string"):
            load_config(_toml(tmp_path, edited, "other.toml"))


def test_d14_the_same_text_after_a_flag_is_still_read_as_a_number(tmp_path: Path) -> None:
    cfg = load_config(_toml(tmp_path, BASE), ["--sae.k", "8", "--train.seeds", "0,1,2", "--train.lr", "1e-3"])
    assert (cfg.saes[0].k, cfg.train.seeds, cfg.train.lr) == (8, [0, 1, 2], 1e-3)


@pytest.mark.parametrize("field, line", [
    ("saes[0].l1_coefficient", "[[sae]]\nl1_coefficient = nan"),  # topk ignores it: still stored with the run
    ("saes[0].jumprelu_bandwidth", "[[sae]]\njumprelu_bandwidth = inf"),
    ("synthetic.noise_std", "[synthetic]\nnoise_std = nan"),  # a section the npy source never reads
    ("train.milestones[1]", "[train]\nmilestones = [0.5, nan]"),
])
def test_d14_nan_and_inf_refused_in_every_float_knob(tmp_path: Path, field: str, line: str) -> None:
    section, setting = line.split("\n")
    text = BASE.replace(f"{section}\n", f"{section}\n{setting}\n") if section in BASE else BASE + f"\n{line}\n"
    with pytest.raises(ConfigError, match=rf"{re.escape(field)} = (nan|inf) is not finite; allowed: a finite number"):
        load_config(_toml(tmp_path, text))


def test_d13_integers_beyond_int64_refused(tmp_path: Path) -> None:
    path = _toml(tmp_path, BASE.replace("num_tokens = 1024", "num_tokens = 1024\ndead_tokens_threshold = 1e29"))
    with pytest.raises(ConfigError, match=r"train\.dead_tokens_threshold = \d+ is too large; allowed: .*2\*\*63 - 1"):
        load_config(path)
    for flag in ("--train.eval_tokens", "--data.shuffle_seed", "--train.lr_warmup_steps"):
        with pytest.raises(ConfigError, match="is too large"):
            load_config(_toml(tmp_path, BASE), [flag, str(10**29)])


def test_d13_non_utf8_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(BASE.replace('"acts.npy"', '"caf\xe9.npy"').encode("latin-1"))
    line = _one_line(capsys, ["train", str(path), "--out", str(tmp_path / "out")])
    assert "latin1.toml" in line and "UTF-8" in line
    assert not (tmp_path / "out").exists()


def test_d17_config_path_that_is_a_directory_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_line(capsys, ["train", str(tmp_path), "--out", str(tmp_path / "out")])
    assert f"{tmp_path} is a directory" in line and "does not exist" not in line


def test_d17_negative_override_index_printed_as_given(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_toml(tmp_path, BASE), ["--saes.-1.k", "3"])
    assert "--saes.-1.k: index -1 is out of range; allowed: 0 to 0" in str(err.value) and "_1" not in str(err.value)
    cfg = load_config(_toml(tmp_path, BASE), ["--saes.0.auxk-alpha", "0.5"])  # dashes in a field name still read
    assert cfg.saes[0].auxk_alpha == 0.5


def test_d14_single_seed_override_says_it_is_one_seed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="saeseeds"):
        cfg = load_config(_toml(tmp_path, BASE), ["--train.seeds", "3"])
    assert cfg.train.seeds == [3]
    assert any("--train.seeds 3 is a list of seeds, not a count" in r.getMessage() and "0,1,2" in r.getMessage()
               for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="saeseeds"):
        load_config(_toml(tmp_path, BASE), ["--train.seeds", "3,4"])
    assert not caplog.records


def test_d13_dictionary_larger_than_memory_refused_before_allocation() -> None:
    from saeseeds.config.checks import machine_memory

    memory = machine_memory()
    assert memory is not None  # Linux and macOS report it
    for cfg, field in ((SaeConfig(num_latents=10**13, k=4), "num_latents"),
                       (SaeConfig(expansion_factor=10**12, k=4), "expansion_factor")):
        with pytest.raises(ConfigError, match=rf"saes\[0\]\.{field} = 10+ gives [\d,]+ latents, whose weights "
                                              r"alone need .* GiB, more than this machine's .* GiB of memory"):
            cfg.validate("saes[0]", 32)
    SaeConfig(num_latents=4096, k=4).validate("saes[0]", 32)  # an ordinary size passes
