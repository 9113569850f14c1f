"""Which screen the sparse alignment uses: the one this machine runs fast, measured once and cached.

The screen (`saeseeds.align.similarity.PairScorer`) is a GEMM over every pair of rows; its speed is the
alignment's. int8 (`torch._int_mm`) is fast only where the CPU has int8 dot-product instructions (AVX-512 VNNI,
AVX-VNNI, AMX): without them oneDNN/fbgemm fall back to a path 20-180x slower than float32 (measured on an
AMD EPYC Zen 3, AVX2 only: benchmarks/RESULTS.md, issue 25). So on a CPU, `auto` times a small int8 product
against the float32 one (a fraction of a second, bounded by `PROBE_BUDGET_S`) and keeps int8 only when it is at
least `INT8_MIN_SPEEDUP` times faster. The timings are cached per machine (CPU model, CPU flags, torch version
and kernel selection) in `<user cache dir>/saeseeds/screen/`, beside numba's kernel cache; the file is only ever
written there, atomically, following the umask. Every screen keeps the same exactness certificate: the choice
changes the time, never the matching.

bf16 is never chosen by `auto`: the bf16 screen multiplies bf16-rounded operands in float32 (a bf16 GEMM may round
partial sums to bf16, which no error bound covers), so it costs a float32 GEMM with a larger error bound.
Accelerators use the fp32 screen (TF32 bound) without timing.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saeseeds.atomic import atomic_write_json
from saeseeds.errors import ConfigError
from saeseeds.numba_cache import saeseeds_cache_dir

if TYPE_CHECKING:  # torch is imported where it is used: the CLI validates --screen without it
    import torch

log = logging.getLogger(__name__)

SCREEN_CHOICES: tuple[str, ...] = ("auto", "int8", "bf16", "fp32")
"""What `--screen` / `screen=` accept."""
INT8_MIN_SPEEDUP = 1.5
"""`auto` picks int8 only when its product is at least this much faster than float32's: its error bound (~0.02
against ~1e-4 at d_in 768) leaves more rows to re-screen in float32 later, so a marginal gain does not pay."""
PROBE_SHAPE = (128, 768, 1024)
"""(rows, d_in, columns) of the timed products: the screen's d_in, small enough to stay well under a second
where int8 is slow (~0.17 s on the AVX2-only EPYC) and large enough to time reliably where it is fast."""
PROBE_BUDGET_S = 0.15
"""Timed calls of one kind stop once they have taken this long together (the slow path's verdict is clear at
once): the probe costs at most ~2 x this plus one call of each kind."""
SCHEMA = "saeseeds.screen_timing/1"
Timer = Callable[["torch.device"], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Machine:
    """What the verdict depends on: the CPU, its instruction set, torch and the kernels torch may use."""

    cpu: str
    flags_sha256: str
    torch: str
    capability: str

    def key(self) -> str:
        """A short stable name for this machine's cache file."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


