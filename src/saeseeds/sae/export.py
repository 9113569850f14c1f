"""Write SAEs in SAELens's on-disk format (`cfg.json` + `sae_weights.safetensors`, read by
`sae_lens.SAE.load_from_disk`), so every architecture saeseeds trains loads exactly in SAELens.

topk → SAELens `topk`; relu → `standard`; jumprelu → `jumprelu`; batchtopk → `jumprelu` with its inference
threshold for every latent (how SAELens itself saves a trained BatchTopK SAE). Weights are the checkpoint's own
(raw activations in, the input scale already folded), with `apply_b_dec_to_input: true` and no normalisation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from saeseeds.errors import CheckpointError
from saeseeds.records import write_record
from saeseeds.run_layout import MANIFEST as RUN_MANIFEST
from saeseeds.sae.checkpoint import WEIGHTS_FILE, read_checkpoint_cfg
from saeseeds.sae.model import SparseAutoencoder
from saeseeds.version import __version__

SAELENS_CFG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
SAELENS_FORMAT_VERSION = "6.0.0"
"""The SAELens release whose on-disk format this is (written as `metadata.sae_lens_version`)."""
SAELENS_ARCHITECTURES = {"topk": "topk", "relu": "standard", "jumprelu": "jumprelu", "batchtopk": "jumprelu"}
EXPORT_FORMATS = ("saelens",)
MANIFEST = "export.json"
SCHEMA = "saeseeds.export/1"
SAELENS_CFG_SCHEMA = "saeseeds.saelens_cfg/1"
"""The `schema` saeseeds adds to the SAELens cfg.json it writes (SAELens's SAEConfig.from_dict keeps only its own
fields, so the extra top-level keys `schema` and `saeseeds_version` load fine)."""
KIND = "export"


def saelens_tensors(sae: SparseAutoencoder) -> dict[str, torch.Tensor]:
    """SAELens's tensors: W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_in], b_dec, and `threshold` if any."""
    architecture = saelens_architecture(sae)
    tensors = {
        "W_enc": sae.encoder.weight.detach().T,
        "b_enc": sae.encoder.bias.detach(),
        "W_dec": sae.W_dec.detach(),
        "b_dec": sae.b_dec.detach(),
    }
    if architecture == "jumprelu":
        tensors["threshold"] = sae.spec.checkpoint_tensors(sae)["threshold"].detach()
    return {name: t.to("cpu").contiguous().clone() for name, t in tensors.items()}


def saelens_architecture(sae: SparseAutoencoder, source: str = "SAE") -> str:
    """The SAELens architecture that computes `sae` exactly; CheckpointError when there is none."""
    kind = sae.architecture if sae.architecture in SAELENS_ARCHITECTURES else sae.spec.activation
    name = SAELENS_ARCHITECTURES.get(kind)  # a recipe computes as its activation (matryoshka, rasae)
    if name is None:
        raise CheckpointError(
            f"{source}: architecture {sae.architecture!r} has no SAELens equivalent "
            f"(exported: {', '.join(SAELENS_ARCHITECTURES)})"
        )
    if kind == "batchtopk" and float(sae.threshold.min()) < 0:
        raise CheckpointError(
            f"{source}: this {sae.architecture} SAE has no inference threshold yet (threshold -1); SAELens could "
            "only read it as a JumpReLU SAE with one, so it is not exported"
        )
    return name


def saelens_cfg(sae: SparseAutoencoder, info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """SAELens 6's cfg.json for `sae`; `info` (the source's cfg.json) fills `metadata` (model, hook, tokens)."""
    info = dict(info or {})
    architecture = saelens_architecture(sae)
    exclude = info.get("exclude_special_tokens")
    cfg: dict[str, Any] = {
        "d_in": sae.d_in,
        "d_sae": sae.num_latents,
        "dtype": str(sae.dtype).removeprefix("torch."),
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAELENS_FORMAT_VERSION,
            "sae_lens_training_version": None,
            "model_name": info.get("model") or None,
            "hook_name": info.get("hookpoint") or None,
            "hook_head_index": None,
            "context_size": info.get("context_size"),
            "prepend_bos": info.get("prepend_bos"),
            "dataset_path": info.get("dataset_path"),
            "exclude_special_tokens": list(info.get("special_token_ids") or []) if exclude else False,
            "saeseeds": {
                "architecture": sae.architecture,
                "seed": info.get("seed"),
                "model_revision": info.get("model_revision"),
                "hook_input": info.get("hook_input"),
                "input_scale": info.get("input_scale"),
                "input_scale_folded_into": info.get("input_scale_folded_into"),
                "saeseeds_version": __version__,
            },
        },
        "architecture": architecture,
    }
    if architecture == "topk":
        cfg["k"] = sae.cfg.k
        cfg["rescale_acts_by_decoder_norm"] = False
    return cfg


def write_saelens(sae: SparseAutoencoder, directory: Path, info: Mapping[str, Any] | None = None) -> None:
    """Write `sae` into the (new, empty) `directory` in SAELens's format."""
    directory.mkdir(parents=True, exist_ok=True)
    save_file(saelens_tensors(sae), str(directory / SAELENS_WEIGHTS))
    write_record(directory / SAELENS_CFG, SAELENS_CFG_SCHEMA, saelens_cfg(sae, info))


def source_info(path: Path) -> dict[str, Any]:
    """What the checkpoint says about its activations: ours/sparsify's configuration as is (with, inside a run, the
    run's context size, BOS prefix and corpus: `run_data_info`), SAELens's model and hook names from its `metadata`;
    empty for other formats."""
    if (path / WEIGHTS_FILE).is_file():
        try:
            data = read_checkpoint_cfg(path)
        except CheckpointError:
            return {}
        return data | run_data_info(path)
    try:
        data = json.loads((path / SAELENS_CFG).read_text())
    except (OSError, ValueError):
        return {}
    meta = data.get("metadata") if isinstance(data, dict) else None
    if (path / SAELENS_WEIGHTS).is_file() and isinstance(meta, dict):
        return {"model": meta.get("model_name"), "hookpoint": meta.get("hook_name")}
    return {}


RUN_SEARCH_DEPTH = 8
"""How many folders above a checkpoint are searched for the run.json it belongs to (milestones sit 5 deep)."""


def run_data_info(path: Path) -> dict[str, Any]:
    """SAELens's `context_size`, `prepend_bos` and `dataset_path` from the run.json of the run holding the checkpoint
    at `path` (its `data` section: ctx_len, prepend_bos, corpus); only what the run records."""
    for folder in list(Path(path).absolute().parents)[:RUN_SEARCH_DEPTH]:
        if (folder / RUN_MANIFEST).is_file():
            try:
                data = json.loads((folder / RUN_MANIFEST).read_text()).get("data")
            except (OSError, ValueError, AttributeError):
                return {}
            if not isinstance(data, dict) or data.get("source") not in ("lm", "cache"):
                return {}
            found = {"context_size": data.get("ctx_len"), "prepend_bos": data.get("prepend_bos"),
                     "dataset_path": data.get("corpus")}
            return {k: v for k, v in found.items() if v is not None}
    return {}
