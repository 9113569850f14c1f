"""Sampling: groups are matched on frequency bin by bin, splits never overlap, negatives never fire and are matched
on token frequency, and windows never cross a chunk."""

from __future__ import annotations

import numpy as np
import pytest

from saeseeds.errors import ConfigError
from saeseeds.interpret.contexts import Corpus, window_maxima
from saeseeds.interpret.sampling import (
    SamplingOptions,
    latent_split,
    matched_sample,
    quantile_sample,
)


def test_matched_sample_takes_as_many_from_each_group_in_every_frequency_bin() -> None:
    rng = np.random.default_rng(0)
    n = 400
    freq = rng.uniform(1e-4, 1e-1, n)
    first = freq > 0.03  # the first group is the frequent one: an unmatched sample would differ in frequency
    second = ~first
    opts = SamplingOptions(latents=30, freq_bins=5)
    a, b, strata = matched_sample(freq, first, second, 30, opts, rng)
    assert a.size == b.size > 0 and first[a].all() and second[b].all()
    for k in np.unique(strata[np.concatenate([a, b])]):
        assert (strata[a] == k).sum() == (strata[b] == k).sum()
    assert abs(np.log(freq[a]).mean() - np.log(freq[b]).mean()) < abs(np.log(freq[first]).mean()
                                                                      - np.log(freq[second]).mean())


def test_splits_are_disjoint_and_negatives_are_silent_and_token_frequency_matched() -> None:
    rng = np.random.default_rng(1)
    chunks = rng.integers(0, 50, (40, 24))
    corpus = Corpus(chunks, window=6)
    assert corpus.n_windows == 160 and corpus.span(5) == (1, 6, 12)
    positions = np.sort(rng.choice(40 * 24, 120, replace=False))
    activating, best = window_maxima(corpus, positions, rng.uniform(0.5, 2, positions.size))
    assert (np.diff(best) <= 0).all()
    opts = SamplingOptions(n_top=4, n_explain_random=4, n_score=10, min_split=2)
    split = latent_split(activating, corpus.n_windows, corpus.commonness, opts, rng)
    assert split.explain.size == 8 and split.score.size == 10
    assert set(split.explain[:4]) == set(activating[:4])  # the strongest go to the explainer
    assert not set(split.explain) & set(split.score)
    neg = np.concatenate([split.explain_negative, split.score_negative])
    assert neg.size == 18 and np.unique(neg).size == 18 and not set(neg) & set(activating)
    gap = np.abs(corpus.commonness[split.score_negative].mean() - corpus.commonness[split.score].mean())
    random_gap = np.abs(corpus.commonness.std())
    assert gap < random_gap


def test_quantile_sample_spreads_over_the_activation_range() -> None:
    rng = np.random.default_rng(0)
    picked = quantile_sample(np.arange(100), 5, 5, rng)
    assert sorted(p // 20 for p in picked.tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("field", ["latents", "n_score", "window"])
def test_out_of_range_sampling_is_one_line_naming_the_flag(field: str) -> None:
    with pytest.raises(ConfigError, match=f"--{field.replace('_', '-')}"):
        SamplingOptions(**{field: 0})
