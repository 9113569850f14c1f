"""ReLU activation with an L1 penalty weighted by decoder norms (the 'standard' SAE, Conerly et al. 2024)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from saeseeds.config.checks import check_float, check_int
from saeseeds.sae.outputs import Encoding
from saeseeds.sae.registry import register_architecture
from saeseeds.sae.spec import ArchitectureSpec, SparsityPenalty, pre_activations

if TYPE_CHECKING:
    from saeseeds.config import SaeConfig
    from saeseeds.sae.model import SparseAutoencoder


def encode_relu(pre_acts: Tensor, W_dec: Tensor) -> Encoding:
    """Dense ReLU activations; the penalty is Σ_i f_i · ‖W_dec,i‖ per token, so shrinking the decoder cannot game it."""
    dense = pre_acts.relu()
    penalty = (dense * W_dec.norm(dim=1)).sum(-1).mean()
    return Encoding(None, None, dense, pre_acts, penalty)


class Relu(ArchitectureSpec):
    """Dense ReLU code trained on squared error plus a warmed-up, decoder-norm-weighted L1 penalty."""

    activation = "relu"
    fields = ("l1_coefficient", "l1_warmup_steps")
    encoder_init_scale = 0.1  # a small encoder (Conerly et al. 2024) so the dense initial code is not huge
    saelens_names = ("standard",)
    dictionary_learning_classes = ("AutoEncoder",)
    latent_unit_tensors = ()

    def validate(self, cfg: SaeConfig, where: str, d_in: int | None) -> None:
        """l1_coefficient >= 0, l1_warmup_steps >= 0."""
        check_float(f"{where}.l1_coefficient", cfg.l1_coefficient, 0.0)
        check_int(f"{where}.l1_warmup_steps", cfg.l1_warmup_steps, 0, note="0 means 5% of training")

    def encode(self, sae: SparseAutoencoder, x_centered: Tensor) -> Encoding:
        """ReLU of the pre-activations, with the L1 penalty."""
        return encode_relu(pre_activations(sae, x_centered), sae.W_dec)

    def sparsity_penalty(self, cfg: SaeConfig) -> SparsityPenalty:
        """The L1 coefficient and its warm-up."""
        return SparsityPenalty(cfg.l1_coefficient, cfg.l1_warmup_steps)


RELU = register_architecture("relu", Relu())
