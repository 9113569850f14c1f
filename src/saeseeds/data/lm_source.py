"""Activation source from a Hugging Face language model: chunks → one forward per batch → [tokens, d_in].

One forward serves every SAE of a run. The stream always yields `dict[hookpoint, Tensor [tokens, d_in]]`,
a one-entry dict for one hookpoint (so the trainer names SAEs by the real hookpoint); every entry holds the
same tokens in the same order.
Positions holding special tokens (BOS/CLS, separators, padding) are dropped; activations are float32.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from saeseeds.config import LmConfig
from saeseeds.data.corpus import TokenChunks, build_token_chunks
from saeseeds.data.default_model import (
    DEFAULT_HOOKPOINT,
    DEFAULT_MODEL_NAME,
    default_model_path,
    is_default_model,
)
from saeseeds.data.hookpoints import capture_activations, resolve_hookpoints
from saeseeds.data.replay import Replay
from saeseeds.data.run_model import is_causal_config, model_identity
from saeseeds.data.types import Activations, EvalBatch, EvalData, SourcePair
from saeseeds.device import resolve_device, resolve_dtype
from saeseeds.distributed import current_world
from saeseeds.errors import ConfigError, DataError
from saeseeds.progress import tqdm

if TYPE_CHECKING:
    from saeseeds.config import RunConfig




# --------------------------------------------------------------------------------------------
# model loading (the device and dtype: saeseeds.device)


@dataclass
class LoadedModel:
    """A language model ready for hooking, its tokenizer, and what identifies it."""

    model: nn.Module
    tokenizer: Any
    name: str
    revision: str
    is_causal: bool
    device: torch.device
    dtype: torch.dtype


def _looks_like_path(model: str) -> bool:
    """A local path rather than a hub id: absolute, relative to . or .., or ~."""
    return model.startswith(("/", "./", "../", "~", "\\")) or model in (".", "..")


def check_local_model(cfg: LmConfig) -> None:
    """DataError in one line when `cfg.model` is a local path that does not exist (checked before anything else
    about the model: it is the first thing a user must fix, and it costs nothing)."""
    model = cfg.model
    if not is_default_model(model) and _looks_like_path(model) and not Path(model).expanduser().exists():
        raise DataError(f"lm.model {model!r}: cannot load it: no such local directory (and not a hub model id)")


def load_language_model(cfg: LmConfig) -> LoadedModel:
    """Load `cfg.model` (local path, cached hub name, or the embedded default) in eval mode; ConfigError before any
    weight loads when `cfg.ctx_len` is longer than the model can read (`check_ctx_len`)."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    from saeseeds.progress import quiet_libraries

    quiet_libraries()  # no "Loading weights" bar in a log or before an error line
    if is_default_model(cfg.model):
        source, name, revision = str(default_model_path()), DEFAULT_MODEL_NAME, "packaged"
    else:
        source, name, revision = cfg.model, cfg.model, cfg.revision
        check_local_model(cfg)
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if not Path(source).exists():
        kwargs["revision"] = cfg.revision
    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        raise DataError(f"lm.model {cfg.model or 'default'!r}: cannot load it ({err})") from err
    check_ctx_len(cfg.ctx_len, config, name)
    causal = is_causal_config(config)
    device = resolve_device(cfg.device, field="lm.device")
    dtype = resolve_dtype(cfg.model_dtype, device)
    try:
        model = (AutoModelForCausalLM if causal else AutoModel).from_pretrained(source, dtype=dtype, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        raise DataError(f"lm.model {cfg.model or 'default'!r}: cannot load it ({err})") from err
    model.to(device).eval()
    model.requires_grad_(False)
    return LoadedModel(model, tokenizer, name, revision, causal, device, dtype)


POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2}
"""Position ids a model reserves below its first token (RoBERTa counts positions from padding_idx + 1)."""


def max_positions(config: Any) -> int | None:
    """The most tokens a model's position embeddings take in one sequence (None when its config does not say)."""
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value - POSITION_OFFSET.get(getattr(config, "model_type", ""), 0)
    return None


