"""Selection policies: fraction, top-N, threshold (sorted by score, descending; ties keep input order).

Every policy ranks by score, descending, with a stable sort: equal scores keep input order.
Records whose score is NaN (no probability on any rating label) rank last and are never selected.
"""

from __future__ import annotations

import math

import numpy as np

from selectit.errors import ConfigError


def rank(scores: np.ndarray) -> np.ndarray:
    """Indices of scores from best to worst; ties keep input order; NaN last. (n,) -> (n,)."""
    s = np.asarray(scores, dtype=np.float64)
    key = np.where(np.isnan(s), np.inf, -s)  # ascending on -score == descending on score
    return np.argsort(key, kind="stable")


def _valid_count(s: np.ndarray) -> int:
    return int(np.isfinite(s).sum())


def select_fraction(scores: np.ndarray, fraction: float) -> np.ndarray:
    """The first floor(n * fraction) records by rank. fraction in (0, 1]. Returns indices, best first."""
    if not (0 < fraction <= 1):
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    s = np.asarray(scores, dtype=np.float64)
    # The small epsilon keeps floor(100 * 0.29) at 29 despite 0.29 * 100 == 28.999999999999996.
    k = math.floor(len(s) * fraction + 1e-9)
    return select_top(s, k)


def select_top(scores: np.ndarray, n: int) -> np.ndarray:
    """The first n records by rank (fewer if fewer have a valid score). Returns indices, best first."""
    if n < 0:
        raise ValueError(f"top must be >= 0, got {n}")
    s = np.asarray(scores, dtype=np.float64)
    return rank(s)[: min(n, _valid_count(s))]


def select_threshold(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Every record with score >= threshold. Returns indices, best first."""
    s = np.asarray(scores, dtype=np.float64)
    order = rank(s)
    return order[s[order] >= threshold]


def choose(scores: np.ndarray, *, fraction: float | None = None, top: int | None = None,
           threshold: float | None = None) -> np.ndarray:
    """Apply exactly one policy; returns input positions, best first."""
    given = [x is not None for x in (fraction, top, threshold)]
    if sum(given) != 1:
        raise ConfigError("give exactly one of --fraction, --top, --threshold")
    try:
        if fraction is not None:
            return select_fraction(scores, fraction)
        if top is not None:
            return select_top(scores, top)
        return select_threshold(scores, threshold)
    except ValueError as e:
        raise ConfigError(str(e)) from None
