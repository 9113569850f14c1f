"""Typed run configuration: dataclasses that TOML files and `--section.field value` CLI flags map onto one to one.

`schema` holds the run's sections, `lm` and `synthetic` the source-specific ones, `coerce` the generic
TOML/CLI conversion, `checks` the range checks and `load` the reader. Nothing here imports `saeseeds.data`.
"""

from saeseeds.config.coerce import _coerce, _set_path, apply_overrides, from_dict, to_dict
from saeseeds.config.lm import MODEL_DTYPES, LmConfig
from saeseeds.config.load import load_config, validate
from saeseeds.config.schema import SOURCES, DataConfig, RunConfig, SaeConfig, TrainConfig
from saeseeds.config.synthetic import SyntheticConfig, validate_synthetic

__all__ = [
    "MODEL_DTYPES",
    "SOURCES",
    "DataConfig",
    "LmConfig",
    "RunConfig",
    "SaeConfig",
    "SyntheticConfig",
    "TrainConfig",
    "_coerce",
    "_set_path",
    "apply_overrides",
    "from_dict",
    "load_config",
    "to_dict",
    "validate",
    "validate_synthetic",
]
