"""ReLU activation with an L1 penalty weighted by decoder norms (the 'standard' SAE, Conerly et al. 2024)."""

from __future__ import annotations

from torch import Tensor

from saeseeds.sae.outputs import Encoding


def encode_relu(pre_acts: Tensor, W_dec: Tensor) -> Encoding:
    """Dense ReLU activations; the penalty is Σ_i f_i · ‖W_dec,i‖ per token, so shrinking the decoder cannot game it."""
    dense = pre_acts.relu()
    penalty = (dense * W_dec.norm(dim=1)).sum(-1).mean()
    return Encoding(None, None, dense, pre_acts, penalty)
