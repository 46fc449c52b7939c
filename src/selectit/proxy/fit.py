"""The learned proxy of the full score (issue 18): which records are scored in full, the regressor from
cheap features to the full score, and how well it holds on records it did not see. Pure numpy and
scikit-learn / LightGBM (imported inside the functions: ``pip install 'selectit[proxy]'``).

Shapes: n records in the input, m in the sample, F features per record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from selectit.config import PROXY_REGRESSORS
from selectit.errors import ConfigError

DEFAULT_FRACTION = 0.05
MIN_SAMPLE = 2000
HELD_OUT = 0.2  # share of the sample the regressor does not see until it is judged
REGRESSORS = PROXY_REGRESSORS
RIDGE_ALPHAS = tuple(10.0 ** k for k in range(-2, 6))  # cross-validated strength (RidgeCV)
TOP = 0.2  # the overlap reported is of the best 20%, the default selection


def sample_size(n: int, sample: float | None) -> int:
    """How many of ``n`` records are scored in full: ``sample`` < 1 is a fraction, >= 1 a count; None:
    5% with at least 2,000 (never more than n)."""
    if sample is None:
        return min(n, max(MIN_SAMPLE, math.ceil(DEFAULT_FRACTION * n)))
    if sample < 1:
        return min(n, max(1, math.ceil(sample * n)))
    if sample != int(sample):
        raise ConfigError(f"--proxy-sample must be a fraction in (0, 1) or a whole number of records, got {sample}")
    return min(n, int(sample))


def sample_positions(n: int, size: int, seed: int) -> np.ndarray:
    """(size,) sorted input positions scored in full: a seeded uniform draw, the same for the same n,
    size and seed (so a resumed run measures the same records)."""
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def split_held_out(m: int, seed: int, share: float = HELD_OUT) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) positions in a sample of m (seeded; at least 2 on each side when m allows)."""
    order = np.random.default_rng(seed + 1).permutation(m)
    held = min(max(2, round(share * m)), m - 2) if m >= 4 else 0
    return np.sort(order[held:]), np.sort(order[:held])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    from scipy.stats import spearmanr

    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def top_overlap(full: np.ndarray, predicted: np.ndarray, fraction: float = TOP) -> float:
    """Share of the best ``fraction`` by ``full`` that is also in the best ``fraction`` by ``predicted``."""
    k = max(1, round(fraction * len(full)))
    best = set(np.argsort(-full, kind="stable")[:k].tolist())
    return len(best & set(np.argsort(-predicted, kind="stable")[:k].tolist())) / k


def make_regressor(name: str, seed: int):
    """An unfitted scikit-learn style regressor: ``ridge`` (RidgeCV over RIDGE_ALPHAS on standardised
    features; sparse features are not centred) or ``lightgbm`` (gradient-boosted trees, small and
    deterministic)."""
    if name not in REGRESSORS:
        raise ConfigError(f"--proxy-regressor must be one of {', '.join(REGRESSORS)}, got {name!r}")
    try:
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        raise ConfigError("--proxy needs scikit-learn: pip install 'selectit[proxy]'") from None
    if name == "ridge":
        return make_pipeline(StandardScaler(with_mean=False), RidgeCV(alphas=RIDGE_ALPHAS))
    try:
        from lightgbm import LGBMRegressor
    except ImportError:
        raise ConfigError("--proxy-regressor lightgbm needs lightgbm: pip install 'selectit[proxy]'") from None
    return LGBMRegressor(n_estimators=300, learning_rate=0.05, num_leaves=15, min_child_samples=10,
                         subsample=0.8, subsample_freq=1, colsample_bytree=0.8, random_state=seed,
                         deterministic=True, force_row_wise=True, n_jobs=1, verbose=-1)


@dataclass
class ProxyFit:
    """A regressor fitted on the whole sample, and how a copy fitted on the sample's training part did on
    its held-out part (the figures a user decides by)."""

    model: object
    regressor: str
    sample: int  # records scored in full
    trained_on: int  # of them, for the held-out figures
    held_out: int
    spearman: float  # held-out Spearman of predicted vs full
    top_overlap: float  # held-out overlap of the best 20% by each
    held_full: np.ndarray = field(repr=False)  # (h,) full scores of the held-out records
    held_predicted: np.ndarray = field(repr=False)  # (h,) what the training-part regressor predicted
    alpha: float | None = None  # ridge: the strength cross-validation chose

    def predict(self, features) -> np.ndarray:
        """(k,) predicted full scores of (k, F) features."""
        return np.asarray(self.model.predict(features), dtype=np.float64)

    def figures(self) -> dict:
        """config.json's record of the fit (no arrays but the held-out pairs, for the calibration plot)."""
        return {"regressor": self.regressor, "sample": self.sample, "trained_on": self.trained_on,
                "held_out": self.held_out, "held_out_spearman": _round(self.spearman),
                "held_out_top20_overlap": _round(self.top_overlap),
                **({"ridge_alpha": self.alpha} if self.alpha is not None else {}),
                "held_out_pairs": {"full": [_round(v) for v in self.held_full],
                                   "predicted": [_round(v) for v in self.held_predicted]}}


def fit(features, full: np.ndarray, *, regressor: str = "ridge", seed: int = 0) -> ProxyFit:
    """Fit ``regressor`` from (m, F) ``features`` to the (m,) ``full`` scores of the sample.

    The held-out figures come from a copy fitted on the training part (HELD_OUT of the sample is kept
    aside, seeded); the returned model is then fitted on the whole sample, which is what predicts the
    other records. Records whose full score is NaN (unscored) are left out of both."""
    full = np.asarray(full, dtype=np.float64)
    keep = np.flatnonzero(np.isfinite(full))
    if len(keep) < 4:
        raise ConfigError(f"--proxy needs at least 4 scored records in its sample, got {len(keep)}; "
                          "raise --proxy-sample")
    X, y = features[keep], full[keep]  # numpy or scipy.sparse rows
    train, held = split_held_out(len(keep), seed)
    judge = make_regressor(regressor, seed).fit(X[train], y[train])
    predicted = np.asarray(judge.predict(X[held]), dtype=np.float64)
    model = make_regressor(regressor, seed).fit(X, y)
    alpha = float(model[-1].alpha_) if regressor == "ridge" else None
    return ProxyFit(model=model, regressor=regressor, sample=len(keep), trained_on=len(train), held_out=len(held),
                    spearman=spearman(y[held], predicted), top_overlap=top_overlap(y[held], predicted)
                    if len(held) else float("nan"), held_full=y[held], held_predicted=predicted, alpha=alpha)


def _round(x: float) -> float | None:
    return round(float(x), 6) if math.isfinite(float(x)) else None