def check_ctx_len(ctx_len: int, config: Any, name: str) -> None:
    """ConfigError naming the model's limit when `lm.ctx_len` is longer than its positions (a longer chunk would
    index past its position embeddings); `config` is the model's (transformers) config."""
    limit = max_positions(config)
    if limit is not None and ctx_len > limit:
        raise ConfigError(f"lm.ctx_len = {ctx_len} is longer than {name!r} can read; allowed: at most {limit} "
                          "(the model's position embeddings)")


def default_hookpoints(cfg: LmConfig) -> list[str]:
    """The configured hookpoints, or the default model's MLP hookpoint."""
    if cfg.hookpoints:
        return list(cfg.hookpoints)
    if is_default_model(cfg.model):
        return [DEFAULT_HOOKPOINT]
    raise DataError("lm.hookpoints: name at least one module of the model (e.g. 'transformer.h.6.mlp')")


# --------------------------------------------------------------------------------------------
# the activation stream


def forward_kwargs(model: nn.Module) -> dict[str, Any]:
    """Extra forward arguments: no KV cache for generative models (we never decode)."""
    config = getattr(model, "config", None)
    return {"use_cache": False} if config is not None and hasattr(config, "use_cache") else {}


def chunk_activations(
    model: nn.Module,
    chunks: torch.Tensor,
    hookpoints: Sequence[str],
    *,
    special_ids: Sequence[int] = (),
    hook_input: bool = False,
) -> dict[str, torch.Tensor]:
    """One forward over `chunks` [B, T]; each hookpoint's activations at text positions, flattened [N, d] float32."""
    device = next(model.parameters()).device
    input_ids = chunks.to(device)
    extra = forward_kwargs(model)
    with torch.inference_mode():
        acts = capture_activations(
            model, hookpoints, lambda: model(input_ids=input_ids, **extra), hook_input=hook_input
        )
        keep = ~torch.isin(input_ids, torch.tensor(list(special_ids), device=device, dtype=input_ids.dtype))
        out = {}
        for name in hookpoints:
            act = acts[name]
            if act.dim() != 3 or act.shape[:2] != input_ids.shape:
                raise DataError(
                    f"hookpoint {name!r}: activation of shape {tuple(act.shape)} is not [batch, seq, d] "
                    f"for input {tuple(input_ids.shape)}"
                )
            out[name] = act[keep].float()
    return out


def pack_output(acts: dict[str, torch.Tensor]) -> Activations:
    """The batch as yielded: always the hookpoint → tensor mapping (one entry for one hookpoint)."""
    return acts


