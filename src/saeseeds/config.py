"""Typed run configuration: dataclasses that TOML files and `--section.field value` CLI flags map onto one to one."""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from saeseeds.data.lm_config import LmConfig
from saeseeds.data.synthetic_config import SyntheticConfig
from saeseeds.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

Architecture = Literal["topk", "batchtopk", "relu", "jumprelu"]
ARCHITECTURES: tuple[str, ...] = get_args(Architecture)


@dataclass
class SaeConfig:
    """One SAE configuration of a run; every seed of the run trains one SAE of each configuration."""

    architecture: Architecture = "topk"
    """topk (Gao et al.), batchtopk (Bussmann et al.), relu + L1 (Bricken/Conerly), jumprelu (Rajamanoharan et al.)."""
    num_latents: int = 0
    """Dictionary size; 0 means expansion_factor * d_in."""
    expansion_factor: int = 8
    k: int = 32
    """Active latents per token (topk), or mean active latents per token (batchtopk)."""
    name: str = ""
    """Directory name of this configuration in the run; default '<architecture>-<num_latents>'."""
    normalize_decoder: bool = True
    """Keep decoder rows at unit norm (gradient projection + renormalisation after every step)."""
    auxk_alpha: float = 1 / 32
    """Weight of the AuxK loss that revives dead latents (topk, batchtopk)."""
    auxk_k: int = 0
    """Latents used by AuxK; 0 means d_in // 2."""
    batchtopk_threshold_momentum: float = 0.99
    """EMA momentum of the inference threshold estimated during batchtopk training."""
    l1_coefficient: float = 5.0
    """relu: weight of the L1 penalty sum_i f_i * ||W_dec,i||, per token, on inputs scaled to unit mean norm."""
    l1_warmup_steps: int = 0
    """relu: linear warm-up of the L1 coefficient from 0 over this many steps; 0 means 5% of training."""
    jumprelu_init_threshold: float = 0.1
    """Initial threshold, in units of the normalised activations (mean squared norm d_in, so pre-acts are O(1))."""
    jumprelu_bandwidth: float = 0.05
    """Width of the rectangle kernel of the straight-through estimator of the threshold gradient (same units)."""
    l0_coefficient: float = 1.0
    """jumprelu: weight of the (straight-through) L0 penalty."""
    l0_warmup_steps: int = 0
    """jumprelu: linear warm-up of the L0 coefficient; 0 means 5% of training."""

    def resolved_num_latents(self, d_in: int) -> int:
        """Dictionary size for an input width `d_in`."""
        return self.num_latents if self.num_latents > 0 else self.expansion_factor * d_in

    def resolved_name(self, d_in: int) -> str:
        """Directory name of this configuration."""
        return self.name or f"{self.architecture}-{self.resolved_num_latents(d_in)}"


@dataclass
class TrainConfig:
    """Optimisation, evaluation and checkpointing of the lockstep trainer."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    batch_size: int = 4096
    """Tokens per optimisation step (activation rows)."""
    num_tokens: int = 2_000_000
    """Training tokens; steps = num_tokens // batch_size."""
    lr: float = 0.0
    """Adam learning rate; 0 means sparsify's scaling rule 2e-4 / sqrt(num_latents / 2**14)."""
    lr_warmup_steps: int = 100
    lr_decay: Literal["linear", "cosine", "constant"] = "linear"
    lr_decay_start: float = 0.8
    """Fraction of training after which the learning rate decays to 0."""
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    grad_clip: float = 0.0
    """Clip each SAE's gradient norm to this value; 0 disables."""
    dead_tokens_threshold: int = 1_000_000
    """A latent is dead once it has not fired for this many training tokens (drives AuxK and the dead count)."""
    eval_every: int = 0
    """Evaluate every this many steps (and at the end); 0 means only at the end."""
    eval_tokens: int = 65_536
    """Held-out tokens used for evaluation (FVU with the whole-set mean, L0, dead fraction)."""
    checkpoint_every: int = 0
    """Save checkpoints and trainer state every this many steps (and at the end); 0 means 10 times per run."""
    device: str = "auto"
    """'auto' (cuda if present, else cpu), 'cpu', 'cuda', 'cuda:1', ..."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Autocast dtype of the forward pass on CUDA; parameters stay float32."""
    normalize_activations: bool = True
    """Scale inputs by a constant so their mean squared norm is d_in (estimated on the first batch, saved)."""
    progress: bool = True


