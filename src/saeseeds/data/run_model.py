"""Which language model and corpus a run reads, wherever a later command runs from.

run.json's `data` records a local `lm.model` as `model_path` and local `lm.dataset` files as `dataset_paths`,
relative to the run directory (`saeseeds.records`), so `analyze` or `pool` from another working directory reads
the same files; the config keeps the paths as typed. It also records `model_identity` (architecture class, model
type, vocabulary, width, depth), against which `--lm.model PATH` (`model_override`) is checked before it replaces
the run's model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saeseeds.errors import ConfigError
from saeseeds.records import relative_path, resolve_path

if TYPE_CHECKING:
    from saeseeds.config import LmConfig, RunConfig

MODEL_PATH, DATASET_PATHS, MODEL_IDENTITY = "model_path", "dataset_paths", "model_identity"
"""Keys of run.json's `data` written here."""
IDENTITY_FIELDS = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers")
"""HF config fields that identify a model's shape, beside its architecture class."""
_OVERRIDE: ContextVar[str | None] = ContextVar("saeseeds_lm_model_override", default=None)


CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
"""Class-name endings of Hugging Face architectures with a next-token head."""


def is_causal_config(config: Any) -> bool:
    """True when the checkpoint's architecture is a causal LM (has a next-token head)."""
    archs = getattr(config, "architectures", None) or []
    return any(a.endswith(CAUSAL_SUFFIXES) for a in archs) and not getattr(
        config, "is_encoder_decoder", False
    )


def _dataset_parts(dataset: str) -> list[str]:
    """The comma-separated entries of `lm.dataset`."""
    return [p.strip() for p in dataset.split(",") if p.strip()]


def local_lm_paths(lm: LmConfig, run_dir: str | Path) -> dict[str, Any]:
    """What run.json's `data` records about a local model and corpus: their paths relative to the run directory
    (read against today's working directory, as training reads them); nothing for hub names or the defaults."""
    out: dict[str, Any] = {}
    if lm.model and Path(lm.model).expanduser().exists():
        out[MODEL_PATH] = relative_path(Path(lm.model).expanduser(), run_dir)
    parts = _dataset_parts(lm.dataset)
    if parts and all(Path(p).expanduser().exists() for p in parts):
        out[DATASET_PATHS] = [relative_path(Path(p).expanduser(), run_dir) for p in parts]
    return out


def model_identity(config: Any) -> dict[str, Any]:
    """A HF model config's architecture class and shape (`IDENTITY_FIELDS`): what `--lm.model` must match."""
    archs = getattr(config, "architectures", None) or []
    return {"architecture": archs[0] if archs else None} | {f: getattr(config, f, None) for f in IDENTITY_FIELDS}


def resolve_run_lm(cfg: RunConfig, manifest: Mapping[str, Any], run_dir: str | Path) -> RunConfig:
    """A run's config with `lm.model` / `lm.dataset` naming what it was trained on, wherever the command runs from.

    The places run.json records (relative to the run) win when they exist; else a typed path that exists here is
    kept (the run was moved, its inputs were not). `--lm.model` (`model_override`) replaces the model, once checked
    against the run's `model_identity`."""
    data = manifest.get("data") if isinstance(manifest.get("data"), Mapping) else {}
    lm = cfg.lm
    override = _OVERRIDE.get()
    if override is not None:
        _check_override(override, _identity_key(data))
        lm = dataclasses.replace(lm, model=override)
    elif isinstance(data.get(MODEL_PATH), str):
        lm = dataclasses.replace(lm, model=_pick(data[MODEL_PATH], lm.model, run_dir))
    recorded = data.get(DATASET_PATHS)
    if isinstance(recorded, list) and recorded and all(isinstance(p, str) for p in recorded):
        typed = _dataset_parts(lm.dataset)
        picked = [_pick(p, typed[i] if i < len(typed) else "", run_dir) for i, p in enumerate(recorded)]
        lm = dataclasses.replace(lm, dataset=",".join(picked))
    return cfg if lm is cfg.lm else dataclasses.replace(cfg, lm=lm)


def _pick(recorded: str, typed: str, run_dir: str | Path) -> str:
    """The recorded place when it exists, else the typed path when it is absolute and exists (as `data.path`), else
    the recorded place (its error then names where the run expects it)."""
    path = resolve_path(recorded, run_dir)
    given = Path(typed).expanduser()
    if not path.exists() and typed and given.is_absolute() and given.exists():
        return typed
    return str(path)


@contextmanager
def model_override(path: str | None) -> Iterator[None]:
    """While active, every run config read (`load_run_config`) uses the model at `path` (`--lm.model`); None: none."""
    if path is None:
        yield
        return
    token = _OVERRIDE.set(str(path))
    try:
        yield
    finally:
        _OVERRIDE.reset(token)


def _identity_key(data: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The recorded identity as a hashable key (empty when the run recorded none), plus whether it was causal."""
    identity = data.get(MODEL_IDENTITY) if isinstance(data.get(MODEL_IDENTITY), Mapping) else {}
    return tuple(sorted(identity.items())) + (("is_causal", data.get("is_causal")),)


@lru_cache(maxsize=16)
def _check_override(path: str, recorded: tuple[tuple[str, Any], ...]) -> None:
    """ConfigError in one line unless the model at `path` exists and matches the run's recorded identity."""
    from transformers import AutoConfig

    if not Path(path).expanduser().is_dir():
        raise ConfigError(f"--lm.model {path}: no such local model directory")
    try:
        config = AutoConfig.from_pretrained(str(Path(path).expanduser()))
    except (OSError, ValueError) as err:
        raise ConfigError(f"--lm.model {path}: not a Hugging Face model directory ({err})") from err
    want = dict(recorded)
    causal = want.pop("is_causal")
    have = model_identity(config)
    differ = [f"{k} {have.get(k)!r} (run: {v!r})" for k, v in want.items() if v is not None and have.get(k) != v]
    if causal is not None and is_causal_config(config) != bool(causal):
        differ.append(f"causal LM {is_causal_config(config)} (run: {bool(causal)})")
    if differ:
        raise ConfigError(f"--lm.model {path} is not the model this run was trained on: {'; '.join(differ)} "
                          "(run.json data.model_identity)")