class LmActivationStream:
    """Re-iterable stream of activation batches: one model forward per `batch_chunks` chunks, in chunk order."""

    def __init__(
        self,
        model: nn.Module,
        chunks: torch.Tensor,
        hookpoints: Sequence[str],
        *,
        batch_chunks: int,
        special_ids: Sequence[int] = (),
        hook_input: bool = False,
        progress: bool = False,
        desc: str = "LM forward",
        shard: bool = False,
    ) -> None:
        if batch_chunks <= 0:
            raise DataError(f"lm.lm_batch_size must be positive, got {batch_chunks}")
        self.model, self.chunks, self.hookpoints = model, chunks, list(hookpoints)
        self.batch_chunks, self.special_ids, self.hook_input = batch_chunks, tuple(special_ids), hook_input
        self.progress, self.desc = progress, desc
        self.world = current_world()
        self.shard = shard and self.world.active
        """Under torchrun, run the model on this rank's slice of each batch and all-gather the rest."""

    def __len__(self) -> int:
        """Number of forward batches."""
        return -(-self.chunks.shape[0] // self.batch_chunks)

    def batch_bounds(self) -> list[tuple[int, int]]:
        """Chunk ranges [start, end) of the forward batches, in order."""
        n = self.chunks.shape[0]
        return [(s, min(s + self.batch_chunks, n)) for s in range(0, n, self.batch_chunks)]

    def forward_batch(self, start: int, end: int) -> dict[str, torch.Tensor]:
        """Activations of chunks [start, end) for every hookpoint (rows in chunk order, however computed)."""
        empty = False
        if self.shard:
            bounds = torch.linspace(start, end, self.world.size + 1).round().long().tolist()
            mine = bounds[self.world.rank], bounds[self.world.rank + 1]
            empty = mine[0] == mine[1]  # fewer chunks than ranks: run one to learn the shapes, keep no rows
            start, end = (start, start + 1) if empty else mine
        acts = chunk_activations(
            self.model,
            self.chunks[start:end],
            self.hookpoints,
            special_ids=self.special_ids,
            hook_input=self.hook_input,
        )
        if self.shard:
            acts = {name: self.world.gather_rows(act[:0] if empty else act) for name, act in acts.items()}
        return acts

    def iter_dicts(self) -> Iterator[dict[str, torch.Tensor]]:
        """Forward batches as hookpoint → [tokens, d] dicts."""
        bounds = self.batch_bounds()
        for start, end in tqdm(bounds, desc=self.desc, disable=not self.progress, leave=False):
            yield self.forward_batch(start, end)

    def __iter__(self) -> Iterator[Activations]:
        for acts in self.iter_dicts():
            yield pack_output(acts)


def make_lm_streams(
    loaded: LoadedModel, chunks: TokenChunks, hookpoints: Sequence[str], cfg: LmConfig, *, progress: bool
) -> tuple[LmActivationStream, LmActivationStream]:
    """Train and eval streams over the same model, hookpoints and special-token exclusion."""
    special = chunks.special_ids if cfg.exclude_special_tokens else ()
    common = dict(batch_chunks=cfg.lm_batch_size, special_ids=special, hook_input=cfg.hook_input)
    train = LmActivationStream(
        loaded.model, chunks.train, hookpoints, progress=progress, desc="LM forward (train)",
        shard=cfg.distributed_forward == "sharded", **common
    )
    held_out = LmActivationStream(
        loaded.model, chunks.eval, hookpoints, progress=False, desc="LM forward (eval)", **common
    )
    return train, held_out


def lm_info(
    loaded: LoadedModel, chunks: TokenChunks, hookpoints: Sequence[str], cfg: LmConfig, d_in: Mapping[str, int]
) -> dict[str, Any]:
    """What run.json records about an LM source."""
    return {
        "source": "lm",
        "model": loaded.name,
        "revision": loaded.revision,
        "is_causal": loaded.is_causal,
        "model_identity": model_identity(getattr(loaded.model, "config", None)),
        "model_dtype": str(loaded.dtype).removeprefix("torch."),
        "hookpoints": list(hookpoints),
        "hook_input": cfg.hook_input,
        "d_in": dict(d_in),
        "corpus": chunks.corpus,
        "ctx_len": cfg.ctx_len,
        "prepend_bos": leads_with_special(chunks),
        "train_chunks": int(chunks.train.shape[0]),
        "eval_chunks": int(chunks.eval.shape[0]),
        "lm_batch_size": cfg.lm_batch_size,
        "exclude_special_tokens": cfg.exclude_special_tokens,
        "special_token_ids": list(chunks.special_ids),
        "token_fingerprint": chunks.fingerprint,
        "output": "mapping",
    }


def leads_with_special(chunks: TokenChunks) -> bool:
    """Whether every chunk starts with the same special token (the BOS/CLS prefix `pack_documents` adds)."""
    first = torch.cat([chunks.train[:, :1], chunks.eval[:, :1]]).flatten()  # one column: no copy of the grid
    return first.numel() > 0 and bool((first == first[0]).all()) and int(first[0]) in set(chunks.special_ids)


def prepare_lm(cfg: RunConfig, *, progress: bool | None = None) -> tuple[LoadedModel, TokenChunks, list[str]]:
    """Load the model, resolve hookpoints (wildcards expanded) and build the token chunks."""
    check_local_model(cfg.lm)
    patterns = default_hookpoints(cfg.lm)  # a run naming no hookpoint fails before the model loads
    loaded = load_language_model(cfg.lm)
    hookpoints = resolve_hookpoints(loaded.model, patterns)
    chunks = build_token_chunks(
        cfg.lm, loaded.tokenizer, shuffle=cfg.data.shuffle, shuffle_seed=cfg.data.shuffle_seed
    )
    return loaded, chunks, hookpoints


class TokenActivations(dict):
    """An eval batch (hookpoint → [rows, d] like any other) that also knows which tokens its rows are.

    `chunks` [B, ctx_len] are its held-out chunks, `token_ids` [rows] the token of each row and `positions`
    [rows] the row's flat index in the whole held-out chunk grid; the trainer stores them in <run>/eval/.
    """

    chunks: torch.Tensor
    token_ids: torch.Tensor
    positions: torch.Tensor


def held_out_batches(stream: LmActivationStream) -> list[TokenActivations]:
    """The eval stream's batches, each carrying its chunks and each row's token id and grid position."""
    ctx_len = stream.chunks.shape[1]
    special = torch.tensor(list(stream.special_ids), dtype=stream.chunks.dtype)
    out = []
    for start, end in tqdm(stream.batch_bounds(), desc=stream.desc, disable=not stream.progress, leave=False):
        ids = stream.chunks[start:end]
        keep = ~torch.isin(ids, special)
        batch = TokenActivations(stream.forward_batch(start, end))
        batch.chunks = ids.clone()
        batch.token_ids = ids[keep]
        batch.positions = torch.arange(start * ctx_len, end * ctx_len).reshape(ids.shape)[keep]
        out.append(batch)
    return out


def lm_source_pair(loaded: LoadedModel, chunks: TokenChunks, hookpoints: Sequence[str], cfg: RunConfig) -> SourcePair:
    """SourcePair over a loaded model: train is a lazy re-iterable stream (replayed for `lm.epochs`)."""
    train, held_out = make_lm_streams(loaded, chunks, hookpoints, cfg.lm, progress=cfg.train.progress)
    eval_batches = held_out_batches(held_out)
    first = eval_batches[0]
    d_in = {h: int(first[h].shape[-1]) for h in hookpoints}
    info = lm_info(loaded, chunks, hookpoints, cfg.lm, d_in) | {"epochs": cfg.lm.epochs}
    return SourcePair(Replay(train, cfg.lm.epochs), eval_batches, info)


def build_lm_source(cfg: RunConfig) -> SourcePair:
    """SourcePair over the live model named by `cfg.lm`."""
    loaded, chunks, hookpoints = prepare_lm(cfg)
    return lm_source_pair(loaded, chunks, hookpoints, cfg)


def rebuild_lm_held_out(cfg: RunConfig, *, max_chunks: int = 0, progress: bool = False) -> EvalData:
    """An LM run's held-out set built again, for a run that stored none: the model, hookpoints and token chunks
    prepared in one call (`prepare_lm`), then its held-out chunks (the first `max_chunks` when > 0) through the
    model in batches of `lm.lm_batch_size` chunks as in training, each row keeping its token id and grid position."""
    loaded, token_chunks, hookpoints = prepare_lm(cfg, progress=progress)
    chunks = token_chunks.eval[:max_chunks] if max_chunks > 0 else token_chunks.eval
    if chunks.numel() == 0:
        raise DataError("the run has no held-out token chunks (lm.eval_chunks = 0)")
    special = tuple(token_chunks.special_ids) if cfg.lm.exclude_special_tokens else ()
    stream = LmActivationStream(loaded.model, chunks, hookpoints, batch_chunks=max(cfg.lm.lm_batch_size, 1),
                                special_ids=special, hook_input=cfg.lm.hook_input, progress=progress,
                                desc="eval forward")
    batches = []
    for acts in held_out_batches(stream):
        rows = next(iter(acts.values())).shape[0]
        if rows != acts.token_ids.numel():
            raise DataError(f"eval forward: {rows} activation rows for {acts.token_ids.numel()} text tokens")
        batches.append(EvalBatch({h: a.cpu() for h, a in acts.items()}, acts.token_ids, acts.positions))
    vocab = max(len(loaded.tokenizer), int(chunks.max()) + 1)
    return EvalData(batches, list(hookpoints), chunks, loaded.tokenizer, vocab, loaded, special, {"source": "lm"})