@dataclass
class DataConfig:
    """Where the activation stream comes from; every SAE of a run sees the same batches in the same order."""

    source: Literal["npy", "safetensors", "lm", "cache", "synthetic"] = "lm"
    path: str = ""
    """npy/safetensors: the file (or directory of files); cache: the cache directory."""
    tensor: str = ""
    """safetensors: name of the tensor to read (default: the only one)."""
    hookpoint: str = "activations"
    """Name of the hookpoint for sources that do not define one (array files)."""
    eval_fraction: float = 0.05
    """Share of rows of an array source held out for evaluation (taken from the end)."""
    shuffle_seed: int = 0
    """Seed of the one fixed order of rows (array sources) or chunks (text)."""
    shuffle: bool = True


@dataclass
class RunConfig:
    """Everything a run needs: data, the SAE configurations, training; written whole into run.json."""

    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    saes: list[SaeConfig] = field(default_factory=lambda: [SaeConfig()])
    lm: LmConfig = field(default_factory=LmConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


# --------------------------------------------------------------------------------------------
# dict <-> dataclass, with errors that name the field


def to_dict(cfg: Any) -> dict[str, Any]:
    """Serialise a config dataclass to plain JSON/TOML-compatible values."""
    return dataclasses.asdict(cfg)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`, converting where unambiguous (int → float, str → number)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(get_args(tp)):
            return None
        errors = []
        for arg in args:
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner, *rest) = get_args(tp) or (Any,)
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return from_dict(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {_type_name(tp)}")  # pragma: no cover


def _hints(cls: type) -> dict[str, Any]:
    module = sys.modules[cls.__module__]
    return get_type_hints(cls, globalns=vars(module) | vars(typing))


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass `cls` from `data`; an unknown key or a mistyped value raises ConfigError naming it."""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(names))}"
        )
    kwargs = {key: _coerce(value, hints[key], f"{where}.{key}") for key, value in data.items()}
    return cls(**kwargs)


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply CLI flags `--section.field value` (or `--section.field=value`); `--saes.N.field` or `--sae.field` (all)."""
    data = to_dict(cfg)
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(overrides):
        flag = overrides[i]
        if not flag.startswith("--") or "." not in flag:
            raise ConfigError(
                f"unrecognised argument {flag!r}: overrides look like --train.lr 1e-3 or --saes.0.k 16"
            )
        if "=" in flag:
            key, value = flag[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(overrides):
                raise ConfigError(f"override {flag} needs a value")
            key, value = flag[2:], overrides[i + 1]
            i += 2
        pairs.append((key, value))
    for key, value in pairs:
        parts = key.replace("-", "_").split(".")
        if parts[0] == "sae":
            targets = [["saes", str(j), *parts[1:]] for j in range(len(data["saes"]))]
        else:
            targets = [parts]
        for path in targets:
            _set_path(data, path, value, key)
    return from_dict(RunConfig, data, "overrides")


def _set_path(data: dict[str, Any], path: list[str], value: str, key: str) -> None:
    node: Any = data
    for part in path[:-1]:
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--{key}: index {part} out of range (there are {len(node)})")
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise ConfigError(f"--{key}: unknown section {part!r}")
    last = path[-1]
    if not isinstance(node, dict) or last not in node:
        known = ", ".join(sorted(node)) if isinstance(node, dict) else ""
        raise ConfigError(f"--{key}: unknown field {last!r}; known: {known}")
    node[last] = value


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a TOML run config (or the defaults when `path` is None) and apply CLI overrides."""
    data: dict[str, Any] = {}
    where = "config"
    if path is not None:
        path = Path(path)
        where = str(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML: {err}") from err
        if "sae" in data and "saes" not in data:  # [[sae]] tables read more naturally in TOML
            data["saes"] = data.pop("sae")
    cfg = from_dict(RunConfig, data, where)
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    validate(cfg)
    return cfg


def validate(cfg: RunConfig) -> None:
    """Cross-field checks that a dataclass cannot express."""
    if not cfg.saes:
        raise ConfigError("config: at least one [[sae]] table is needed")
    if not cfg.train.seeds:
        raise ConfigError("train.seeds: at least one seed is needed")
    if len(set(cfg.train.seeds)) != len(cfg.train.seeds):
        raise ConfigError(f"train.seeds: seeds must be distinct, got {cfg.train.seeds}")
    if cfg.train.batch_size <= 0:
        raise ConfigError("train.batch_size must be positive")
    for i, sae in enumerate(cfg.saes):
        if sae.architecture in ("topk", "batchtopk") and sae.k <= 0:
            raise ConfigError(f"saes[{i}].k must be positive for {sae.architecture}")
    names = [s.name for s in cfg.saes if s.name]
    if len(set(names)) != len(names):
        raise ConfigError(f"saes: names must be distinct, got {names}")
