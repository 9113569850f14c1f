"""Save and load SAEs in sparsify's layout (`cfg.json` + `sae.safetensors`), atomically, with clear errors.

Format 2 (`"schema": "saeseeds.checkpoint/2"`) keeps decoder rows unit-norm: the training input scale is folded
into the encoder bias, b_dec and thresholds. Format 1 (no `schema`) folded it into the weights; both load as is.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from saeseeds.atomic import atomic_dir, atomic_write_text, json_text
from saeseeds.config import SaeConfig, from_dict
from saeseeds.errors import CheckpointError, ConfigError
from saeseeds.run_layout import CHECKPOINT_CONFIG
from saeseeds.sae.model import SparseAutoencoder
from saeseeds.sae.registry import architecture_names, get_architecture
from saeseeds.sae.spec import ArchitectureSpec
from saeseeds.version import __version__

CFG_FILE = CHECKPOINT_CONFIG
WEIGHTS_FILE = "sae.safetensors"
BASE_TENSORS = ("encoder.weight", "encoder.bias", "W_dec", "b_dec")
SCHEMA = "saeseeds.checkpoint/2"
"""cfg.json's `schema`; a cfg.json without one is format 1 (or sparsify's own)."""
WEIGHT_FOLD = ("encoder.weight", "W_dec", "b_dec")
"""Where an input scale goes when it cannot go into the biases (`_fold`): exact for any architecture."""
UNIT_NORM_ATOL = 1e-4
SIDECAR_FILE = "saeseeds.safetensors"
"""Beside sae.safetensors: an architecture's `sidecar_tensors` (rasae's dictionary factors), which a plain reader
of its activation must not see (sparsify loads sae.safetensors strictly)."""


def checkpoint_tensors(sae: SparseAutoencoder) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint under sparsify's names, then the architecture's own (e.g. `threshold`)."""
    tensors = {
        "encoder.weight": sae.encoder.weight,
        "encoder.bias": sae.encoder.bias,
        "W_dec": sae.W_dec,
        "b_dec": sae.b_dec,
    }
    tensors |= sae.spec.checkpoint_tensors(sae)
    return {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}


