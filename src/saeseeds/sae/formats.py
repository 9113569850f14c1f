"""Readers for SAEs trained elsewhere (SAELens, dictionary_learning), converted exactly into our parameterisation.

Our SAE always subtracts b_dec before encoding; a checkpoint that does not is converted by folding b_dec
into the encoder bias (b_enc' = b_enc + W_enc b_dec), which leaves every pre-activation unchanged.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from saeseeds.errors import CheckpointError
from saeseeds.sae.checkpoint import (
    CFG_FILE,
    WEIGHTS_FILE,
    build_sae,
    load_sae,
    read_json,
    read_safetensors,
)
from saeseeds.sae.hub import resolve_checkpoint
from saeseeds.sae.model import SparseAutoencoder
from saeseeds.sae.registry import aliases, architecture_for_alias

SAELENS_WEIGHTS = "sae_weights.safetensors"
DICTLEARN_WEIGHTS = "ae.pt"
DICTLEARN_CFG = "config.json"


def is_checkpoint_dir(path: str | Path) -> bool:
    """Whether `path` is a folder holding a checkpoint's files (of any format, complete or not)."""
    path = Path(path)
    return path.is_dir() and any((path / f).is_file() for f in (CFG_FILE, WEIGHTS_FILE, SAELENS_WEIGHTS,
                                                                 DICTLEARN_WEIGHTS))


