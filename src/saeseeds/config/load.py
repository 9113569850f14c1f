"""Read a TOML run config, apply CLI overrides, and validate every section before anything runs."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from saeseeds.config.coerce import apply_overrides, from_dict
from saeseeds.config.schema import RunConfig
from saeseeds.errors import ConfigError


def read_config_toml(path: Path) -> dict[str, Any]:
    """A config file's TOML as a dict, `[[sae]]` tables under `saes`; one ConfigError line when it is missing or bad."""
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; give the path of a TOML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text (byte {err.start}: {err.reason}); "
                          "save the file as UTF-8") from err
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file: {err.strerror or err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    if "sae" in data and "saes" not in data:  # [[sae]] tables read more naturally in TOML
        data["saes"] = data.pop("sae")
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a TOML run config (or the defaults when `path` is None), apply CLI overrides, validate."""
    data: dict[str, Any] = {}
    where = "config"
    if path is not None:
        path = Path(path)
        where = str(path)
        data = read_config_toml(path)
        data.pop("study", None)  # a study config's axes (saeseeds.config.study); `train` runs its base config
    cfg = from_dict(RunConfig, data, where)
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    cfg.validate()
    return cfg


def validate(cfg: RunConfig) -> None:
    """Check every field of `cfg` (the same as `cfg.validate()`)."""
    cfg.validate()
