"""Selection policies: fraction, top-N, threshold (sorted by score, descending; ties keep input order).

Every policy ranks by score, descending, with a stable sort: equal scores keep input order.
Records whose score is NaN (no probability on any rating label) rank last and are never selected.
A :class:`Policy` is checked when it is made, so a command makes it first and fails before any work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from selectit.errors import ConfigError


def rank(scores: np.ndarray) -> np.ndarray:
    """Indices of scores from best to worst; ties keep input order; NaN last. (n,) -> (n,)."""
    s = np.asarray(scores, dtype=np.float64)
    key = np.where(np.isnan(s), np.inf, -s)  # ascending on -score == descending on score
    return np.argsort(key, kind="stable")


def _valid_count(s: np.ndarray) -> int:
    return int(np.isfinite(s).sum())


def fraction_count(n: int, fraction: float) -> int:
    """floor(n * fraction): how many of n records a fraction keeps. fraction in (0, 1]."""
    if not (0 < fraction <= 1):
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    # The small epsilon keeps floor(100 * 0.29) at 29 despite 0.29 * 100 == 28.999999999999996.
    return math.floor(n * fraction + 1e-9)


def select_fraction(scores: np.ndarray, fraction: float) -> np.ndarray:
    """The first floor(n * fraction) records by rank. fraction in (0, 1]. Returns indices, best first."""
    s = np.asarray(scores, dtype=np.float64)
    return select_top(s, fraction_count(len(s), fraction))


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


def sample(ranked: np.ndarray, budget: int | None, seed: int) -> np.ndarray:
    """``budget`` of the ``ranked`` (k,) positions drawn uniformly without replacement (all of them when
    fewer or budget is None), kept in their ranked order. The same seed and input give the same draw."""
    ranked = np.asarray(ranked)
    if budget is None or budget >= len(ranked):
        return ranked
    picked = np.random.default_rng(seed).choice(len(ranked), size=budget, replace=False)
    return ranked[np.sort(picked)]


@dataclass(frozen=True)
class Policy:
    """Exactly one of ``fraction`` (in (0, 1]), ``top`` (>= 0) or ``threshold``; a ConfigError when made
    otherwise."""

    fraction: float | None = None
    top: int | None = None
    threshold: float | None = None

    def __post_init__(self):
        if sum(x is not None for x in (self.fraction, self.top, self.threshold)) != 1:
            raise ConfigError("give exactly one of --fraction, --top, --threshold")
        try:
            self.budget(0)
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def budget(self, n: int) -> int | None:
        """How many of n records it keeps at most (None: a threshold keeps every record over it)."""
        if self.fraction is not None:
            return fraction_count(n, self.fraction)
        if self.top is not None and self.top < 0:
            raise ValueError(f"top must be >= 0, got {self.top}")
        return self.top

    def choose(self, scores: np.ndarray) -> np.ndarray:
        """Input positions of the chosen records, best first. (n,) -> (k,)"""
        if self.threshold is not None:
            return select_threshold(scores, self.threshold)
        return select_top(scores, self.budget(len(scores)))


def choose(scores: np.ndarray, *, fraction: float | None = None, top: int | None = None,
           threshold: float | None = None) -> np.ndarray:
    """Apply exactly one policy; returns input positions, best first."""
    return Policy(fraction, top, threshold).choose(scores)