@dataclasses.dataclass(frozen=True)
class ScreenChoice:
    """The screen used, what was asked for, and why (timings, their source)."""

    screen: str
    requested: str
    source: str  # "requested", "device", "measured", "cached"
    reason: str
    int8_s: float | None = None
    fp32_s: float | None = None

    @property
    def int8_over_fp32(self) -> float | None:
        """How many times slower the int8 product was than the float32 one (None when not timed)."""
        if self.int8_s is None or not self.fp32_s:
            return None
        return self.int8_s / self.fp32_s

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record (summary.json, per-matching stats)."""
        return {**dataclasses.asdict(self), "int8_over_fp32": self.int8_over_fp32,
                "probe": "x".join(map(str, PROBE_SHAPE))}

    def describe(self) -> str:
        """One line for --verbose."""
        return f"screen {self.screen} ({self.requested}, {self.source}): {self.reason}"


@dataclasses.dataclass(frozen=True)
class ScreenPlan:
    """The device and the screen of one comparison, resolved once at its top (`plan_screen`) and handed down to
    every pair, assignment and scorer: none of them resolves either again."""

    device: torch.device
    requested: str | ScreenChoice = "auto"

    @functools.cached_property
    def choice(self) -> ScreenChoice:
        """The screen used on `device`, chosen on first use: a comparison solved densely times none."""
        return resolve_screen(self.requested, self.device)

    @property
    def screen(self) -> str:
        """The screen used: int8, bf16 or fp32."""
        return self.choice.screen

    def fp32(self) -> ScreenPlan:
        """The same device with the fp32 screen (the re-screens' finer bound)."""
        return ScreenPlan(self.device, "fp32")


def plan_screen(screen: str | ScreenChoice | ScreenPlan | None = None,
                device: str | torch.device | None = None) -> ScreenPlan:
    """The plan for `screen` (a name, None meaning auto, a made choice, or a plan, returned as it is) on `device`:
    a bad screen name fails here, even when every problem is then solved densely (and no screen is chosen)."""
    from saeseeds.device import resolve_device  # imports torch: the CLI checks --screen without it

    if isinstance(screen, ScreenPlan):
        return screen
    requested = screen if isinstance(screen, ScreenChoice) else check_screen(screen)
    return ScreenPlan(resolve_device(device), requested)


def check_screen(screen: str | None) -> str:
    """`screen` if it is one of SCREEN_CHOICES (None means auto), else one ConfigError line."""
    value = "auto" if screen is None else screen
    if value not in SCREEN_CHOICES:
        raise ConfigError(f"screen: {screen!r} is not one of {', '.join(SCREEN_CHOICES)}")
    return value


@functools.lru_cache(maxsize=1)
def this_machine() -> Machine:
    """The running machine: CPU model and flags from /proc/cpuinfo (else `platform`), torch's version and the
    kernel-selection settings that change which GEMM code runs."""
    model, flags = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name in ("model name", "cpu model", "hardware") and not model:
                model = value.strip()
            elif name in ("flags", "features") and not flags:
                flags = " ".join(sorted(value.split()))
    except OSError:
        pass
    import torch

    model = model or platform.processor() or platform.machine()
    capability = torch.backends.cpu.get_cpu_capability()
    overrides = [f"{v}={os.environ[v]}" for v in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if os.environ.get(v)]
    return Machine(cpu=model, flags_sha256=hashlib.sha256(flags.encode()).hexdigest()[:16], torch=torch.__version__,
                   capability=" ".join([capability, *overrides]))


def cache_dir() -> Path:
    """Where verdicts are kept: `<user cache dir>/saeseeds/screen` (beside numba's `.../saeseeds/numba`)."""
    return saeseeds_cache_dir() / "screen"


def _best(fn: Callable[[], Any], reps: int, budget_s: float) -> float:
    """Best wall time of `fn` over up to `reps` timed calls after a warm-up call, within `budget_s`: a warm-up
    that alone exceeds the budget is the answer (a slow path is clear at once; its first-call overhead is small)."""
    t0 = time.perf_counter()
    fn()
    spent = time.perf_counter() - t0
    if spent > budget_s:
        return spent
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        took = time.perf_counter() - t0
        best, spent = min(best, took), spent + took
        if spent > budget_s:
            break
    return best


def measure_products(device: torch.device) -> dict[str, float | None]:
    """Seconds of one int8 (`torch._int_mm`) and one float32 product of PROBE_SHAPE on `device` (best of a
    few; int8 None when torch has no working `_int_mm`): well under a second however slow int8 is."""
    import torch

    m, k, n = PROBE_SHAPE
    g = torch.Generator().manual_seed(0)
    qa = torch.randint(-127, 128, (m, k), generator=g, dtype=torch.int8).to(device)
    qb = torch.randint(-127, 128, (k, n), generator=g, dtype=torch.int8).to(device)
    fa, fb = qa.float(), qb.float()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fp32 = _best(lambda: (fa @ fb, sync()), 5, PROBE_BUDGET_S)
    try:
        int8: float | None = _best(lambda: (torch._int_mm(qa, qb), sync()), 3, PROBE_BUDGET_S)
    except (RuntimeError, AttributeError):  # no _int_mm in this torch build / for this device
        int8 = None
    return {"int8": int8, "fp32": fp32}


def _read_cached(path: Path, machine: Machine) -> dict[str, float | None] | None:
    """The timings stored for `machine` at `path`, or None (missing, unreadable, or another machine's)."""
    try:
        record = json.loads(path.read_text())
        if record.get("schema") != SCHEMA or record.get("machine") != dataclasses.asdict(machine):
            return None
        timings = record["timings_s"]
        return {"int8": _opt_float(timings.get("int8")), "fp32": float(timings["fp32"])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)


def _write_cached(path: Path, machine: Machine, timings: dict[str, float | None]) -> bool:
    """Store the timings atomically (umask modes); False when the user's cache dir cannot be written."""
    try:
        atomic_write_json(path, {"schema": SCHEMA, "machine": dataclasses.asdict(machine), "timings_s": timings,
                                 "probe": list(PROBE_SHAPE), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        return True
    except OSError as err:
        log.debug("screen timings not cached (%s): %s", path, err)
        return False


def verdict(timings: dict[str, float | None]) -> tuple[str, str]:
    """(screen, reason) from the timed products: int8 when it is at least INT8_MIN_SPEEDUP x faster."""
    int8, fp32 = timings.get("int8"), timings.get("fp32")
    if int8 is None or not fp32:
        return "fp32", "no working int8 GEMM (torch._int_mm) here"
    ratio = int8 / fp32
    if fp32 / int8 >= INT8_MIN_SPEEDUP:
        return "int8", f"int8 GEMM {1 / ratio:.1f}x faster than float32 on this machine"
    if ratio >= 1:
        return "fp32", f"int8 GEMM {ratio:.1f}x slower than float32 on this machine (no int8 dot-product unit)"
    return "fp32", f"int8 GEMM only {1 / ratio:.2f}x faster than float32 (< {INT8_MIN_SPEEDUP}x: not worth its bound)"


def choose_screen(
    requested: str | None,
    device: torch.device,
    *,
    machine: Machine | None = None,
    timer: Timer | None = None,
    directory: Path | None = None,
) -> ScreenChoice:
    """The screen for `requested` (None or "auto": what this machine does fastest) on `device`.

    `auto` on a CPU reads the cached timings for this machine (`directory`, default `cache_dir()`), or times the
    products with `timer` (default `measure_products`) and caches them."""
    requested = check_screen(requested)
    if requested != "auto":
        return ScreenChoice(requested, requested, "requested", "asked for")
    if device.type != "cpu":
        return ScreenChoice("fp32", "auto", "device", f"{device.type}: fp32 screen (TF32 bound), not timed")
    machine = machine or this_machine()
    path = (directory or cache_dir()) / f"{machine.key()}.json"
    timings = _read_cached(path, machine)
    source = "cached"
    if timings is None:
        timings = (timer or measure_products)(device)
        source = "measured" if _write_cached(path, machine, timings) else "measured (not cached)"
    screen, reason = verdict(timings)
    return ScreenChoice(screen, "auto", source, reason, timings.get("int8"), timings.get("fp32"))


_memo: dict[tuple[str, str], ScreenChoice] = {}


def resolve_screen(requested: str | ScreenChoice | None, device: torch.device) -> ScreenChoice:
    """`choose_screen` with the default machine, timer and cache, once per process and device type."""
    if isinstance(requested, ScreenChoice):
        return requested
    key = (check_screen(requested), device.type)
    if key not in _memo:
        _memo[key] = choose_screen(requested, device)
        log.debug("%s%s", _memo[key].describe(), _timing_note(_memo[key]))
    return _memo[key]


def _timing_note(choice: ScreenChoice) -> str:
    """'; int8 X ms, fp32 Y ms for 128x768 @ 768x1024' when the choice was timed."""
    if choice.fp32_s is None:
        return ""
    m, k, n = PROBE_SHAPE
    int8 = "n/a" if choice.int8_s is None else f"{choice.int8_s * 1e3:.2f} ms"
    return f"; int8 {int8}, fp32 {choice.fp32_s * 1e3:.2f} ms for {m}x{k} @ {k}x{n} (cache: {cache_dir()})"


def clear_memo() -> None:
    """Forget this process's choices (tests; a changed cache)."""
    _memo.clear()
