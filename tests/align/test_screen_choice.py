"""The screen is chosen by what the machine runs fast (timed once, cached per machine), and every screen is exact."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from saeseeds.align import assignment, screen_choice
from saeseeds.align.assignment import max_cosine_assignment
from saeseeds.align.dense import dense_cosines
from saeseeds.align.screen_choice import Machine, choose_screen, plan_screen
from saeseeds.align.similarity import PairScorer
from saeseeds.errors import ConfigError

CPU = torch.device("cpu")
ZEN3 = Machine(cpu="AMD EPYC 7B13", flags_sha256="aaaa", torch="2.13.0+cpu", capability="AVX2")
SLOW_INT8 = {"int8": 0.36, "fp32": 0.008}  # what the AVX2-only EPYC measured: int8 ~45x slower
FAST_INT8 = {"int8": 0.002, "fp32": 0.009}  # a VNNI core: int8 4.5x faster


class CountingTimer:
    """Returns fixed timings and counts how often the products were 'timed'."""

    def __init__(self, timings: dict[str, float | None]) -> None:
        self.timings, self.calls = timings, 0

    def __call__(self, device: torch.device) -> dict[str, float | None]:
        self.calls += 1
        return dict(self.timings)


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private user cache dir and no remembered choices, undone afterwards."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    screen_choice.clear_memo()
    yield tmp_path / "xdg" / "saeseeds" / "screen"
    screen_choice.clear_memo()


@pytest.mark.parametrize(("timings", "expected"), [(SLOW_INT8, "fp32"), (FAST_INT8, "int8"),
                                                    ({"int8": None, "fp32": 0.01}, "fp32"),
                                                    ({"int8": 0.008, "fp32": 0.01}, "fp32")])
def test_auto_picks_the_screen_the_timings_favour(timings: dict, expected: str, tmp_path: Path) -> None:
    choice = choose_screen("auto", CPU, machine=ZEN3, timer=CountingTimer(timings), directory=tmp_path)
    assert choice.screen == expected and choice.source == "measured" and choice.requested == "auto"
    record = choice.as_dict()
    assert record["int8_s"] == timings["int8"] and record["fp32_s"] == timings["fp32"]
    if timings["int8"] is not None:
        assert record["int8_over_fp32"] == pytest.approx(timings["int8"] / timings["fp32"], rel=1e-3)
    assert "slower" in choice.reason if timings is SLOW_INT8 else True


def test_cached_verdict_is_reused_and_a_different_cpu_times_again(tmp_path: Path) -> None:
    timer = CountingTimer(SLOW_INT8)
    first = choose_screen(None, CPU, machine=ZEN3, timer=timer, directory=tmp_path)
    again = choose_screen("auto", CPU, machine=ZEN3, timer=timer, directory=tmp_path)
    assert timer.calls == 1 and (first.source, again.source) == ("measured", "cached")
    assert again.screen == "fp32" and again.int8_s == SLOW_INT8["int8"]
    (cached,) = tmp_path.glob("*.json")
    assert json.loads(cached.read_text())["machine"]["cpu"] == ZEN3.cpu
    zen4 = Machine(cpu="AMD EPYC 9B14", flags_sha256="bbbb", torch=ZEN3.torch, capability="AVX512")
    fast = CountingTimer(FAST_INT8)
    other = choose_screen("auto", CPU, machine=zen4, timer=fast, directory=tmp_path)
    assert fast.calls == 1 and other.source == "measured" and other.screen == "int8"
    # a file whose stored machine differs (a renamed copy, a hash collision) is not trusted either
    cached.write_text(cached.read_text().replace(ZEN3.cpu, "Intel Xeon"))
    assert choose_screen("auto", CPU, machine=ZEN3, timer=timer, directory=tmp_path).source == "measured"
    assert timer.calls == 2


def test_cache_file_follows_umask_and_stays_in_the_user_cache_dir(fresh_cache: Path) -> None:
    old = os.umask(0o027)
    try:
        choose_screen("auto", CPU, machine=ZEN3, timer=CountingTimer(SLOW_INT8))
    finally:
        os.umask(old)
    (path,) = fresh_cache.glob("*")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.name == f"{ZEN3.key()}.json"


def test_unwritable_cache_dir_still_chooses_and_writes_nothing(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    choice = choose_screen("auto", CPU, machine=ZEN3, timer=CountingTimer(SLOW_INT8), directory=blocked / "screen")
    assert choice.screen == "fp32" and choice.source == "measured (not cached)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_requested_screens_are_not_timed_and_bad_names_are_refused(tmp_path: Path) -> None:
    timer = CountingTimer(SLOW_INT8)
    for name in ("int8", "bf16", "fp32"):
        choice = choose_screen(name, CPU, machine=ZEN3, timer=timer, directory=tmp_path)
        assert (choice.screen, choice.source) == (name, "requested")
    assert timer.calls == 0 and not list(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="screen: 'int4' is not one of auto, int8, bf16, fp32"):
        choose_screen("int4", CPU)
    with pytest.raises(ConfigError, match="int4"):
        max_cosine_assignment(np.eye(3), np.eye(3), screen="int4")  # solved densely, still refused


def test_pair_scorer_auto_uses_the_measured_verdict(fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = np.random.default_rng(0).standard_normal((40, 16))
    for timings, expected in ((SLOW_INT8, "fp32"), (FAST_INT8, "int8")):
        screen_choice.clear_memo()
        for f in fresh_cache.glob("*"):
            f.unlink()
        timer = CountingTimer(timings)
        monkeypatch.setattr(screen_choice, "measure_products", timer)
        scorer = PairScorer(a, a, plan_screen())
        assert scorer.screen == expected and scorer.swapped().screen == expected
        PairScorer(a, a, plan_screen())  # once per process
        assert timer.calls == 1
        res = max_cosine_assignment(a, a[::-1], dense_max_pairs=0)
        assert res.stats.screen == expected and res.stats.screen_choice["source"] == "measured"


def test_measure_products_times_both_products_quickly() -> None:
    import time

    t0 = time.perf_counter()
    timings = screen_choice.measure_products(CPU)
    assert time.perf_counter() - t0 < 5.0  # bounded (a loaded 2-core box included)
    assert timings["fp32"] > 0 and (timings["int8"] is None or timings["int8"] > 0)


def planted_2048(d: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two 2,048-latent decoders sharing half their rows (with seed noise) in feature families under a decaying
    spectrum: the flat cosine tail of real dictionaries that forces the proof to re-screen."""
    rng = np.random.default_rng(seed)
    n = 2048
    spectrum = (1.0 + np.arange(d) / (d / 16)) ** -0.5
    centres = rng.standard_normal((n // 8, d))

    def features(count: int) -> np.ndarray:
        x = (1.2 * rng.standard_normal((count, d)) + centres[rng.integers(0, len(centres), count)]) * spectrum
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    common = features(n // 2)
    a = np.vstack([common, features(n // 2)]) + rng.standard_normal((n, d)) * 0.35 / d**0.5
    b = np.vstack([common, features(n // 2)]) + rng.standard_normal((n, d)) * 0.35 / d**0.5
    return a.astype(np.float32), b[rng.permutation(n)].astype(np.float32)


@pytest.mark.parametrize("screen", ["int8", "bf16", "fp32"])
def test_planted_2048_matches_dense_scipy_under_every_screen(screen: str) -> None:
    a, b = planted_2048()
    mat = dense_cosines(a, b)
    rows, cols = linear_sum_assignment(mat, maximize=True)
    res = max_cosine_assignment(a, b, dense_max_pairs=0, screen=screen, with_row_max=True)
    assert res.stats.method == "sparse" and res.stats.screen == screen and res.stats.certified
    assert res.total == pytest.approx(float(mat[rows, cols].sum()), abs=1e-9)
    np.testing.assert_array_equal(res.partner[rows], cols)  # no ties in this pair: the same matching
    np.testing.assert_allclose(res.cosine, mat[np.arange(len(a)), res.partner], rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.row_max, mat.max(axis=1), rtol=0, atol=1e-12)


def _tiny_checkpoints(root: Path) -> list[str]:
    """Two small random TopK SAEs saved as checkpoints."""
    from saeseeds.config import SaeConfig
    from saeseeds.sae import SparseAutoencoder, save_sae

    paths = []
    for seed in (0, 1):
        sae = SparseAutoencoder(SaeConfig(num_latents=96, k=4), 24, generator=torch.Generator().manual_seed(seed))
        save_sae(sae, root / f"s{seed}")
        paths.append(str(root / f"s{seed}"))
    return paths


def test_compare_records_the_choice_and_refuses_a_bad_screen(
    fresh_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
    restore_quiet: None,
) -> None:
    from saeseeds.cli import main

    paths = _tiny_checkpoints(tmp_path)
    with pytest.raises(SystemExit) as exited:  # argparse's usage error, as one line (saeseeds.cli._Parser)
        main(["compare", *paths, "--out", str(tmp_path / "bad"), "--screen", "int4"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--screen" in err and "int4" in err
    assert not (tmp_path / "bad").exists()

    monkeypatch.setattr(assignment, "DENSE_MAX_PAIRS", 0)  # tiny SAEs take the sparse path, as large ones do
    monkeypatch.setattr(assignment, "COLD_DENSE_MAX_PAIRS", 0)
    monkeypatch.setattr(screen_choice, "measure_products", CountingTimer(SLOW_INT8))
    out = tmp_path / "cmp"
    assert main(["compare", *paths, "--out", str(out), "--verbose"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    (used,) = summary["screens"]
    assert used["screen"] == "fp32" and used["requested"] == "auto" and used["source"] == "measured"
    assert used["int8_over_fp32"] == pytest.approx(SLOW_INT8["int8"] / SLOW_INT8["fp32"], rel=1e-3)
    err = capsys.readouterr().err
    assert "screen fp32 (auto, measured): int8 GEMM 45.0x slower than float32" in err
    assert "decoder sparse (fp32 screen" in err

    out2 = tmp_path / "cmp2"
    assert main(["compare", *paths, "--out", str(out2), "--screen", "bf16", "--quiet"]) == 0
    (used,) = json.loads((out2 / "summary.json").read_text())["screens"]
    assert (used["screen"], used["source"]) == ("bf16", "requested")


def test_a_comparison_resolves_device_and_screen_once_and_every_scorer_shares_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`align_seeds` resolves one ScreenPlan for all its pairs; no pair, assignment or scorer resolves again."""
    import saeseeds.device
    from saeseeds.align import cross_seed, similarity

    monkeypatch.setattr(assignment, "DENSE_MAX_PAIRS", 0)  # every matching takes the sparse path (builds scorers)
    monkeypatch.setattr(assignment, "COLD_DENSE_MAX_PAIRS", 0)
    calls: dict[str, int] = {"device": 0, "screen": 0}
    plans = []

    def counted(name, fn):
        def wrapper(*a, **k):
            calls[name] += 1
            return fn(*a, **k)

        return wrapper

    monkeypatch.setattr(saeseeds.device, "resolve_device", counted("device", saeseeds.device.resolve_device))
    monkeypatch.setattr(screen_choice, "resolve_screen", counted("screen", screen_choice.resolve_screen))

    class Spy(similarity.PairScorer):
        def __init__(self, a, b, plan, **kw):
            plans.append(plan)
            super().__init__(a, b, plan, **kw)

    monkeypatch.setattr(assignment, "PairScorer", Spy)
    gen = torch.Generator().manual_seed(3)
    weights = [(torch.randn(48, 16, generator=gen), torch.randn(48, 16, generator=gen)) for _ in range(3)]
    result = cross_seed.align_seeds(weights, ["s0", "s1", "s2"], screen="fp32", device="cpu")
    assert calls == {"device": 1, "screen": 1}
    assert len(plans) == 6 and all(p is plans[0] for p in plans)  # 3 pairs x (decoder, encoder)
    assert plans[0].device == CPU and plans[0].screen == "fp32"
    assert result.alignments[(0, 1)].stats["decoder"]["screen"] == "fp32"
