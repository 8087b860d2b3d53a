"""Confidence intervals for reported metrics: percentile bootstrap of the mean over clips.

Every mean we report (per metric, and per predicted frame) comes with a 95 % interval obtained by
resampling the evaluated CLIPS with replacement (clips are the independent units; the frames of one clip
are not). With 2-D input (clips × frames) each column gets its own interval, but all columns use the same
resampled clips, so the per-frame intervals of one curve are consistent with each other.

Implementation: one multinomial draw gives, for every bootstrap replicate, how many times each clip is
picked; the replicate means are then a single matrix product (``counts @ values / n``) — vectorised, and
memory ``n_boot × clips`` whatever the number of columns. The draw comes from
``numpy.random.default_rng(seed)``, so a seed gives the same interval on every machine.
"""

from __future__ import annotations

import numpy as np

from vidpred.errors import VidpredError


def bootstrap_ci(values, n_boot: int = 1000, level: float = 0.95, seed: int = 0):
    """Percentile bootstrap interval ``(lo, hi)`` of the mean over the first axis.

    ``values``: 1-D (one value per clip) → two floats; 2-D (clips × frames) → two arrays, one entry per
    column. A single clip gives ``(v, v)`` (no spread can be estimated from one value).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim not in (1, 2):
        raise VidpredError(f"bootstrap_ci: expected 1-D (clips) or 2-D (clips × frames) values, got shape {v.shape}")
    n = v.shape[0]
    if n == 0:
        raise VidpredError("bootstrap_ci: no values (0 clips)")
    if not np.isfinite(v).all():
        raise VidpredError(f"bootstrap_ci: {int((~np.isfinite(v)).sum())} of the values are NaN or infinite")
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 1):
        raise VidpredError(f"bootstrap_ci: n_boot must be a positive integer, got {n_boot!r}")
    if not 0.0 < float(level) < 1.0:
        raise VidpredError(f"bootstrap_ci: level must be between 0 and 1 (e.g. 0.95), got {level!r}")

    if n == 1:
        lo = hi = v[0]
    else:
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=int(n_boot)).astype(np.float64)  # n_boot × n
        means = counts @ v / n  # n_boot (× columns)
        alpha = 100.0 * (1.0 - float(level)) / 2.0
        lo, hi = np.percentile(means, [alpha, 100.0 - alpha], axis=0)
    if v.ndim == 1:
        return float(lo), float(hi)
    return np.array(lo, dtype=np.float64), np.array(hi, dtype=np.float64)


__all__ = ["bootstrap_ci"]
