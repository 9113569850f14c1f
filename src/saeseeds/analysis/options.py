"""The knobs of `saeseeds analyze` (`AnalyzeOptions`): read by every analysis of one configuration."""

from __future__ import annotations

from dataclasses import dataclass, field

from saeseeds.align.sharing import SharingRule

CLAIMS_ESTIMATOR = "reappears"
"""The claims' paper defines feature stability by decoder reappearance: the default estimator of `analyze`."""


@dataclass
class AnalyzeOptions:
    """Knobs of the instability analysis (CLI flags of `saeseeds analyze`)."""

    rule: SharingRule = field(default_factory=lambda: SharingRule(stability=CLAIMS_ESTIMATOR))
    """Sharing threshold, stability estimator and stable / unstable cut (the project's one definition). The
    claims tested here are Gerasimov et al.'s, so the default estimator is theirs, decoder reappearance
    (`reappears`, max decoder cosine ≥ τ); Paulo & Belrose's `shared` stays the default of `compare`."""
    alternate: bool = True
    """Judge the claims under the other stability estimator too (same τ and cut; no new alignment), reported
    beside each verdict with whether the answer changes."""
    n_top: int = 10
    """Top-activating contexts kept per latent."""
    n_show: int = 10
    """Latents shown in the contexts page for each of least / most stable."""
    n_random: int = 200
    """Random control draws per seed and claim (empirical p-values); the descriptive subspace baselines use
    at most 5 (descriptive only)."""
    n_random_lm: int = 99
    """Random control draws per seed for the LM-based ablation (each draw is two passes of the model); ≤ n_random.
    99 lets its p reach 1/100 = α/5, Holm's first step over the five claims at α = 0.05."""
    freq_bins: int = 10
    """Frequency strata (quantile bins of log-frequency of the alive latents) for matched controls."""
    match: str = "frequency"
    """Control matching: "frequency", "frequency_mass" (bins split at the median activation mass) or "none"."""
    alpha: float = 0.05
    """Family-wise level of the Holm-corrected verdicts."""
    max_tokens: int = 262_144
    """Token budget of the firing, trigger and ablation statistics: held-out rows, then distinct training rows,
    each at most once (0: the held-out rows only). Set by `saeseeds analyze --max-tokens`."""
    lm_train_rows: bool = False
    """Add an LM run's training rows (an LM forward over its training chunks, `analysis.token_budget`); off by
    default, so the default analysis runs no LM forward. Set by `saeseeds analyze --analysis-tokens N`."""
    group_threshold: float = 0.5
    """|cos| above which two unstable latents (any seeds) are joined into a group."""
    subspace_dim: int = 0
    """Compare top-q principal subspaces with q ≤ this; 0 means d_in // 4 in the descriptive tables and d_c // 4
    in the span verdict (d_c: the dimension of the stable span's orthogonal complement)."""
    lm_loss: bool = False
    """Run the model-based ablation (LM loss / output recovered: model passes); off by default (`--lm-loss`)."""
    lm_max_chunks: int = 0
    """Held-out chunks used by the model-based ablation (one model pass per set; 0: all)."""
    lm_batch_size: int = 8
    seed: int = 0
    progress: bool = False
