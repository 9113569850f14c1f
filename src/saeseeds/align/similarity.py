"""Chunked cosine similarities between the rows of two weight matrices, with rigorous error bounds.

Two kinds of value come out of here. *Approximate* blocks (``approx_rows``) are computed fast (int8,
bf16 or fp32 GEMM; by default the one this machine runs fastest, `saeseeds.align.screen_choice`) and come
with a per-pair error bound
``|approx[i, j] - exact[i, j]| <= err_a[i] + err_b[j] + err_const``, so that a pair that was never
looked at exactly can still be bounded. *Exact* values (``exact_pairs``) are float64 dot products of
the stored unit rows. Nothing here builds an ``n_a x n_b`` matrix (the dense solver's is `saeseeds.align.dense`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, NamedTuple

import numpy as np
import torch

from saeseeds.align.row_kernels import exact_dots, quantise_int8
from saeseeds.align.screen_choice import ScreenPlan
from saeseeds.errors import DataError

ScreenMode = Literal["int8", "bf16", "fp32"]
SCREEN_MODES: tuple[str, ...] = ("int8", "bf16", "fp32")
UNIT_ROUND_FP32 = 2.0**-24
UNIT_ROUND_TF32 = 2.0**-11
INT8_TILE = 8192
"""Columns per int8 GEMM call in a CPU screen block."""


def row_norms(weight: torch.Tensor, *, chunk: int = 8192) -> torch.Tensor:
    """Euclidean norm of every row, accumulated in float64 chunk by chunk (no full float64 copy)."""
    out = torch.empty(weight.shape[0], dtype=torch.float64)
    for start in range(0, weight.shape[0], chunk):
        out[start : start + chunk] = weight[start : start + chunk].double().norm(dim=1).cpu()
    return out


def as_weight(weight: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """A float32, contiguous, finite CPU [n, d] matrix (no copy when it already is one)."""
    if isinstance(weight, np.ndarray) and any(st < 0 for st in weight.strides):
        weight = np.ascontiguousarray(weight)  # torch refuses negative strides (a reversed view)
    w = torch.as_tensor(weight).detach()
    if w.ndim != 2:
        raise DataError(f"{name}: expected a 2-d [num_latents, d_in] matrix, got shape {tuple(w.shape)}")
    w = w.to("cpu", torch.float32).contiguous()
    # the sum is finite unless a value is not (or it overflows): 20x cheaper than isfinite
    if not np.isfinite(float(w.sum())) and not bool(torch.isfinite(w).all()):
        raise DataError(f"{name}: contains NaN or inf")
    return w


class PairScorer:
    """Two sets of rows on one device: fast bounded approximate cosine blocks and exact float64 cosines.

    The rows are kept as given (float32); cosines divide by their float64 norms, so no normalised copy
    is made. Zero rows have cosine 0 with everything.
    """

    def __init__(
        self,
        a: torch.Tensor | np.ndarray,
        b: torch.Tensor | np.ndarray,
        plan: ScreenPlan,
        *,
        absolute: bool = False,
        chunk_rows: int | None = None,
        _prepared: tuple | None = None,
    ) -> None:
        """`plan`: the comparison's device and screen, resolved once at its top (`screen_choice.plan_screen`)."""
        self.a = as_weight(a, "a")
        self.b = as_weight(b, "b")
        if self.a.shape[1] != self.b.shape[1]:
            raise DataError(
                f"row sets must share d_in; got shapes {tuple(self.a.shape)} and {tuple(self.b.shape)}"
            )
        self.plan = plan
        self.device, self.choice = plan.device, plan.choice
        self.screen: ScreenMode = self.choice.screen  # type: ignore[assignment]
        self.absolute = absolute
        self.n_a, self.d = self.a.shape
        self.n_b = self.b.shape[0]
        if self.device.type == "cpu":  # a 4-byte raw block of <= 256 MiB; the GEMM is fastest at ~512 rows
            auto = max(64, min(512, 2**26 // max(1, self.n_b)))
        else:
            auto = max(256, min(8192, 2**28 // max(1, self.n_b)))
        self.chunk_rows = int(chunk_rows or auto)
        self._raw_buffer: torch.Tensor | None = None
        if _prepared is not None:
            (self._side_a, self._side_b) = _prepared
        else:
            self._side_a = _prepare_side(self.a, self.screen, self.device)
            self._side_b = _prepare_side(self.b, self.screen, self.device)
        self._bind()

    def _bind(self) -> None:
        """Derive the per-row error bounds and the screen operands from the prepared sides."""
        sa, sb = self._side_a, self._side_b
        self.inv_a = inverse_norms(sa.norms)
        self.inv_b = inverse_norms(sb.norms)
        self._inv_a_dev = torch.as_tensor(self.inv_a, dtype=torch.float32, device=self.device)
        self._inv_b_dev = torch.as_tensor(self.inv_b, dtype=torch.float32, device=self.device)
        self._bt = sb.low.t()
        if self.screen == "bf16":
            # bf16-rounded operands multiplied in fp32: bf16 GEMMs may round partial sums to bf16
            # (CPU kernels for small d, cuBLAS reduced-precision reductions), which no bound covers.
            self._bt = self._bt.float()
        if self.screen == "int8":
            # int8 scale times 1/norm, folded into one float32 factor per row / column
            self._col_factor = (sb.scale.double() * torch.as_tensor(self.inv_b, device=self.device)).float()
            self._row_factor = (sa.scale.double() * torch.as_tensor(self.inv_a, device=self.device)).float()
        # |a.b - a~.b~| <= ||a - a~|| ||b|| + ||a~|| ||b - b~||  for unit a, b
        big_a = float(max(1.0, sa.low_norm_max))
        self.err_a = sa.err * (1 + 1e-6) + 1e-12
        self.err_b = sb.err * big_a * (1 + 1e-6) + 1e-12
        accumulate = 0.0 if self.screen == "int8" else 2.02 * self.d * UNIT_ROUND_FP32 * big_a
        self.err_const = accumulate + 16 * UNIT_ROUND_FP32

    def swapped(self) -> PairScorer:
        """The same scorer with the roles of `a` and `b` exchanged (rows of b against columns of a)."""
        return PairScorer(self.b, self.a, self.plan, absolute=self.absolute,
                          _prepared=(self._side_b, self._side_a))

    def max_error(self) -> float:
        """The largest possible error of an approximate value."""
        return float(self.err_a.max(initial=0.0) + self.err_b.max(initial=0.0) + self.err_const)

    # -- approximate blocks ------------------------------------------------------------------
    def approx_rows(self, rows: torch.Tensor | slice, cols: np.ndarray | None = None) -> torch.Tensor:
        """Approximate cosines of the given rows of `a` against the rows `cols` of `b` (default: all),
        float32 [r, len(cols)] on the device."""
        low = self._side_a.low[rows]
        bt, col_sel = self._columns(cols)
        n = bt.shape[1]
        if self.screen == "int8":
            block = torch.empty((low.shape[0], n), dtype=torch.float32, device=self.device)
            # column tiles keep each int32 product in cache for its conversion (~25% faster on CPU);
            # same-dtype-out copy: far faster than a promoting multiply
            width = INT8_TILE if self.device.type == "cpu" else max(n, 1)
            for c0 in range(0, n, width):
                block[:, c0 : c0 + width].copy_(_int8_matmul(low, bt[:, c0 : c0 + width]))
            block.mul_(self._col_factor[col_sel][None, :]).mul_(self._row_factor[rows][:, None])
        else:
            block = (low.float() @ bt).to(torch.float32)
            block.mul_(self._inv_b_dev[col_sel][None, :]).mul_(self._inv_a_dev[rows][:, None])
        if self.absolute:
            block.abs_()
        return block

    # -- raw blocks, for the CPU kernels of `screen_kernels` ------------------------------------
    @property
    def fused(self) -> bool:
        """Whether blocks go to the fused numba kernels (CPU) rather than torch ops (accelerators)."""
        return self.device.type == "cpu"

    def raw_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """(row factors [n_a], column factors [n_b]), float32: approx[i, j] = (raw[i, j] * col[j]) * row[i]."""
        if self.screen == "int8":
            return self._row_factor.cpu().numpy(), self._col_factor.cpu().numpy()
        return self._inv_a_dev.cpu().numpy(), self._inv_b_dev.cpu().numpy()

    def raw_rows(self, rows: torch.Tensor | slice, cols: np.ndarray | None = None) -> np.ndarray:
        """Raw screen products of the given rows (at most `chunk_rows`) against the rows `cols` of `b`
        (default: all), [r, len(cols)]: int32 for the int8 screen, float32 otherwise, written into a
        buffer that the next call reuses."""
        low = self._side_a.low[rows]
        bt, _ = self._columns(cols)
        r, n = low.shape[0], bt.shape[1]
        if r > self.chunk_rows:
            raise ValueError(f"raw_rows takes at most {self.chunk_rows} rows, got {r}")
        dtype = torch.int32 if self.screen == "int8" else torch.float32
        if self._raw_buffer is None or self._raw_buffer.dtype != dtype:
            self._raw_buffer = torch.empty((self.chunk_rows, self.n_b), dtype=dtype)
        out = self._raw_buffer.view(-1)[: r * n].view(r, n)
        if self.screen == "int8":
            _int8_matmul(low, bt, out=out)
        else:
            torch.matmul(low.float(), bt, out=out)
        return out.numpy()

    def fine(self) -> PairScorer:
        """An fp32-screen scorer of the same rows (no copies; it reuses this one's raw-block buffer).

        Its error bound is ~d * 2^-24 (5e-4 at d = 4096) instead of int8's ~0.02: re-screens with it
        keep far fewer pairs near the duals.
        """
        sides = (_fp32_side(self.a, self._side_a.norms, self.device),
                 _fp32_side(self.b, self._side_b.norms, self.device))
        fine = PairScorer(self.a, self.b, self.plan.fp32(), absolute=self.absolute,
                          chunk_rows=self.chunk_rows, _prepared=sides)
        if self._raw_buffer is not None:  # same shape, 4-byte elements: reinterpret as float32
            fine._raw_buffer = self._raw_buffer.view(torch.float32)
        return fine

    def _columns(self, cols: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor | slice]:
        """The screen operand [d, m] for columns `cols` of b (all when None) and their selector."""
        if cols is None:
            return self._bt, slice(None)
        sel = torch.as_tensor(np.asarray(cols, dtype=np.int64), device=self.device)
        if self.screen == "bf16":  # its operand is a float32 copy
            return self._bt.index_select(1, sel), sel
        return self._side_b.low.index_select(0, sel).t(), sel  # same layout as the full operand

    def _row_chunks(self, rows: np.ndarray | None) -> Iterator[tuple[np.ndarray, torch.Tensor | slice]]:
        """`rows` (default: all rows of a) in chunks of `chunk_rows`: (row ids, selector of a's rows)."""
        ids = np.arange(self.n_a) if rows is None else np.asarray(rows, dtype=np.int64)
        for start in range(0, len(ids), self.chunk_rows):
            chunk = ids[start : start + self.chunk_rows]
            if rows is None:
                yield chunk, slice(int(chunk[0]), int(chunk[-1]) + 1)
            else:
                yield chunk, torch.as_tensor(chunk, device=self._side_a.low.device)

    def iter_raw_blocks(self, rows: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Raw blocks over `rows` (default: all rows of a) in chunks: (row ids, raw block)."""
        for chunk, sel in self._row_chunks(rows):
            yield chunk, self.raw_rows(sel)

    def iter_row_blocks(self, rows: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Approximate blocks over `rows` (default: all rows of a) in chunks: (row ids, block)."""
        for chunk, sel in self._row_chunks(rows):
            yield chunk, self.approx_rows(sel)

    # -- exact values ------------------------------------------------------------------------
    def exact_pairs(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Exact (float64) cosines of the pairs (rows[k], cols[k]); absolute when the scorer is.

        Products of float32 numbers are exact in float64, so only the float64 summation rounds.
        """
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        cols = np.ascontiguousarray(cols, dtype=np.int64)
        out = np.empty(len(rows), dtype=np.float64)
        if len(rows):
            exact_dots(self.a.numpy(), self.b.numpy(), rows, cols, self.inv_a, self.inv_b, self.absolute, out)
        return out


class _Side(NamedTuple):
    """One side of a scorer prepared for the screen: low-precision rows, scales, error norms."""

    low: torch.Tensor  # int8 / bf16 / fp32 rows on the device (unnormalised for fp32)
    scale: torch.Tensor  # int8 per-row scale (on the device); empty otherwise
    norms: np.ndarray  # float64 norms of the original rows
    err: np.ndarray  # || unit row - its low-precision stand-in (scaled to unit) ||
    low_norm_max: float  # max || low-precision stand-in of a unit row ||


def inverse_norms(norms: np.ndarray) -> np.ndarray:
    """1 / norm, with 0 for zero rows (their cosines are 0)."""
    return np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)


def _prepare_side(w: torch.Tensor, screen: str, device: torch.device) -> _Side:
    """One side made ready for the screen: by one numba pass for the CPU int8 screen, else chunk by chunk."""
    if screen != "int8" or device.type != "cpu":
        return _chunked_side(w, screen, device)
    return _quantise_side(w)


def _chunked_side(w: torch.Tensor, screen: str, device: torch.device, chunk: int = 8192) -> _Side:
    """Quantise one side chunk by chunk and measure exactly how far each stand-in is from its row."""
    n = w.shape[0]
    norms = row_norms(w)
    inv = torch.as_tensor(inverse_norms(norms.numpy()))
    err = torch.empty(n, dtype=torch.float64)
    low_norm = torch.empty(n, dtype=torch.float64)
    if screen == "int8":
        low = torch.empty(w.shape, dtype=torch.int8)
        scale = torch.empty(n, dtype=torch.float32)
    elif screen == "bf16":
        low = torch.empty(w.shape, dtype=torch.bfloat16)
        scale = torch.empty(0)
    else:
        low, scale = w, torch.empty(0)
    for s in range(0, n, chunk):
        x = w[s : s + chunk].double()
        inv_c = inv[s : s + chunk, None]
        if screen == "int8":
            q, sc = _quantise_int8(x)  # of the raw rows; the unit stand-in is q * sc / norm
            low[s : s + chunk] = q
            scale[s : s + chunk] = sc
            recon = q.double() * sc.double()[:, None]
        elif screen == "bf16":
            low[s : s + chunk] = x.to(torch.bfloat16)
            recon = low[s : s + chunk].double()
        else:
            recon = x.to(torch.float32).double()
        err[s : s + chunk] = ((x - recon) * inv_c).norm(dim=1)
        low_norm[s : s + chunk] = (recon * inv_c).norm(dim=1)
    if screen == "fp32":
        unit = UNIT_ROUND_TF32 if device.type == "cuda" else UNIT_ROUND_FP32
        err = err + unit  # TF32 may re-round the inputs on GPUs
    return _Side(
        low.to(device), scale.to(device), norms.numpy(), err.numpy(),
        float(low_norm.max()) if n else 1.0,
    )


def _fp32_side(w: torch.Tensor, norms: np.ndarray, device: torch.device) -> _Side:
    """`_prepare_side` for the fp32 screen of float32 rows whose norms are known: the stand-in is the
    row itself, so its error is only the GEMM's input rounding (TF32 on GPUs)."""
    unit = UNIT_ROUND_TF32 if device.type == "cuda" else UNIT_ROUND_FP32
    return _Side(w.to(device), torch.empty(0), norms, np.full(len(norms), unit), 1.0 + 1e-9)


def _quantise_side(w: torch.Tensor) -> _Side:
    """`_prepare_side` for the int8 screen by one numba pass (no float64 copy of the rows)."""
    n, d = w.shape
    q = np.empty((n, d), np.int8)
    scale = np.empty(n, np.float32)
    norms, err, low_norm = np.empty(n), np.empty(n), np.empty(n)
    if quantise_int8(w.numpy(), q, scale, norms, err, low_norm) >= 0:
        raise DataError("weights contain NaN or inf")
    return _Side(torch.from_numpy(q), torch.from_numpy(scale), norms, err,
                 float(low_norm.max()) if n else 1.0)


def _quantise_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row symmetric int8 quantisation of float64 rows: (q int8, scale float32)."""
    scale = (x.abs().amax(dim=1) / 127.0).to(torch.float32)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale)).double()
    q = torch.round(x / safe[:, None]).clamp_(-127, 127)
    return q.to(torch.int8), scale


def _int8_matmul(qa: torch.Tensor, qbt: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Exact int32 product of int8 matrices [r, d] @ [d, n] (into `out` when given, contiguous).

    Falls back to a float64 product (exact: |sums| < 2^53) where `_int_mm` is missing or refuses.
    """
    try:
        return torch._int_mm(qa, qbt) if out is None else torch._int_mm(qa, qbt, out=out)
    except (RuntimeError, AttributeError):  # pragma: no cover - depends on the torch build / device
        prod = (qa.double() @ qbt.double()).round_().to(torch.int32)
        return prod if out is None else out.copy_(prod)