def detect_format(path: str | Path) -> str:
    """'saeseeds' (ours or sparsify's), 'saelens' or 'dictionary_learning', from the files in `path`."""
    path = resolve_checkpoint(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {path} does not exist")
    if (path / WEIGHTS_FILE).exists():
        return "saeseeds"
    if (path / SAELENS_WEIGHTS).exists():
        return "saelens"
    if (path / DICTLEARN_WEIGHTS).exists():
        return "dictionary_learning"
    raise CheckpointError(
        f"{path} holds no SAE checkpoint: expected {WEIGHTS_FILE} (saeseeds/sparsify), "
        f"{SAELENS_WEIGHTS} (SAELens) or {DICTLEARN_WEIGHTS} (dictionary_learning)"
    )


def load_any(path: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """Load a checkpoint of any supported format, from a folder or a hub name (`saeseeds.sae.hub`)."""
    path = resolve_checkpoint(path)
    fmt = detect_format(path)
    if fmt == "saelens":
        return load_saelens(path, device)
    if fmt == "dictionary_learning":
        return load_dictionary_learning(path, device)
    return load_sae(path, device)


def _fold_b_dec(W_enc: torch.Tensor, b_enc: torch.Tensor, b_dec: torch.Tensor) -> torch.Tensor:
    """Encoder bias that gives the same pre-activations when b_dec is subtracted from the input first."""
    return b_enc + W_enc @ b_dec


def _need(tensors: dict[str, torch.Tensor], names: tuple[str, ...], source: Path) -> None:
    missing = [n for n in names if n not in tensors]
    if missing:
        raise CheckpointError(f"{source} lacks tensor(s) {', '.join(missing)} (has {', '.join(sorted(tensors))})")


def load_saelens(path: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """SAELens: `cfg.json` + `sae_weights.safetensors` with `W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`."""
    path = Path(path)
    cfg = read_json(path / CFG_FILE)
    weights = path / SAELENS_WEIGHTS
    arch_name = str(cfg.get("architecture", "standard"))
    architecture = architecture_for_alias("saelens", arch_name)
    if architecture is None:
        raise CheckpointError(
            f"{path / CFG_FILE}: SAELens architecture {arch_name!r} is not supported "
            f"(supported: {', '.join(aliases('saelens'))})"
        )
    tensors = read_safetensors(weights)
    _need(tensors, ("W_enc", "b_enc", "W_dec", "b_dec"), weights)
    norm = cfg.get("normalize_activations", "none")
    if norm not in (None, "none"):
        raise CheckpointError(
            f"{path / CFG_FILE}: normalize_activations={norm!r} needs a scaling factor that is not in the "
            "checkpoint; fold it into the weights first (SAELens: fold_activation_norm_scaling_factor)"
        )
    W_enc = tensors["W_enc"].T.contiguous()  # → [d_sae, d_in]
    b_enc, W_dec, b_dec = tensors["b_enc"], tensors["W_dec"], tensors["b_dec"]
    for key in ("d_in", "d_sae"):
        want = W_enc.shape[1] if key == "d_in" else W_enc.shape[0]
        if key in cfg and int(cfg[key]) != want:
            raise CheckpointError(f"{path / CFG_FILE} says {key}={cfg[key]} but W_enc has shape {tuple(tensors['W_enc'].shape)}")
    if not cfg.get("apply_b_dec_to_input", True):
        b_enc = _fold_b_dec(W_enc, b_enc, b_dec)
    if arch_name == "topk" and cfg.get("rescale_acts_by_decoder_norm", False):
        # pre-acts are multiplied by ‖W_dec,i‖ and latents divided by it before decoding: fold both in.
        norms = W_dec.norm(dim=1)
        W_enc, b_enc, W_dec = W_enc * norms[:, None], b_enc * norms, W_dec / norms[:, None]
    threshold = tensors.get("threshold")
    return build_sae(
        architecture,
        encoder_weight=W_enc,
        encoder_bias=b_enc,
        W_dec=W_dec,
        b_dec=b_dec,
        k=int(cfg.get("k", 0) or 0),
        threshold=threshold,
        normalize_decoder=False,
        source=str(path),
        device=device,
    )


def _load_torch_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says what matters
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt pickles
        text = str(err)
        if "Weights only load failed" in text:  # torch's 7-line advice ends in "weights_only=False": never do that
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            details = [line.removeprefix("WeightsUnpickler error:").strip() for line in lines[1:]
                       if not line.startswith(("Please file", "Check the documentation"))]
            details = [d for d in details if d]
            reason = f" ({details[0].rstrip('.')})" if details else ""
            raise CheckpointError(
                f"{path} holds pickled Python objects, not only tensors{reason}; refused to load it "
                "(saeseeds never runs code from a checkpoint)"
            ) from err
        first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch state dict: {first}") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} should hold a state dict, got {type(state).__name__}")
    return state


def load_dictionary_learning(path: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """dictionary_learning: `ae.pt` (state dict) + `config.json` whose trainer.dict_class names the model."""
    path = Path(path)
    cfg = read_json(path / DICTLEARN_CFG)
    trainer = cfg.get("trainer", {})
    dict_class = trainer.get("dict_class", "")
    architecture = architecture_for_alias("dictionary_learning", dict_class)
    if architecture is None:
        raise CheckpointError(
            f"{path / DICTLEARN_CFG}: trainer.dict_class {dict_class!r} is not supported "
            f"(supported: {', '.join(aliases('dictionary_learning'))})"
        )
    weights = path / DICTLEARN_WEIGHTS
    state = _load_torch_state(weights)
    threshold = None
    if dict_class == "AutoEncoder":
        _need(state, ("encoder.weight", "encoder.bias", "decoder.weight", "bias"), weights)
        W_enc, b_enc = state["encoder.weight"], state["encoder.bias"]
        W_dec, b_dec = state["decoder.weight"].T.contiguous(), state["bias"]
    elif dict_class == "JumpReluAutoEncoder":
        _need(state, ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"), weights)
        W_enc, W_dec, b_dec = state["W_enc"].T.contiguous(), state["W_dec"], state["b_dec"]
        # dictionary_learning's JumpReLU does not subtract b_dec from its input.
        b_enc = _fold_b_dec(W_enc, state["b_enc"], b_dec)
        threshold = state["threshold"]
    else:
        _need(state, ("encoder.weight", "encoder.bias", "decoder.weight", "b_dec"), weights)
        W_enc, b_enc = state["encoder.weight"], state["encoder.bias"]
        W_dec, b_dec = state["decoder.weight"].T.contiguous(), state["b_dec"]
        if dict_class == "BatchTopKSAE":
            thr = state.get("threshold")
            if thr is not None and float(thr.reshape(-1)[0]) >= 0:
                threshold = thr.reshape(-1)
    k = trainer.get("k", state.get("k", 0))
    k = int(k.item() if isinstance(k, torch.Tensor) else k or 0)
    return build_sae(
        architecture,
        encoder_weight=W_enc,
        encoder_bias=b_enc,
        W_dec=W_dec,
        b_dec=b_dec,
        k=k,
        threshold=threshold,
        normalize_decoder=False,
        source=str(path),
        device=device,
    )
