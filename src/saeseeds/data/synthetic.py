"""Synthetic activations with known ground truth: features in superposition, identifiable, basis-ambiguous and
control groups, or the composed-features toy model.

An *ambiguous group* of r features fires as a whole with a coefficient vector drawn from a rotation-invariant
distribution in its r-dimensional subspace, so the data carries no preferred basis there; a *control group* fires
the same way (as a whole, same norm, signed) but its coefficients have a preferred basis (cube vertices, or
independent signed uniform coefficients per axis); an *identifiable group* has the same kind of span but
independent sparse coefficients. The *composed* model (`kind = "composed"`) has two mutually exclusive feature
sets x_1..x_m and y_1..y_n: every row is a_x · x_i + a_y · y_j. Everything is deterministic from `cfg.seed`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from saeseeds.atomic import atomic_write
from saeseeds.config import SyntheticConfig, validate_synthetic
from saeseeds.data.types import SourcePair
from saeseeds.errors import DataError
from saeseeds.hashing import sha256_hex, tensor_bytes
from saeseeds.records import write_record

if TYPE_CHECKING:
    from saeseeds.config import RunConfig

KIND_NAMES: tuple[str, ...] = ("single", "identifiable", "ambiguous", "control", "x", "y")
"""Feature kinds, indexed by the integer codes stored in `GroundTruth.kind` (x, y: the composed model's sets)."""
SINGLE, IDENTIFIABLE, AMBIGUOUS, CONTROL, COMPOSED_X, COMPOSED_Y = 0, 1, 2, 3, 4, 5
GROUP_KINDS: tuple[int, ...] = (IDENTIFIABLE, CONTROL, AMBIGUOUS)
"""Group kinds in report order: independent firing, dense co-firing with a basis, rotation invariant."""

GROUND_TRUTH_TENSORS = "ground_truth.safetensors"
GROUND_TRUTH_JSON = "ground_truth.json"
GROUND_TRUTH_SCHEMA = "saeseeds.ground_truth/1"

_PURPOSE_CODES = {"truth": 0, "train": 1, "eval": 2}
_MAX_CHUNK_ELEMENTS = 1 << 24  # rows x features per dense coefficient block


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for one purpose ('truth', 'train', 'eval') of the generator seeded with `seed`."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, _PURPOSE_CODES[purpose]]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def _generator(seed: int, purpose: str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, purpose))


@dataclass
class GroundTruth:
    """The true features of a generator: directions, group membership and kind, firing statistics."""

    directions: Tensor
    """[N, d_in] unit-norm direction of each true feature in activation space."""
    scales: Tensor
    """[N] norm of each feature's (unnormalised) write vector: 1 unless the toy-model projection rescales it."""
    firing_prob: Tensor
    """[N] probability that the feature's coefficient is non-zero on a token."""
    mean_magnitude: Tensor
    """[N] mean |coefficient| of a firing feature (ambiguous groups: the mean norm of the group's vector)."""
    group: Tensor
    """[N] int64 group id (0..G-1: ambiguous, then control, then identifiable groups) or -1 for single features."""
    kind: Tensor
    """[N] int64 kind code: 0 single, 1 identifiable-, 2 ambiguous-, 3 control-group feature, 4 x, 5 y
    (composed model) (KIND_NAMES)."""
    group_kind: Tensor
    """[G] int64 kind code of each group."""
    config: SyntheticConfig

    @property
    def num_features(self) -> int:
        """N, the number of true features."""
        return int(self.directions.shape[0])

    @property
    def d_in(self) -> int:
        """Width of the activations."""
        return int(self.directions.shape[1])

    @property
    def num_groups(self) -> int:
        """G, the number of groups of both kinds."""
        return int(self.group_kind.numel())

    def group_members(self, g: int) -> Tensor:
        """Indices of the features of group `g`."""
        return torch.nonzero(self.group == g).flatten()

    def fingerprint(self) -> str:
        """SHA-256 of the ground-truth tensors, to tie results to the truth they were scored against."""
        names = ("directions", "scales", "firing_prob", "mean_magnitude", "group", "kind")
        return sha256_hex(*(tensor_bytes(getattr(self, name)) for name in names))


class SyntheticModel:
    """Samples activations `[n, d_in]` from a ground truth; all randomness comes from the caller's generator."""

    def __init__(self, cfg: SyntheticConfig) -> None:
        validate_synthetic(cfg)
        self.cfg = cfg
        if cfg.kind == "composed":
            self.truth, self._write = _build_composed_truth(cfg)
            return
        self.truth, self._write = _build_truth(cfg)
        r = cfg.group_rank
        n_amb, n_ctl = cfg.num_ambiguous_groups * r, cfg.num_control_groups * r
        self._amb_index = torch.arange(n_amb).view(cfg.num_ambiguous_groups, r)
        self._ctl_index = torch.arange(n_amb, n_amb + n_ctl).view(cfg.num_control_groups, r)
        self._ind_index = torch.arange(n_amb + n_ctl, cfg.num_features)  # identifiable-group and single features
        whole = torch.cat([self._amb_index[:, 0], self._ctl_index[:, 0]])
        # firing units: one per ambiguous group, one per control group, then one per other feature
        self._unit_prob = torch.cat([self.truth.firing_prob[whole], self.truth.firing_prob[self._ind_index]]).double()
        self._unit_block = torch.arange(self._unit_prob.numel()) // cfg.correlation_block_size
        self._num_blocks = int(self._unit_block.max()) + 1 if self._unit_prob.numel() else 0
        self._symmetric = (self.truth.kind[self._ind_index] == IDENTIFIABLE) & (
            cfg.identifiable_signs == "symmetric"
        )

    def sample_firing(self, n: int, generator: torch.Generator) -> Tensor:
        """Bool `[n, units]`: which firing units (ambiguous groups, control groups, then other features) fire."""
        units = self._unit_prob.numel()
        rho = self.cfg.firing_correlation
        if rho == 0.0:
            return torch.rand(n, units, generator=generator, dtype=torch.float64) < self._unit_prob
        shared = torch.randn(n, self._num_blocks, generator=generator, dtype=torch.float64)
        own = torch.randn(n, units, generator=generator, dtype=torch.float64)
        z = rho**0.5 * shared[:, self._unit_block] + (1.0 - rho) ** 0.5 * own
        return z < torch.special.ndtri(self._unit_prob)

    def _magnitudes(self, mean: Tensor, n: int, generator: torch.Generator) -> Tensor:
        """Log-normal magnitudes with mean `mean` (per column) and relative spread `magnitude_std`."""
        sigma = self.cfg.magnitude_std
        if sigma == 0.0:
            return mean.expand(n, -1).clone()
        eps = torch.randn(n, mean.numel(), generator=generator)
        return mean * torch.exp(sigma * eps - 0.5 * sigma**2)

    def sample_coefficients(self, n: int, generator: torch.Generator) -> Tensor:
        """Dense coefficients `[n, N]` (float32) of the true features on `n` tokens."""
        cfg, truth = self.cfg, self.truth
        if cfg.kind == "composed":
            return self._composed_coefficients(n, generator)
        fire = self.sample_firing(n, generator)
        g_amb, g_ctl = cfg.num_ambiguous_groups, cfg.num_control_groups
        coeffs = torch.zeros(n, truth.num_features)
        if g_amb:
            r = cfg.group_rank
            vec = torch.randn(n, g_amb, r, generator=generator)
            if cfg.ambiguous_distribution == "sphere":
                vec = vec / torch.linalg.vector_norm(vec, dim=2, keepdim=True).clamp_min(1e-12)
            else:
                vec = vec / r**0.5
            mag = self._magnitudes(truth.mean_magnitude[self._amb_index[:, 0]], n, generator)
            vec = vec * (mag * fire[:, :g_amb]).unsqueeze(2)
            coeffs[:, self._amb_index.flatten()] = vec.reshape(n, g_amb * r)
        if g_ctl:  # same firing, norm and signs as an ambiguous group, but a preferred basis
            r = cfg.group_rank
            if cfg.control_distribution == "cube":
                flips = torch.rand(n, g_ctl, r, generator=generator) < 0.5
                vec = torch.where(flips, -1.0, 1.0) / r**0.5
            else:  # signed_axes: independent U(-1, 1) per axis, scaled so that E|c|^2 = magnitude^2
                vec = (2.0 * torch.rand(n, g_ctl, r, generator=generator) - 1.0) * (3.0 / r) ** 0.5
            mag = self._magnitudes(truth.mean_magnitude[self._ctl_index[:, 0]], n, generator)
            vec = vec * (mag * fire[:, g_amb : g_amb + g_ctl]).unsqueeze(2)
            coeffs[:, self._ctl_index.flatten()] = vec.reshape(n, g_ctl * r)
        if self._ind_index.numel():
            mag = self._magnitudes(truth.mean_magnitude[self._ind_index], n, generator)
            values = mag * fire[:, g_amb + g_ctl :]
            if bool(self._symmetric.any()):
                flips = torch.rand(n, self._ind_index.numel(), generator=generator) < 0.5
                values = torch.where(flips & self._symmetric, -values, values)
            coeffs[:, self._ind_index] = values
        return coeffs

    def composed_choices(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Composed model: (i, j, a_x, a_y) of `n` rows: which x and y fire (int64 [n]) and their amplitudes."""
        cfg = self.cfg
        i = torch.randint(cfg.composed_num_x, (n,), generator=generator)
        j = torch.randint(cfg.composed_num_y, (n,), generator=generator)
        rho = cfg.composed_amplitude_correlation
        z = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        z_y = rho * z[:, 0] + (1.0 - rho**2) ** 0.5 * z[:, 1]
        scale = 2.0 * cfg.magnitude_mean  # U(0, 1) marginals (Gaussian copula), mean magnitude_mean
        a_x = (scale * torch.special.ndtr(z[:, 0])).float()
        a_y = (scale * torch.special.ndtr(z_y)).float()
        return i, j, a_x, a_y

    def _composed_coefficients(self, n: int, generator: torch.Generator) -> Tensor:
        i, j, a_x, a_y = self.composed_choices(n, generator)
        coeffs = torch.zeros(n, self.truth.num_features)
        rows = torch.arange(n)
        coeffs[rows, i] = a_x
        coeffs[rows, self.cfg.composed_num_x + j] = a_y
        return coeffs

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """Activations `[n, d_in]` (float32): coefficients times write vectors, plus noise."""
        rows_per_chunk = max(1, _MAX_CHUNK_ELEMENTS // max(1, self.truth.num_features))
        chunks = []
        for start in range(0, n, rows_per_chunk):
            m = min(rows_per_chunk, n - start)
            x = self.sample_coefficients(m, generator) @ self._write
            if self.cfg.noise_std > 0:
                x = x + self.cfg.noise_std * torch.randn(m, x.shape[1], generator=generator)
            chunks.append(x)
        return torch.cat(chunks) if chunks else torch.zeros(0, self.truth.d_in)

    def group_inputs(self, num_rows: int, generator: torch.Generator) -> list[Tensor]:
        """Per group, the activations of the rows (of `num_rows` drawn) where it fires, with every other feature
        and the noise removed: what the group alone writes. Used to see which subspace an SAE uses for it."""
        coeffs = self.sample_coefficients(num_rows, generator)
        out = []
        for g in range(self.truth.num_groups):
            members = self.truth.group_members(g)
            part = coeffs[:, members]
            rows = (part != 0).any(dim=1)
            out.append(part[rows] @ self._write[members])
        return out


def _orthonormal_rows(count: int, dim: int, generator: torch.Generator) -> Tensor:
    """`count` orthonormal random rows in R^dim (QR of a Gaussian matrix, signs fixed)."""
    q, r = torch.linalg.qr(torch.randn(dim, count, generator=generator, dtype=torch.float64))
    signs = torch.where(torch.diagonal(r) >= 0, 1.0, -1.0).to(q.dtype)
    return (q * signs).T


def _build_truth(cfg: SyntheticConfig) -> tuple[GroundTruth, Tensor]:
    """Draw the directions, probabilities and magnitudes; return the truth and the `[N, d_in]` write matrix."""
    g = _generator(cfg.seed, "truth")
    n, r = cfg.num_features, cfg.group_rank
    space = cfg.feature_space_dim if cfg.feature_space_dim > 0 else cfg.d_in
    num_groups = cfg.num_groups()
    n_grouped = num_groups * r
    if cfg.feature_space_dim >= n:
        raw = _orthonormal_rows(n, space, g)  # toy model: orthogonal features before the projection
    else:
        raw = torch.randn(n, space, generator=g, dtype=torch.float64)
        raw = raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True)
        for k in range(num_groups):
            raw[k * r : (k + 1) * r] = _orthonormal_rows(r, space, g)
    if cfg.feature_space_dim > 0:
        projection = torch.randn(space, cfg.d_in, generator=g, dtype=torch.float64) / cfg.d_in**0.5
        write = raw @ projection
    else:
        write = raw
    scales = torch.linalg.vector_norm(write, dim=1)
    if bool((scales < 1e-8).any()):
        raise DataError("synthetic: the random projection sent a feature to ~0; change synthetic.seed")
    directions = write / scales.unsqueeze(1)

    group = torch.full((n,), -1, dtype=torch.int64)
    kind = torch.full((n,), SINGLE, dtype=torch.int64)
    group_kind = torch.empty(num_groups, dtype=torch.int64)
    whole = cfg.num_ambiguous_groups + cfg.num_control_groups  # groups that fire as a whole
    for k in range(num_groups):
        code = AMBIGUOUS if k < cfg.num_ambiguous_groups else CONTROL if k < whole else IDENTIFIABLE
        group[k * r : (k + 1) * r] = k
        kind[k * r : (k + 1) * r] = code
        group_kind[k] = code

    firing = torch.full((n,), cfg.group_firing_prob, dtype=torch.float64)
    ranks = torch.arange(1, n - n_grouped + 1, dtype=torch.float64)
    firing[n_grouped:] = (cfg.max_firing_prob * ranks ** (-cfg.zipf_exponent)).clamp_min(cfg.min_firing_prob)

    spread = cfg.feature_magnitude_std
    draw = torch.randn(n, generator=g, dtype=torch.float64)
    mean_magnitude = cfg.magnitude_mean * torch.exp(spread * draw - 0.5 * spread**2)
    for k in range(whole):  # one magnitude per ambiguous group keeps it rotation invariant (control: the same)
        mean_magnitude[k * r : (k + 1) * r] = mean_magnitude[k * r]

    truth = GroundTruth(
        directions=directions.float(),
        scales=scales.float(),
        firing_prob=firing.float(),
        mean_magnitude=mean_magnitude.float(),
        group=group,
        kind=kind,
        group_kind=group_kind,
        config=cfg,
    )
    return truth, write.float()


def _build_composed_truth(cfg: SyntheticConfig) -> tuple[GroundTruth, Tensor]:
    """Composed model: x_1..x_m then y_1..y_n, orthonormal when d_in >= m + n (else random unit vectors)."""
    g = _generator(cfg.seed, "truth")
    m, n = cfg.composed_num_x, cfg.composed_num_y
    if cfg.d_in >= m + n:
        write = _orthonormal_rows(m + n, cfg.d_in, g)
    else:
        write = torch.randn(m + n, cfg.d_in, generator=g, dtype=torch.float64)
        write = write / torch.linalg.vector_norm(write, dim=1, keepdim=True)
    kind = torch.cat([torch.full((m,), COMPOSED_X), torch.full((n,), COMPOSED_Y)]).to(torch.int64)
    firing = torch.cat([torch.full((m,), 1.0 / m), torch.full((n,), 1.0 / n)])
    truth = GroundTruth(
        directions=write.float(),
        scales=torch.ones(m + n),
        firing_prob=firing.float(),
        mean_magnitude=torch.full((m + n,), float(cfg.magnitude_mean)),
        group=torch.full((m + n,), -1, dtype=torch.int64),
        kind=kind,
        group_kind=torch.zeros(0, dtype=torch.int64),
        config=cfg,
    )
    return truth, write.float()


# --------------------------------------------------------------------------------------------
# streams and the activation-source builder


class SyntheticStream:
    """Re-iterable stream of `num_batches` batches `[batch_size, d_in]`; every iteration yields the same batches."""

    def __init__(self, model: SyntheticModel, purpose: str, batch_size: int, num_batches: int) -> None:
        if batch_size <= 0 or num_batches < 0:
            raise DataError(f"synthetic stream: batch_size={batch_size}, num_batches={num_batches} invalid")
        self.model = model
        self.purpose = purpose
        self.batch_size = batch_size
        self.num_batches = num_batches

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[Tensor]:
        generator = _generator(self.model.cfg.seed, self.purpose)
        for _ in range(self.num_batches):
            yield self.model.sample(self.batch_size, generator)


def build_synthetic_source(cfg: RunConfig) -> SourcePair:
    """Activation source of a run whose `data.source` is 'synthetic': SourcePair(train, eval, info).

    The training stream has `train.num_tokens // train.batch_size` batches; the eval set (from a separate
    random stream) has `train.eval_tokens` rows. `info` records the generator config and the truth fingerprint.
    """
    syn: SyntheticConfig = cfg.synthetic
    model = SyntheticModel(syn)
    batch_size = int(cfg.train.batch_size)
    train = SyntheticStream(model, "train", batch_size, int(cfg.train.num_tokens) // batch_size)
    eval_rows = int(cfg.train.eval_tokens)
    eval_gen = _generator(syn.seed, "eval")
    eval_batches = [
        model.sample(min(batch_size, eval_rows - start), eval_gen) for start in range(0, eval_rows, batch_size)
    ]
    info = {
        "source": "synthetic",
        "hookpoint": cfg.data.hookpoint,
        "d_in": syn.d_in,
        "synthetic": dataclasses.asdict(syn),
        "ground_truth_sha256": model.truth.fingerprint(),
        "num_features": model.truth.num_features,
    }
    return SourcePair(train, eval_batches, info)


# --------------------------------------------------------------------------------------------
# ground truth on disk


def save_ground_truth(truth: GroundTruth, directory: str | Path) -> Path:
    """Write `ground_truth.safetensors` (tensors) and `ground_truth.json` (config, groups, kinds) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: getattr(truth, name).contiguous()
        for name in ("directions", "scales", "firing_prob", "mean_magnitude", "group", "kind", "group_kind")
    }
    atomic_write(directory / GROUND_TRUTH_TENSORS, lambda tmp: save_file(tensors, str(tmp)))
    meta = {
        "config": dataclasses.asdict(truth.config),
        "kind_names": list(KIND_NAMES),
        "num_features": truth.num_features,
        "d_in": truth.d_in,
        "groups": [
            {"group": g, "kind": KIND_NAMES[int(truth.group_kind[g])], "features": truth.group_members(g).tolist()}
            for g in range(truth.num_groups)
        ],
        "sha256": truth.fingerprint(),
    }
    write_record(directory / GROUND_TRUTH_JSON, GROUND_TRUTH_SCHEMA, meta)
    return directory / GROUND_TRUTH_TENSORS


def load_ground_truth(directory: str | Path) -> GroundTruth:
    """Read a ground truth written by `save_ground_truth`; DataError names the file if it is missing or bad."""
    directory = Path(directory)
    tensor_path, json_path = directory / GROUND_TRUTH_TENSORS, directory / GROUND_TRUTH_JSON
    for path in (tensor_path, json_path):
        if not path.is_file():
            raise DataError(f"ground truth file {path} does not exist")
    try:
        tensors = load_file(str(tensor_path))
        meta = json.loads(json_path.read_text())
        config = SyntheticConfig(**meta["config"])
        truth = GroundTruth(config=config, **{k: tensors[k] for k in tensors})
    except (KeyError, TypeError, ValueError, OSError) as err:
        raise DataError(f"ground truth in {directory} is unreadable: {err}") from err
    if truth.fingerprint() != meta.get("sha256"):
        raise DataError(f"ground truth in {directory}: tensors do not match the sha256 in {json_path.name}")
    return truth
