"""Study aggregation on planted seeds: the shared fractions (and everything derived) of each grid point are
known by construction and must come out exactly, through the table files and the figures' numbers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from saeseeds.align.cross_seed import align_seeds
from saeseeds.study.aggregate import similarity_by_frequency, study_row
from saeseeds.study.figures import study_figures
from saeseeds.study.table import write_table

N, D = 8, 64


def planted(common: int, pair01: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Three seeds of N latents: `common` rows identical in all seeds, `pair01` more shared by seeds 0 and 1
    only, every other row a basis vector no other seed uses (cosine 0 with everything)."""
    eye = torch.eye(D)
    fresh = iter(range(common + pair01, D))
    seeds = []
    for s in range(3):
        rows = list(range(common)) + (list(range(common, common + pair01)) if s < 2 else [])
        rows += [next(fresh) for _ in range(N - len(rows))]
        w = eye[rows]
        seeds.append((w, w.clone()))
    return seeds


def expected_fractions(common: int, pair01: int) -> list[float]:
    """Ordered pairs (0,1), (0,2), (1,0), (1,2), (2,0), (2,1)."""
    both = (common + pair01) / N
    return [both, common / N, both, common / N, common / N, common / N]


@pytest.mark.parametrize("grid", [[(4, 1), (2, 0), (6, 2)]])
def test_planted_shared_fractions_come_out_exactly(tmp_path, grid) -> None:
    rows, record = [], {"only_in_base": {}, "similarity_by_frequency": {}}
    for g, (common, pair01) in enumerate(grid):
        name = f"topk-n{N}-k{g + 1}"
        result = align_seeds(planted(common, pair01), ["seed0", "seed1", "seed2"], label=f"h/{name}",
                             hookpoint="h", sae_name=name)
        result.frequencies = [np.full(N, 10.0 ** -(i + 1)) for i in range(3)]
        for step, frac in ((5, 0.5), (10, 1.0)):
            records = [{"fvu": 0.1 * (i + 1), "l0": 4.0 + i, "dead_fraction": 0.0} for i in range(3)]
            rows.append(study_row(result, {"architecture": "topk", "k": g + 1, "target_l0": None},
                                  {"fraction": frac, "step": step, "tokens": step * 64}, records))
        record["only_in_base"][result.label] = {"mean": [1.0], "sd": [0.0]}
        record["similarity_by_frequency"][result.label] = similarity_by_frequency(result)
    write_table(rows, tmp_path)
    csv = pd.read_csv(tmp_path / "table.csv")
    parquet = pd.read_parquet(tmp_path / "table.parquet")
    pd.testing.assert_frame_equal(csv, parquet, check_dtype=False)
    assert len(csv) == 2 * len(grid)
    for g, (common, pair01) in enumerate(grid):
        want = np.array(expected_fractions(common, pair01))
        got = csv[(csv["k"] == g + 1) & (csv["step"] == 10)].iloc[0]
        assert got["shared_fraction_mean"] == pytest.approx(want.mean(), abs=1e-15)
        assert got["shared_fraction_sd"] == pytest.approx(want.std(), abs=1e-15)
        assert got["decoder_shared_fraction_mean"] == pytest.approx(want.mean(), abs=1e-15)
        assert got["mmcs_mean"] == pytest.approx(want.mean(), abs=1e-12)
        assert (got["shared_fraction_min"], got["shared_fraction_max"]) == (want.min(), want.max())
        assert got["n_seeds"] == 3 and got["n_pairs"] == 6 and got["num_latents"] == N
        # stability (both estimators agree here): common rows 1, pair-only rows 1/2 in seeds 0 and 1, rest 0
        stab = np.array([1.0] * common * 3 + [0.5] * pair01 * 2 + [0.0] * (3 * N - 3 * common - 2 * pair01))
        for kind in ("shared", "reappears"):
            assert got[f"stability_{kind}_mean"] == pytest.approx(stab.mean())
            assert got[f"stability_{kind}_q50"] == pytest.approx(np.quantile(stab, 0.5))
            assert got[f"stability_{kind}_q90"] == pytest.approx(np.quantile(stab, 0.9))
        # found only in base: all N with no other seed; with both others, only the rows no other seed has
        only = np.mean([N - common - pair01, N - common - pair01, N - common]) / N
        assert got["only_in_base_m0"] == 1.0 and got["only_in_base_m2"] == pytest.approx(only)
        assert got["fvu_mean"] == pytest.approx(0.2) and got["l0_mean"] == pytest.approx(5.0)
        assert got["l0_sd"] == pytest.approx(np.std([4.0, 5.0, 6.0]))
    # Figure 3 over all seeds: shared rows have matched cosine 1, others 0, per seed's own frequency bin
    curve = record["similarity_by_frequency"]["h/topk-n8-k1"]
    assert curve is not None and np.nansum(curve["pairs"]) == 6
    paths = study_figures({"rows": rows, **record}, tmp_path / "figures", "planted.toml")
    numbers = json.loads((tmp_path / "figures" / "fig4_shared_vs_size_k_tokens.json").read_text())
    assert numbers["k"]  # one line per (hookpoint, architecture, size) over k
    line = next(iter(numbers["k"].values()))
    assert line["x"] == [1, 2, 3]
    assert line["mean"] == pytest.approx([np.mean(expected_fractions(*g)) for g in grid])
    assert all(p.is_file() and p.suffix == ".png" for p in paths)
    # redrawn from the record as study.json stores it (NaN -> null in strict JSON): same figures, no error
    from saeseeds.atomic import json_text

    stored = json.loads(json_text({"rows": rows, **record}))
    assert None in next(iter(stored["similarity_by_frequency"].values()))["mean"]  # empty bins read back as null
    assert len(study_figures(stored, tmp_path / "again", "planted.toml")) == len(paths)
