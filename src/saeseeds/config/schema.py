"""The run configuration's sections (data, train, saes, lm, synthetic), each with a `validate()` of every field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from saeseeds.config.architectures import (
    architecture_knobs,
    architecture_names,
    has_sparsity_penalty,
)
from saeseeds.config.checks import (
    check_bool,
    check_choice,
    check_device,
    check_dir_name,
    check_finite_fields,
    check_fits_memory,
    check_float,
    check_hookpoint,
    check_int,
    check_seeds,
    check_text,
    fail,
)
from saeseeds.config.lm import LmConfig
from saeseeds.config.synthetic import SyntheticConfig
from saeseeds.errors import ConfigError

Source = Literal["npy", "safetensors", "lm", "cache", "synthetic"]
SOURCES: tuple[str, ...] = get_args(Source)
LrDecay = Literal["linear", "cosine", "constant"]
TrainDtype = Literal["float32", "bfloat16"]
InitEncoder = Literal["transpose", "random"]
InitDecoder = Literal["random", "data", "kmeans"]
InitBDec = Literal["mean", "zeros", "geometric_median"]
FILE_SOURCES = ("npy", "safetensors", "cache")
"""Sources that read `data.path`."""
LM_SOURCES = ("lm", "cache")
"""Sources configured by the [lm] section."""


@dataclass
class SaeConfig:
    """One SAE configuration of a run; every seed of the run trains one SAE of each configuration."""

    architecture: str = "topk"
    """A registered architecture (`saeseeds.sae.registry`): topk (Gao et al.), batchtopk (Bussmann et al.),
    relu + L1 (Bricken/Conerly), jumprelu (Rajamanoharan et al.), matryoshka (Matryoshka BatchTopK, Bussmann et al.
    2025), rasae (Relaxed Archetypal SAE, Fel et al. 2025)."""
    num_latents: int = 0
    """Dictionary size; 0 means expansion_factor * d_in. The encoder and decoder must fit in this machine's memory."""
    expansion_factor: int = 8
    """Dictionary size as a multiple of d_in, used when num_latents is 0."""
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
    lr: float = 0.0
    """This SAE's Adam learning rate; 0 means train.lr (so a sweep can vary it per [[sae]])."""
    lr_warmup_steps: int = 0
    """This SAE's learning-rate warm-up; 0 means train.lr_warmup_steps."""
    target_l0: float = 0.0
    """relu / jumprelu: steer the sparsity coefficient so the training L0 reaches this value (0: off); the
    L0 controller of docs/definitions.md ("Matched L0") adjusts it after warm-up, then freezes it."""
    l0_control_until: float = 0.8
    """Fraction of training after which the L0 controller's coefficient is frozen (with target_l0 > 0)."""
    matryoshka_prefixes: list[int] = field(default_factory=list)
    """matryoshka: the nested prefix sizes m, strictly increasing, each <= num_latents (num_latents is always the
    last; empty: num_latents/16, /8, /4, /2, num_latents); the loss sums the FVU of every prefix's reconstruction."""
    rasae_delta: float = 1.0
    """rasae: bound on each atom's relaxation norm, in normalised-activation units (Fel et al.'s default 1.0):
    every atom lies within this distance of the convex hull of the run's k-means centroids; 0: pure archetypal."""
    rasae_candidates: int = 0
    """rasae: number of candidate points (k-means centroids of the run's init sample, shared by every seed);
    0 means 2 x num_latents, so each seed starts its atoms on its own random half of them."""
    init_encoder: InitEncoder = "transpose"
    """Encoder initialisation: transpose (the decoder's transpose, today's default) or random (independent
    random unit rows from the seed's generator)."""
    init_decoder: InitDecoder = "random"
    """Decoder initialisation: random (unit Gaussian rows), data (normalised rows sampled per seed from the run's
    init sample, centred on its mean) or kmeans (normalised k-means centroids of that centred sample, k-means++
    seeded per seed); data and kmeans then scale the encoder to fit the first batch. rasae: random only."""
    init_b_dec: InitBDec = "mean"
    """b_dec initialisation: mean (of the first training batch, the default), zeros, or geometric_median (of
    the run's init sample, Weiszfeld iterations); rasae has no decoder bias (b_dec stays 0)."""

    def resolved_num_latents(self, d_in: int) -> int:
        """Dictionary size for an input width `d_in`."""
        return self.num_latents if self.num_latents > 0 else self.expansion_factor * d_in

    def resolved_name(self, d_in: int) -> str:
        """Directory name of this configuration."""
        return self.name or f"{self.architecture}-{self.resolved_num_latents(d_in)}"

    def validate(self, where: str = "sae", d_in: int | None = None) -> None:
        """Check the shared fields, then the fields the architecture uses (its registered spec's `validate`).

        `d_in`, when known, resolves an expansion-based dictionary size so `k <= num_latents` can be checked.
        """
        names = architecture_names()
        if self.architecture not in names:
            raise fail(f"{where}.architecture", self.architecture, f"one of {', '.join(names)}", "is not registered")
        check_int(f"{where}.num_latents", self.num_latents, 0, note="0 means expansion_factor x d_in")
        check_int(f"{where}.expansion_factor", self.expansion_factor, 1)
        check_dir_name(f"{where}.name", self.name, "empty means '<architecture>-<num_latents>'")
        check_bool(f"{where}.normalize_decoder", self.normalize_decoder)
        if d_in is not None:
            check_int("d_in", d_in, 1)
            check_fits_memory(where, self, d_in)
        architecture_knobs(self.architecture).validate(self, where, d_in)
        check_float(f"{where}.lr", self.lr, 0.0, note="0 means train.lr")
        check_int(f"{where}.lr_warmup_steps", self.lr_warmup_steps, 0, note="0 means train.lr_warmup_steps")
        check_float(f"{where}.target_l0", self.target_l0, 0.0, note="0 turns the L0 controller off")
        check_float(f"{where}.l0_control_until", self.l0_control_until, 0.0, 1.0, lo_open=True,
                    note="a fraction of training")
        check_choice(f"{where}.init_encoder", self.init_encoder, get_args(InitEncoder))
        check_choice(f"{where}.init_decoder", self.init_decoder, get_args(InitDecoder))
        check_choice(f"{where}.init_b_dec", self.init_b_dec, get_args(InitBDec))
        if self.target_l0 > 0 and not has_sparsity_penalty(self):
            raise fail(f"{where}.target_l0", self.target_l0, "0 for an architecture without a sparsity penalty",
                       f"cannot steer {self.architecture}, whose L0 is set by k")

    def known_num_latents(self, d_in: int | None) -> tuple[int, str] | None:
        """The dictionary size and where it comes from ('num_latents' or 'expansion_factor 8 x d_in 32'),
        or None while it depends on a d_in not yet known."""
        if self.num_latents > 0:
            return self.num_latents, "num_latents"
        if d_in is None:
            return None
        return self.resolved_num_latents(d_in), f"expansion_factor {self.expansion_factor} x d_in {d_in}"


