"""The tiny synthetic-data run config the command tests train on, with the few values they vary."""

from __future__ import annotations


def tiny_synthetic_toml(*, seeds: list[int], num_tokens: int, eval_tokens: int, num_latents: int,
                        milestones: list[float] | None = None) -> str:
    """A TOML run config: 16-d synthetic data with one ambiguous, control and identifiable group, one TopK SAE
    (k 4), lr 3e-3 with 2 warm-up steps, batches of 256, no progress output."""
    milestone_line = f"milestones = {milestones}\n" if milestones else ""
    return f"""
[data]
source = "synthetic"
hookpoint = "synthetic"

[synthetic]
d_in = 16
num_features = 40
num_ambiguous_groups = 1
num_control_groups = 1
num_identifiable_groups = 1
group_rank = 3
group_firing_prob = 0.2
max_firing_prob = 0.3

[train]
seeds = {seeds}
batch_size = 256
num_tokens = {num_tokens}
eval_tokens = {eval_tokens}
lr = 3e-3
lr_warmup_steps = 2
{milestone_line}progress = false

[[sae]]
architecture = "topk"
num_latents = {num_latents}
k = 4
"""


def tiny_npy_toml(data: str, *, checkpoint_every: int) -> str:
    """A TOML run config on an npy file `data` (as written in the TOML: absolute, or relative to the run): 2 seeds
    of one TopK SAE (32 latents, k 4), 4 steps of 256 rows, held-out rows stored, on the CPU, no progress output."""
    return f"""\
[data]
source = "npy"
path = "{data}"

[train]
seeds = [0, 1]
batch_size = 256
num_tokens = 1024
lr_warmup_steps = 1
eval_tokens = 256
store_eval_tokens = 256
checkpoint_every = {checkpoint_every}
device = "cpu"
progress = false

[[sae]]
architecture = "topk"
num_latents = 32
k = 4
"""