def checkpoint_cfg(
    sae: SparseAutoencoder,
    *,
    hookpoint: str = "",
    model: str = "",
    seed: int | None = None,
    input_scale: float | None = None,
    folded_into: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """cfg.json: sparsify's fields (so its loader reads a TopK SAE) followed by ours.

    Only an architecture sparsify computes exactly (`ArchitectureSpec.sparsify_k`: TopK) gets sparsify's `k`.
    `normalize_decoder` states whether the saved decoder rows are unit-norm. `data` (the run's data description) adds the model revision, whether the
    hook read the module's input, and the special tokens left out of training.
    """
    cfg, data = sae.cfg, dict(data or {})
    rows = sae.W_dec.detach().float().norm(dim=1)
    unit = bool(torch.allclose(rows, torch.ones_like(rows), atol=UNIT_NORM_ATOL))
    out: dict[str, Any] = {
        "activation": sae.spec.activation or sae.architecture,
        "expansion_factor": cfg.expansion_factor,
        "normalize_decoder": unit,
        "num_latents": sae.num_latents,
    }
    if sae.spec.sparsify_k:
        out["k"] = cfg.k
    exclude = data.get("exclude_special_tokens")
    out |= {
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": sae.d_in,
        "schema": SCHEMA,
        "architecture": sae.architecture,
        "seed": seed,
        "hookpoint": hookpoint,
        "model": model,
        "model_revision": data.get("revision"),
        "hook_input": data.get("hook_input"),
        "exclude_special_tokens": exclude,
        "special_token_ids": list(data.get("special_token_ids", [])) if exclude else [],
        "input_scale": input_scale,
        "input_scale_folded_into": folded_into,
        "saeseeds_version": __version__,
        "saeseeds_config": dataclasses.asdict(cfg) | {"num_latents": sae.num_latents},
    }
    return out


def save_sae(
    sae: SparseAutoencoder,
    path: str | Path,
    *,
    hookpoint: str = "",
    model: str = "",
    seed: int | None = None,
    input_scale: float | None = None,
    data: Mapping[str, Any] | None = None,
) -> Path:
    """Write `sae` to the directory `path`; the new directory is complete (fsynced) before the old name changes.

    `input_scale` s: `sae` was trained on s·x, so the saved SAE is `fold_input_scale(sae, s)`, which takes raw
    activations (cfg.json records s and where it went). Built beside `path` by `atomic_dir`, then swapped in; a
    kill mid-swap leaves a backup that `saeseeds.atomic.remove_stale_temps(path.parent)` renames back.
    """
    path = Path(path)
    folded_into = None
    if input_scale is not None:
        sae, took_scale = _fold(sae, input_scale)
        folded_into = ", ".join(took_scale)  # cfg.json's input_scale_folded_into
    with atomic_dir(path) as tmp:
        tensors = checkpoint_tensors(sae)
        sidecar = {name: tensors.pop(name) for name in sae.spec.sidecar_tensors if name in tensors}
        save_file(tensors, str(tmp / WEIGHTS_FILE))
        if sidecar:
            save_file(sidecar, str(tmp / SIDECAR_FILE))
        cfg = checkpoint_cfg(sae, hookpoint=hookpoint, model=model, seed=seed, input_scale=input_scale,
                             folded_into=folded_into, data=data)
        write_checkpoint_cfg(tmp, cfg)
    return path


EXTRA_FILE = "saeseeds.json"
"""Beside cfg.json: every key of a checkpoint's configuration that sparsify's SparseCoderConfig does not know."""
SPARSIFY_KEYS = ("activation", "expansion_factor", "normalize_decoder", "num_latents", "k", "multi_topk",
                 "skip_connection", "transcode", "d_in")
"""cfg.json's keys: sparsify's SparseCoderConfig fields and `d_in`, so `SparseCoder.load_from_disk` drops nothing
(and warns about nothing)."""


def write_checkpoint_cfg(directory: Path, cfg: Mapping[str, Any]) -> None:
    """Write a checkpoint's configuration: sparsify's keys in cfg.json, the rest (schema first) in saeseeds.json."""
    (directory / CFG_FILE).write_text(json_text({k: v for k, v in cfg.items() if k in SPARSIFY_KEYS}) + "\n")
    (directory / EXTRA_FILE).write_text(json_text({k: v for k, v in cfg.items() if k not in SPARSIFY_KEYS}) + "\n")


def read_checkpoint_cfg(path: str | Path) -> dict[str, Any]:
    """A checkpoint's configuration: saeseeds.json (when there) under cfg.json. Checkpoints written before the split,
    and sparsify's own, hold everything in cfg.json; a key in both reads as cfg.json has it (a hand edit counts)."""
    path = Path(path)
    extra = read_json(path / EXTRA_FILE) if (path / EXTRA_FILE).is_file() else {}
    return extra | read_json(path / CFG_FILE)


def update_checkpoint_extra(path: str | Path, **fields: Any) -> None:
    """Add `fields` to a saved checkpoint's saeseeds.json (e.g. a pooled SAE's provenance), atomically."""
    path = Path(path)
    extra = read_json(path / EXTRA_FILE) if (path / EXTRA_FILE).is_file() else {}
    atomic_write_text(path / EXTRA_FILE, json_text(extra | fields) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object, raising CheckpointError that names the file when it is missing or corrupt."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} should hold a JSON object")
    return data


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read every tensor of a safetensors file, raising CheckpointError on a missing or corrupt file."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from err


def _architecture_spec(architecture: str, source: str) -> ArchitectureSpec:
    """The registered spec of `architecture`; an unknown one is a CheckpointError naming `source`."""
    try:
        return get_architecture(architecture)
    except ConfigError as err:
        supported = ", ".join(architecture_names())
        raise CheckpointError(f"{source}: unsupported architecture {architecture!r} (supported: {supported})") from err


def build_sae(
    architecture: str,
    *,
    encoder_weight: torch.Tensor,
    encoder_bias: torch.Tensor,
    W_dec: torch.Tensor,
    b_dec: torch.Tensor,
    k: int = 0,
    threshold: torch.Tensor | None = None,
    extra: Mapping[str, torch.Tensor] | None = None,
    normalize_decoder: bool = True,
    base_cfg: SaeConfig | None = None,
    source: str = "checkpoint",
    device: str | torch.device = "cpu",
) -> SparseAutoencoder:
    """Assemble an SAE from weights in our layout (encoder [n, d], W_dec [n, d]), checking every shape.

    `extra` holds the architecture's own checkpoint tensors (`threshold` is shorthand for extra["threshold"]).
    """
    spec = _architecture_spec(architecture, source)
    extra = dict(extra or {})
    if threshold is not None:
        extra["threshold"] = threshold
    if encoder_weight.ndim != 2:
        raise CheckpointError(f"{source}: encoder weight must be 2-D, got shape {tuple(encoder_weight.shape)}")
    weights = {"encoder weight": encoder_weight, "encoder bias": encoder_bias, "W_dec": W_dec, "b_dec": b_dec}
    for name, tensor in weights.items():
        if not tensor.is_floating_point():
            raise CheckpointError(
                f"{source}: {name} has dtype {str(tensor.dtype).removeprefix('torch.')}; "
                "SAE weights must be floating point (float32, float16, bfloat16, float64)"
            )
    n, d = encoder_weight.shape
    expected = {"encoder bias": (n,), "W_dec": (n, d), "b_dec": (d,)}
    actual = {"encoder bias": encoder_bias.shape, "W_dec": W_dec.shape, "b_dec": b_dec.shape}
    for name, shape in expected.items():
        if tuple(actual[name]) != shape:
            raise CheckpointError(
                f"{source}: {name} has shape {tuple(actual[name])}, expected {shape} "
                f"for {n} latents of width {d}"
            )
    cfg = dataclasses.replace(
        base_cfg or SaeConfig(),
        architecture=architecture,  # type: ignore[arg-type]
        num_latents=n,
        k=k if k > 0 else (base_cfg.k if base_cfg else SaeConfig().k),
        normalize_decoder=normalize_decoder,
    )
    if spec.uses_k and not 0 < cfg.k <= n:
        raise CheckpointError(f"{source}: k={cfg.k} is not in 1..{n}")
    dtype = W_dec.dtype if W_dec.is_floating_point() else torch.float32
    try:
        sae = SparseAutoencoder(cfg, d, device="cpu", dtype=dtype, initialise=False)
    except ConfigError as err:
        raise CheckpointError(f"{source}: {err}") from err
    with torch.no_grad():
        sae.encoder.weight.copy_(encoder_weight)
        sae.encoder.bias.copy_(encoder_bias)
        sae.W_dec.copy_(W_dec)
        sae.b_dec.copy_(b_dec)
        spec.load_checkpoint_tensors(sae, extra, source)
    for name, tensor in sae.state_dict().items():
        if not tensor.is_floating_point():
            continue
        if name == "threshold":  # a threshold may be +-inf (never fires / always fires), never NaN
            if torch.isnan(tensor).any():
                raise CheckpointError(f"{source}: tensor threshold contains NaN")
        elif not torch.isfinite(tensor).all():
            raise CheckpointError(f"{source}: tensor {name} contains NaN or inf")
    return sae.to(device)


def _json_int(cfg_json: Mapping[str, Any], key: str, path: Path) -> int | None:
    """An integer field of a cfg.json (None when absent); CheckpointError naming the file and field otherwise."""
    value = cfg_json.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(f"{path}: {key} must be an integer, got {value!r}")
    return value


def check_supported(cfg_json: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse what saeseeds would encode wrongly: sparsify transcoders and skip connections, newer formats."""
    where = path / CFG_FILE
    kind, _, version = str(cfg_json.get("schema", "")).partition("/")
    if kind == "saeseeds.checkpoint" and (not version.isdigit() or int(version) > int(SCHEMA.split("/")[1])):
        raise CheckpointError(
            f"{where}: schema {cfg_json['schema']!r} is newer than this saeseeds reads ({SCHEMA}); upgrade saeseeds"
        )
    if cfg_json.get("transcode"):
        raise CheckpointError(
            f"{where}: a sparsify transcoder (transcode: true) predicts a module's output from its input; "
            "saeseeds compares only SAEs that reconstruct their input"
        )
    if cfg_json.get("skip_connection") or "W_skip" in tensors:
        raise CheckpointError(
            f"{where}: sparsify skip connection (W_skip) is not supported; its reconstructions need W_skip·x, "
            "which saeseeds does not model"
        )
    if cfg_json.get("activation") == "groupmax":
        raise CheckpointError(f"{where}: sparsify's groupmax activation is not supported")


def check_declared_size(cfg_json: Mapping[str, Any], W_dec: torch.Tensor, path: Path,
                        base_cfg: SaeConfig | None) -> None:
    """cfg.json's dictionary size must be the weights': its `num_latents` (or sparsify's 0 = expansion_factor x
    d_in) and saeseeds_config's must equal W_dec's rows, else the file is refused naming both numbers."""
    rows = int(W_dec.shape[0])
    declared = _json_int(cfg_json, "num_latents", path / CFG_FILE)
    if declared == 0:  # sparsify: the size follows expansion_factor x d_in
        factor, d_in = _json_int(cfg_json, "expansion_factor", path / CFG_FILE), int(W_dec.shape[-1])
        declared = factor * d_in if factor else None
    claims = [("num_latents", declared)]
    if base_cfg is not None and base_cfg.num_latents > 0:
        claims.append(("saeseeds_config.num_latents", base_cfg.num_latents))
    for key, value in claims:
        if value is not None and value != rows:
            raise CheckpointError(f"{path / CFG_FILE} says {key}={value} but {path / WEIGHTS_FILE} holds {rows} "
                                  f"latents (W_dec has shape {tuple(W_dec.shape)})")


def load_sae(path: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """Load an SAE saved by saeseeds (either format) or by sparsify; raises CheckpointError naming the bad file."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {path} does not exist")
    cfg_json = read_checkpoint_cfg(path)
    tensors = read_safetensors(path / WEIGHTS_FILE)
    if (path / SIDECAR_FILE).is_file():
        tensors |= read_safetensors(path / SIDECAR_FILE)
    check_supported(cfg_json, tensors, path)
    missing = [name for name in BASE_TENSORS if name not in tensors]
    if missing:
        raise CheckpointError(f"{path / WEIGHTS_FILE} lacks tensor(s) {', '.join(missing)}")
    architecture = cfg_json.get("architecture") or cfg_json.get("activation", "topk")
    base_cfg = None
    if isinstance(cfg_json.get("saeseeds_config"), dict):
        try:
            base_cfg = from_dict(SaeConfig, cfg_json["saeseeds_config"], str(path / CFG_FILE))
        except ConfigError as err:
            raise CheckpointError(str(err)) from err
    d_in = _json_int(cfg_json, "d_in", path / CFG_FILE)
    if d_in is not None and d_in != tensors["W_dec"].shape[-1]:
        raise CheckpointError(
            f"{path / CFG_FILE} says d_in={d_in} but W_dec has shape {tuple(tensors['W_dec'].shape)}"
        )
    check_declared_size(cfg_json, tensors["W_dec"], path, base_cfg)
    k = _json_int(cfg_json, "k", path / CFG_FILE) or (base_cfg.k if base_cfg is not None else 0)
    if _architecture_spec(architecture, str(path)).uses_k and k <= 0:
        raise CheckpointError(f"{path / CFG_FILE}: a {architecture} checkpoint needs a positive k")
    return build_sae(
        architecture,
        encoder_weight=tensors["encoder.weight"],
        encoder_bias=tensors["encoder.bias"],
        W_dec=tensors["W_dec"],
        b_dec=tensors["b_dec"],
        k=k,
        extra={name: t for name, t in tensors.items() if name not in BASE_TENSORS},
        normalize_decoder=base_cfg.normalize_decoder if base_cfg else bool(cfg_json.get("normalize_decoder", True)),
        base_cfg=base_cfg,
        source=str(path),
        device=device,
    )


def fold_input_scale(sae: SparseAutoencoder, scale: float) -> SparseAutoencoder:
    """An SAE on raw activations x whose reconstruction is `sae`'s of `scale · x`, divided by `scale`.

    Homogeneous architectures (`ArchitectureSpec.latent_unit_tensors`): pre-acts W(s·x − b) + c =
    s·(W(x − b/s) + c/s), so b_enc, b_dec and the thresholds are divided by s, the encoder and the (unit-norm) decoder are unchanged, the
    same latents fire and their values are 1/s of `sae`'s. Any other architecture: the encoder is multiplied and
    the decoder divided by s (latents unchanged, decoder rows 1/s long).
    """
    return _fold(sae, scale)[0]


def unfold_input_scale(sae: SparseAutoencoder, scale: float, folded_into: str | None) -> SparseAutoencoder:
    """The inverse of `fold_input_scale`: the SAE in the trainer's space (inputs `scale · x`) of a checkpoint
    saved with its input scale folded in. `folded_into` is the checkpoint's cfg.json `input_scale_folded_into`:
    "encoder.bias, b_dec[, threshold]" (format 2, homogeneous architectures) or None (format 1) /
    "encoder.weight, W_dec, b_dec" (the weights)."""
    if scale <= 0 or not math.isfinite(scale):
        raise CheckpointError(f"input scale must be positive and finite, got {scale}")
    took_scale = WEIGHT_FOLD if folded_into is None else tuple(name.strip() for name in folded_into.split(","))
    return _fold(sae, scale, homogeneous="W_dec" not in took_scale, invert=True)[0]


def _fold(sae: SparseAutoencoder, scale: float, *, homogeneous: bool | None = None,
          invert: bool = False) -> tuple[SparseAutoencoder, tuple[str, ...]]:
    """`fold_input_scale` (or, `invert`ed, its inverse) and the names of the tensors that took the scale.
    `homogeneous` picks the biases-and-thresholds form; None: whenever the architecture allows it."""
    if scale <= 0 or not math.isfinite(scale):
        raise ValueError(f"input scale must be positive and finite, got {scale}")

    def down(t: torch.Tensor) -> torch.Tensor:  # what folding divides by the scale
        return t * scale if invert else t / scale

    def up(t: torch.Tensor) -> torch.Tensor:  # what folding multiplies by it
        return t / scale if invert else t * scale

    extra = sae.spec.checkpoint_tensors(sae)
    units, free = sae.spec.latent_unit_tensors, sae.spec.scale_free_tensors
    W, c, W_dec, b = (t.detach() for t in (sae.encoder.weight, sae.encoder.bias, sae.W_dec, sae.b_dec))
    if homogeneous is None:
        homogeneous = units is not None and set(extra) <= set(units) | set(free)
    if homogeneous:
        # a negative threshold means "not estimated yet" (batchtopk) and stays as it is
        scaled = [name for name in extra if name not in free]
        extra = {name: t if name in free else torch.where(t < 0, t, down(t)) for name, t in extra.items()}
        weights, where = (W, down(c), W_dec, down(b)), ("encoder.bias", "b_dec", *scaled)
    else:
        weights, where = (up(W), c, down(W_dec), down(b)), WEIGHT_FOLD
    folded = build_sae(
        sae.architecture,
        encoder_weight=weights[0],
        encoder_bias=weights[1],
        W_dec=weights[2],
        b_dec=weights[3],
        k=sae.cfg.k,
        extra=extra,
        normalize_decoder=sae.cfg.normalize_decoder,
        base_cfg=sae.cfg,
        device=sae.device,
    )
    return folded, where