@dataclass
class TrainConfig:
    """Optimisation, evaluation and checkpointing of the lockstep trainer."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds to train; every [[sae]] configuration trains one SAE per seed, all on the same batches."""
    batch_size: int = 4096
    """Tokens per optimisation step (activation rows)."""
    num_tokens: int = 2_000_000
    """Training tokens; steps = num_tokens // batch_size."""
    lr: float = 0.0
    """Adam learning rate; 0 means sparsify's scaling rule 2e-4 / sqrt(num_latents / 2**14)."""
    lr_warmup_steps: int = 100
    """Linear learning-rate warm-up from 0 over this many steps."""
    lr_decay: LrDecay = "linear"
    """Learning-rate decay to 0 after lr_decay_start of training: linear, cosine, or none (constant)."""
    lr_decay_start: float = 0.8
    """Fraction of training after which the learning rate decays to 0."""
    adam_beta1: float = 0.9
    """Adam β1 (momentum of the gradient average), in [0, 1)."""
    adam_beta2: float = 0.999
    """Adam β2 (momentum of the squared-gradient average), in [0, 1)."""
    adam_eps: float = 1e-8
    """Adam ε (> 0), added to the denominator."""
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
    dtype: TrainDtype = "float32"
    """Autocast dtype of the forward pass on CUDA; parameters stay float32."""
    normalize_activations: bool = True
    """Scale inputs by a constant so their mean squared norm is d_in (estimated on the first batch, saved)."""
    store_eval_tokens: int = 262_144
    """Held-out rows kept in <run>/eval/ (raw activations, token ids) for analyses; 0 stores none."""
    lm_loss: bool = True
    """After training a causal-LM run: each SAE's reconstruction spliced into the model on the stored held-out
    chunks (CE, KL, loss recovered) into <run>/lm_loss.json; costs (2 + SAEs) model passes over those chunks."""
    progress: bool = True
    """Show progress (a bar on a terminal, a status line every 30 s off it); the CLI's --quiet turns it off."""
    log_every: int = 0
    """Append the training loss, FVU, L0 and learning rate, averaged over this many steps, to <run>/metrics.jsonl
    (and TensorBoard / wandb); 0 means automatic: max(10, steps // 1000), so at most ~1000 lines per SAE."""
    tensorboard: bool = False
    """Also write the training and evaluation metrics as TensorBoard event files in <run>/tensorboard/
    (needs the `tensorboard` package: pip install 'saeseeds[logging]')."""
    wandb_project: str = ""
    """Also log the metrics to this Weights & Biases project (needs `wandb`; empty: off). WANDB_MODE=offline
    keeps the run local."""
    milestones: list[float] = field(default_factory=list)
    """Fractions of the budget in (0, 1] at which a copy of every SAE is kept in <run>/milestones/ (each
    evaluated there too), so one run gives overlap vs training time; empty keeps none."""
    init_sample_tokens: int = 16_384
    """Rows of the training stream's start kept as the run's init sample (<run>/init_sample.safetensors) when an
    [[sae]] needs one (init_decoder data/kmeans, init_b_dec geometric_median, rasae); read without consuming
    the stream, the same rows for every seed."""
    batched_seeds: bool = False
    """Train the seeds of each configuration as one stacked module (one batched GEMM, one fused Adam step);
    equal to the per-member path within a documented tolerance (docs/performance.md). Off until proven on GPUs."""

    def milestone_steps(self) -> list[int]:
        """The steps of `milestones` (fraction x total steps, rounded, at least 1), sorted and distinct."""
        total = max(self.num_tokens // self.batch_size, 1)
        return sorted({min(max(round(f * total), 1), total) for f in self.milestones})

    def validate(self, where: str = "train") -> None:
        """Range checks of every field; a bad one raises ConfigError naming `train.<field>`."""
        check_seeds(f"{where}.seeds", self.seeds)
        check_int(f"{where}.batch_size", self.batch_size, 1)
        check_int(f"{where}.num_tokens", self.num_tokens, 1)
        if self.num_tokens < self.batch_size:
            raise fail(
                f"{where}.num_tokens", self.num_tokens,
                f">= {where}.batch_size ({self.batch_size}), so there is at least one step",
                "is less than one batch",
            )
        check_float(f"{where}.lr", self.lr, 0.0, note="0 means 2e-4 / sqrt(num_latents / 2**14)")
        check_int(f"{where}.lr_warmup_steps", self.lr_warmup_steps, 0)
        check_choice(f"{where}.lr_decay", self.lr_decay, get_args(LrDecay))
        check_float(f"{where}.lr_decay_start", self.lr_decay_start, 0.0, 1.0, note="a fraction of training")
        check_float(f"{where}.adam_beta1", self.adam_beta1, 0.0, 1.0, hi_open=True)
        check_float(f"{where}.adam_beta2", self.adam_beta2, 0.0, 1.0, hi_open=True)
        check_float(f"{where}.adam_eps", self.adam_eps, 0.0, lo_open=True)
        check_float(f"{where}.grad_clip", self.grad_clip, 0.0, note="0 disables clipping")
        check_int(f"{where}.dead_tokens_threshold", self.dead_tokens_threshold, 1)
        check_int(f"{where}.eval_every", self.eval_every, 0, note="0 evaluates only at the end")
        check_int(f"{where}.eval_tokens", self.eval_tokens, 1)
        check_int(f"{where}.checkpoint_every", self.checkpoint_every, 0, note="0 means 10 times per run")
        check_device(f"{where}.device", self.device)
        check_choice(f"{where}.dtype", self.dtype, get_args(TrainDtype))
        check_bool(f"{where}.normalize_activations", self.normalize_activations)
        check_int(f"{where}.store_eval_tokens", self.store_eval_tokens, 0, note="0 stores none")
        check_bool(f"{where}.progress", self.progress)
        check_bool(f"{where}.lm_loss", self.lm_loss)
        check_bool(f"{where}.batched_seeds", self.batched_seeds)
        check_int(f"{where}.init_sample_tokens", self.init_sample_tokens, 1)
        check_int(f"{where}.log_every", self.log_every, 0, note="0 means max(10, steps // 1000)")
        check_bool(f"{where}.tensorboard", self.tensorboard)
        if not isinstance(self.wandb_project, str):
            raise fail(f"{where}.wandb_project", self.wandb_project, "a project name (empty: off)", "is not a string")
        if not isinstance(self.milestones, list):
            raise fail(f"{where}.milestones", self.milestones, "a list of fractions in (0, 1]", "is not a list")
        for i, fraction in enumerate(self.milestones):
            check_float(f"{where}.milestones[{i}]", fraction, 0.0, 1.0, lo_open=True, note="a fraction of the budget")


@dataclass
class DataConfig:
    """Where the activation stream comes from; every SAE of a run sees the same batches in the same order."""

    source: Source = "lm"
    """Where activations come from: a language model (lm), a cache made by `saeseeds cache`, array files
    (npy, safetensors), or the synthetic ground-truth generator."""
    path: str = ""
    """npy/safetensors: the one file of activations [tokens, d_in], real numbers; cache: the cache directory. A
    relative path is relative to where `train` runs; later stages read the file run.json records."""
    tensor: str = ""
    """safetensors: name of the tensor to read (default: the only one)."""
    hookpoint: str = "activations"
    """Name of the hookpoint for sources that do not define one (array files)."""
    eval_fraction: float = 0.05
    """Share of rows of an array source held out for evaluation (taken from the end)."""
    shuffle_seed: int = 0
    """Seed of the one fixed order of rows (array sources) or chunks (text)."""
    shuffle: bool = True
    """Shuffle rows (array sources) or chunks (text) in the fixed order of shuffle_seed."""

    def validate(self, where: str = "data") -> None:
        """Range checks of every field; a bad one raises ConfigError naming `data.<field>`."""
        check_choice(f"{where}.source", self.source, SOURCES)
        if self.source in FILE_SOURCES:
            check_text(f"{where}.path", self.path, f"required when {where}.source is {self.source}")
        elif not isinstance(self.path, str):
            raise fail(f"{where}.path", self.path, "a string", "is not a string")
        if not isinstance(self.tensor, str):
            raise fail(f"{where}.tensor", self.tensor, "a tensor name (empty: the only one)", "is not a string")
        check_hookpoint(f"{where}.hookpoint", self.hookpoint)
        check_float(f"{where}.eval_fraction", self.eval_fraction, 0.0, 1.0, hi_open=True)
        check_int(f"{where}.shuffle_seed", self.shuffle_seed, 0)
        check_bool(f"{where}.shuffle", self.shuffle)


@dataclass
class RunConfig:
    """Everything a run needs: data, the SAE configurations, training; written whole into run.json."""

    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    saes: list[SaeConfig] = field(default_factory=lambda: [SaeConfig()])
    lm: LmConfig = field(default_factory=LmConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def validate(self) -> None:
        """Check every section up front (lm/synthetic only when the source uses them) and the SAEs together;
        a NaN or inf is refused in every float field, used or not (all are stored with the run)."""
        for name in ("data", "train", "lm", "synthetic"):
            check_finite_fields(getattr(self, name), name)
        self.data.validate("data")
        self.train.validate("train")
        if not self.saes:
            raise fail("saes", self.saes, "at least one [[sae]] table", "is empty")
        d_in = None
        if self.data.source == "synthetic":
            self.synthetic.validate("synthetic")
            d_in = self.synthetic.d_in
        if self.data.source in LM_SOURCES:
            self.lm.validate("lm")
        for i, sae in enumerate(self.saes):
            check_finite_fields(sae, f"saes[{i}]")
            sae.validate(f"saes[{i}]", d_in)
        _check_distinct_names(self.saes)


def _check_distinct_names(saes: list[SaeConfig]) -> None:
    """Two SAEs whose directory names are equal for every d_in (same explicit name or same defaults) clash."""
    seen: dict[tuple[object, ...], int] = {}
    for i, sae in enumerate(saes):
        if sae.name:
            key: tuple[object, ...] = ("name", sae.name)
        elif sae.num_latents > 0:
            key = ("name", f"{sae.architecture}-{sae.num_latents}")
        else:
            key = ("expansion", sae.architecture, sae.expansion_factor)
        if key in seen:
            raise ConfigError(
                f"saes[{i}].name = {sae.name!r} gives the same directory as saes[{seen[key]}]; "
                "allowed: names distinct across [[sae]] tables (set `name`)"
            )
        seen[key] = i
