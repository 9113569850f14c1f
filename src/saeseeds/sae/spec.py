"""What one SAE architecture contributes to the shared encoder/decoder: the base class every registered spec extends."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saeseeds.config.checks import check_int
from saeseeds.errors import CheckpointError
from saeseeds.sae.outputs import Encoding

if TYPE_CHECKING:
    from saeseeds.config import SaeConfig


class SparsityPenalty(NamedTuple):
    """The weight of an architecture's sparsity loss and its linear warm-up (0 steps: the trainer's default)."""

    coefficient: float
    warmup_steps: int


class ArchitectureSpec:
    """Everything that differs between architectures; `SparseAutoencoder`, `Member` and checkpoints ask it.

    Subclasses override `encode` and whichever hooks they need; the defaults describe an architecture with
    no extra parameters, no auxiliary or sparsity loss, and a per-token squared-error reconstruction loss.
    """

    activation: str = ""
    """The `activation` field of cfg.json (sparsify's name for it); empty means the registered name."""
    fields: tuple[str, ...] = ()
    """The `SaeConfig` fields this architecture reads besides the shared ones (validated by `validate`)."""
    encoder_init_scale: float = 1.0
    """The encoder starts as this multiple of the decoder's transpose."""
    saelens_names: tuple[str, ...] = ()
    """SAELens `architecture` values whose checkpoints load as this architecture."""
    dictionary_learning_classes: tuple[str, ...] = ()
    """dictionary_learning `trainer.dict_class` values whose checkpoints load as this architecture."""
    latent_unit_tensors: tuple[str, ...] | None = None
    """Set by a positively homogeneous architecture (f(a·z) = a·f(z) for a > 0 once these checkpoint tensors, its
    thresholds, are scaled by a too): a checkpoint's input scale then goes into the biases and these tensors, and
    the decoder rows stay unit-norm. None: it goes into the weights (exact for any architecture)."""
    sparsify_k: bool = False
    """sparsify computes this activation exactly, so cfg.json gets sparsify's `k` (sparsify refuses any other
    `activation`, and without `k` SAELens's sparsify loader fails instead of misreading the SAE)."""
    scale_free_tensors: tuple[str, ...] = ()
    """Checkpoint tensors the homogeneous input-scale fold leaves as they are (rasae's dictionary factors, which,
    like W_dec, that fold does not touch); with `latent_unit_tensors` they make the architecture homogeneous."""
    sidecar_tensors: tuple[str, ...] = ()
    """Checkpoint tensors kept beside sae.safetensors, in saeseeds.safetensors, so a plain reader of the
    activation (sparsify loads strictly) sees only the tensors it knows."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        """The two checkpoint facts describe one exact encode: a subclass that does not restate them (it may
        encode otherwise) falls back to the safe defaults instead of inheriting them."""
        super().__init_subclass__(**kwargs)
        for name in ("latent_unit_tensors", "sparsify_k"):
            if name not in cls.__dict__:
                setattr(cls, name, getattr(ArchitectureSpec, name))

    @property
    def uses_k(self) -> bool:
        """Whether the architecture keeps `k` latents per token (so a checkpoint must record k)."""
        return "k" in self.fields

    # ---------------------------------------------------------------- configuration

    def validate(self, cfg: SaeConfig, where: str, d_in: int | None) -> None:
        """Range checks of the fields in `fields`; `d_in` (None while unknown) resolves the dictionary size."""

    # ---------------------------------------------------------------- model

    def init_extra(self, sae: nn.Module, device: torch.device | str | None, dtype: torch.dtype) -> None:
        """Register the architecture's own parameters and buffers on `sae` (after the shared ones)."""

    def encode(self, sae: nn.Module, x_centered: Tensor) -> Encoding:
        """Latent activations of `x − b_dec`, as a sparse code or dense, with the sparsity loss term."""
        raise NotImplementedError

    def reconstruction_loss(self, fvu: Tensor, residual: Tensor) -> Tensor:
        """The loss's reconstruction term: by default Σ_dims (x − x̂)², averaged over tokens."""
        return residual.pow(2).sum(-1).mean()

    def reconstruction_term(
        self, sae: nn.Module, x: Tensor, enc: Encoding, decoder: Tensor, fvu: Tensor, residual: Tensor
    ) -> Tensor:
        """The training loss's reconstruction term given the whole forward (matryoshka sums prefix FVUs);
        `reconstruction_loss` by default."""
        return self.reconstruction_loss(fvu, residual)

    def decoder(self, sae: nn.Module) -> Tensor:
        """The decoder rows the training forward differentiates through: W_dec itself by default (rasae: the
        product of its factors, materialised into W_dec after every step)."""
        return sae.W_dec

    def shared_points(self, cfg: SaeConfig, num_latents: int) -> int:
        """How many k-means centroids of the run's init sample, the same for every seed, this architecture
        needs at initialisation (rasae's candidates); 0: none."""
        return 0

    def init_weights(self, sae: nn.Module, generator: torch.Generator | None, points: Tensor | None) -> Tensor | None:
        """Set the architecture's own initial values after the shared ones (`points`: `shared_points` centroids);
        the decoder rows (CPU float32) the encoder initialisation should follow if it replaced them, else None."""
        return None

    def aux_loss(
        self, sae: nn.Module, x: Tensor, enc: Encoding, residual: Tensor, dead_mask: Tensor | None
    ) -> Tensor:
        """An auxiliary loss (e.g. AuxK, which revives dead latents); 0 by default."""
        return x.new_zeros(())

    # ---------------------------------------------------------------- training

    def sparsity_penalty(self, cfg: SaeConfig) -> SparsityPenalty | None:
        """Coefficient and warm-up of `Encoding.sparsity_loss` in the training loss; None: not used."""
        return None

    def post_step(self, sae: nn.Module) -> None:
        """Runs under no_grad after every optimizer step (e.g. clamping thresholds)."""

    # ---------------------------------------------------------------- checkpoints

    def checkpoint_tensors(self, sae: nn.Module) -> dict[str, Tensor]:
        """The architecture's tensors in a checkpoint, beyond encoder.weight/bias, W_dec, b_dec."""
        return {}

    def load_checkpoint_tensors(self, sae: nn.Module, tensors: Mapping[str, Tensor], source: str) -> None:
        """Copy what `checkpoint_tensors` wrote (or a foreign format's equivalent) into `sae`."""


def pre_activations(sae: nn.Module, x_centered: Tensor) -> Tensor:
    """Dense encoder pre-activations (x − b_dec) W_encᵀ + b_enc."""
    return F.linear(x_centered, sae.encoder.weight, sae.encoder.bias)


def validate_k(cfg: SaeConfig, where: str, d_in: int | None) -> None:
    """1 <= k, and k <= num_latents once the dictionary size is known (at load time or when d_in is)."""
    known = cfg.known_num_latents(d_in)
    if known is None:
        check_int(f"{where}.k", cfg.k, 1, note="at most num_latents, checked once d_in is known")
        return
    num_latents, origin = known
    note = f"num_latents = {num_latents}" if origin == "num_latents" else f"num_latents = {origin} = {num_latents}"
    check_int(f"{where}.k", cfg.k, 1, num_latents, note)


def per_latent(tensors: Mapping[str, Tensor], name: str, n: int, source: str) -> Tensor | None:
    """Checkpoint tensor `name` as a [n] vector (a scalar is broadcast), None when absent; bad shapes raise."""
    tensor = tensors.get(name)
    if tensor is None:
        return None
    if tensor.numel() not in (1, n):
        raise CheckpointError(f"{source}: {name} has shape {tuple(tensor.shape)}, expected ({n},)")
    return tensor.reshape(-1).expand(n)


def require(tensors: Mapping[str, Tensor], name: str, n: int, source: str, architecture: str) -> Tensor:
    """Like `per_latent`, but a missing tensor is a CheckpointError naming the architecture."""
    tensor = per_latent(tensors, name, n, source)
    if tensor is None:
        raise CheckpointError(f"{source}: a {architecture} SAE needs a {name} tensor")
    return tensor

