"""Value types returned by the SAE: the sparse latent code and the training forward's outputs."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class LatentCode(NamedTuple):
    """Sparse latent activations: for each token, `values[b, j]` of latent `indices[b, j]` (value 0 = padding)."""

    values: Tensor
    indices: Tensor


class Encoding(NamedTuple):
    """What an architecture's encoder produces: a sparse code, or dense activations when it has no fixed k."""

    values: Tensor | None
    """[batch, k] activations of the selected latents (sparse architectures), else None."""
    indices: Tensor | None
    dense: Tensor | None
    """[batch, num_latents] activations (dense architectures), else None."""
    pre_acts: Tensor
    """[batch, num_latents] encoder pre-activations, detached for sparse architectures (AuxK reads them)."""
    sparsity_loss: Tensor
    """The architecture's sparsity penalty per token (0 for topk and batchtopk), before its coefficient."""


class ForwardOutput(NamedTuple):
    """One training forward: reconstruction, its losses, and which latents fired."""

    sae_out: Tensor
    fvu: Tensor
    """Σ‖x − x̂‖² / Σ‖x − x̄‖² over this batch (x̄: this batch's mean)."""
    recon_loss: Tensor
    """The reconstruction term of the loss: FVU (topk, batchtopk) or Σ_dims (x − x̂)² averaged over tokens."""
    sparsity_loss: Tensor
    aux_loss: Tensor
    """AuxK loss (reconstruction of the residual by dead latents), 0 when unused."""
    l0: Tensor
    """Mean number of non-zero latents per token."""
    fired: Tensor
    """[num_latents] bool: latents non-zero on at least one token of the batch."""
