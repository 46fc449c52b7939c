"""The SelectIT math, pure numpy: token, sentence and model level (SPEC section 1.2-1.4).

Shapes: n records, P rating prompts, S rating labels (1..S), M models.

Two normalisations are offered:
- ``paper`` (default): p'_k = p_k / sum_j p_j, as the paper writes it.
- ``reference``: softmax(p / sum_j p_j), what the authors' published scripts compute
  (it squashes every distribution towards uniform; the largest possible p' is ~0.405 for S = 5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MODES = ("paper", "reference")
RATINGS = ("argmax", "expected")
PROMPT_WEIGHTS = ("equal", "mass")

# The published model_level.py hard-codes these for its three models (7B, 13B, 70B);
# by the paper's own rule they would be 7/90, 13/90, 70/90.
REFERENCE_MODEL_WEIGHTS = (7 / 20, 13 / 20, 70 / 90)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def label_mass(probs: np.ndarray) -> np.ndarray:
    """Probability the model put on the S valid labels.

    probs: (..., S) raw next-token probabilities of the label tokens. Returns (...).
    """
    return np.asarray(probs, dtype=np.float64).sum(axis=-1)


def normalise(probs: np.ndarray, *, mode: str = "paper") -> np.ndarray:
    """Renormalise label probabilities over the S labels.

    probs: (..., S). Returns (..., S); rows with zero or non-finite mass become NaN.
    """
    _check_mode(mode)
    p = np.asarray(probs, dtype=np.float64)
    mass = p.sum(axis=-1, keepdims=True)
    bad = ~np.isfinite(mass) | (mass <= 0) | ~np.isfinite(p).all(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = p / mass
        if mode == "reference":
            e = np.exp(q)
            q = e / e.sum(axis=-1, keepdims=True)
    return np.where(bad, np.nan, q)


def token_scores(probs: np.ndarray, *, mode: str = "paper") -> np.ndarray:
    """Token-level score of each distribution (the paper's token level).

    S_base = argmax_k p'_k (1-based, first max on ties);
    S_token = S_base / (S - 1) * sum_k (p'_{S_base} - p'_k).

    probs: (..., S) raw label probabilities. Returns (...); NaN where the mass is zero or not finite.
    """
    q = normalise(probs, mode=mode)
    S = q.shape[-1]
    if S < 2:
        raise ValueError(f"the rating scale needs at least 2 labels, got {S}")
    valid = np.isfinite(q).all(axis=-1)
    filled = np.where(valid[..., None], q, 0.0)
    base = filled.argmax(axis=-1)  # first max on ties, 0-based
    top = np.take_along_axis(filled, base[..., None], axis=-1)[..., 0]
    spread = (top[..., None] - filled).sum(axis=-1) / (S - 1)
    return np.where(valid, (base + 1) * spread, np.nan)


def expected_scores(probs: np.ndarray) -> np.ndarray:
    """Expected rating sum_k k * p'_k (p' = p / sum p), in [1, S]: every label's probability counts,
    not only the winner's. probs: (..., S). Returns (...); NaN where the mass is zero or not finite."""
    q = normalise(probs, mode="paper")
    return q @ np.arange(1, q.shape[-1] + 1, dtype=np.float64)


def calibrate(probs: np.ndarray, content_free: np.ndarray) -> np.ndarray:
    """Contextual calibration (Zhao et al., "Calibrate Before Use", ICML 2021), per prompt.

    The model's label distribution on content-free inputs (e.g. "N/A") shows its bias towards some
    ratings whatever the record; dividing by it (q_k ∝ p_k / c_k, c = that distribution normalised)
    removes the bias. probs: (n, P, S) raw; content_free: (P, S) raw (averaged over the content-free
    inputs). Returns (n, P, S) calibrated distributions that sum to 1 (NaN where either side has no mass).
    """
    p = normalise(probs)
    c = normalise(content_free)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = p / np.where(c > 0, c, np.nan)[None]
        return w / w.sum(axis=-1, keepdims=True)


def sentence_scores(token: np.ndarray, *, alpha: float = 0.2, weights: np.ndarray | None = None) -> np.ndarray:
    """Sentence-level score over the P prompts (the paper's sentence level): mean / (1 + alpha * std), ddof = 0.

    token: (n, P). Prompts whose token score is NaN (no label mass) are left out of that record's
    mean and std; a record with no valid prompt gets NaN. ``weights`` (n, P), optional: a weighted
    mean and std instead (e.g. the label mass, so prompts the model did not answer with a rating count
    less). Returns (n,).
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    t = np.asarray(token, dtype=np.float64)
    if t.ndim != 2:
        raise ValueError(f"token scores must have shape (n, P), got {t.shape}")
    if weights is not None:
        w = np.where(np.isfinite(t), np.asarray(weights, dtype=np.float64), 0.0)
        if w.shape != t.shape:
            raise ValueError(f"prompt weights {w.shape} do not match token scores {t.shape}")
        total = w.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            filled = np.where(w > 0, t, 0.0)
            mean = (w * filled).sum(axis=1) / total
            std = np.sqrt((w * (filled - mean[:, None]) ** 2).sum(axis=1) / total)
        return np.where(total > 0, mean / (1 + alpha * std), np.nan)
    out = np.full(t.shape[0], np.nan)
    ok = np.isfinite(t)
    full = ok.all(axis=1)
    if full.any():  # fast path: every prompt valid
        out[full] = t[full].mean(axis=1) / (1 + alpha * t[full].std(axis=1))
    for i in np.flatnonzero(~full & ok.any(axis=1)):
        v = t[i, ok[i]]
        out[i] = v.mean() / (1 + alpha * v.std())
    return out


def likelihood_scores(given: np.ndarray, blank: np.ndarray) -> np.ndarray:
    """The model's own likelihood evidence for a response, in nats per token (higher is better).

    fluency = -given: the mean log-probability of the response's tokens given the instruction
    (shuffled, cut-off or garbled text is unlikely); relevance = blank - given: how much the
    instruction raises that log-probability over the same prompt with a blank instruction (another
    task's answer gains nothing from the instruction). likelihood = fluency + relevance = blank - 2 given.

    given, blank: (n,) mean response-token losses (selectit.measures.losses, kinds GIVEN and GIVEN_BLANK: the
    response and its end-of-text token).
    Returns (n,); NaN where a loss is NaN (no response token could be scored).
    """
    g = np.asarray(given, dtype=np.float64)
    b = np.asarray(blank, dtype=np.float64)
    if g.shape != b.shape or g.ndim != 1:
        raise ValueError(f"losses must both have shape (n,), got {g.shape} and {b.shape}")
    return -g + (b - g)


INFORMATION_CHARS = 200  # the information term is in nats per this many characters of response (~50 tokens)
LIKELIHOOD_TERMS = ("information", "per-token")


def information_scores(given: np.ndarray, blank: np.ndarray, length: np.ndarray) -> np.ndarray:
    """The information the instruction gives about the response, in nats per INFORMATION_CHARS characters
    of response (higher is better): (blank - given) x length / INFORMATION_CHARS.

    blank - given is the mean gain per token of knowing the instruction (the response's loss after a
    blank instruction minus its loss after the real one); times the response's length it is the total
    gain, the pointwise mutual information of instruction and response in nats (up to the tokens per
    character, a constant of the tokenizer: characters keep the term comparable across models). A short
    answer the instruction pins down gains little in total; an answer that ignores the instruction, or
    repeats itself (its repeats are as predictable without the instruction), gains little per token.

    given, blank: (n,) mean losses (kinds GIVEN and GIVEN_BLANK); length: (n,) characters of each response.
    Returns (n,); NaN where a loss is NaN."""
    g = np.asarray(given, dtype=np.float64)
    b = np.asarray(blank, dtype=np.float64)
    n = np.asarray(length, dtype=np.float64)
    if not g.shape == b.shape == n.shape or g.ndim != 1:
        raise ValueError(f"losses and lengths must all have shape (n,), got {g.shape}, {b.shape}, {n.shape}")
    return (b - g) * n / INFORMATION_CHARS


def with_likelihood(sentence: np.ndarray, likelihood: np.ndarray, weight: float) -> np.ndarray:
    """Sentence-level score plus ``weight`` x likelihood (rating points per nat). sentence, likelihood:
    (n,). Returns (n,). weight 0 returns ``sentence`` unchanged (the paper's method)."""
    if not weight >= 0:
        raise ValueError(f"the likelihood weight must be >= 0, got {weight}")
    s = np.asarray(sentence, dtype=np.float64)
    if weight == 0:
        return s
    return s + weight * np.asarray(likelihood, dtype=np.float64)


def model_weights(num_parameters: Sequence[float]) -> np.ndarray:
    """The paper's model-level weights: theta_m / sum(theta). Returns (M,)."""
    theta = np.asarray(num_parameters, dtype=np.float64)
    if theta.ndim != 1 or len(theta) == 0:
        raise ValueError("need at least one model weight")
    if (theta <= 0).any() or not np.isfinite(theta).all():
        raise ValueError(f"model weights must be positive and finite, got {theta.tolist()}")
    return theta / theta.sum()


def reference_model_weights(num_models: int) -> np.ndarray:
    """The published scripts' weights: 7/20, 13/20, 70/90, defined only for exactly three models
    (given smallest to largest). One model gets weight 1 (nothing to combine)."""
    if num_models == 1:
        return np.ones(1)
    if num_models == 3:
        return np.asarray(REFERENCE_MODEL_WEIGHTS)
    raise ValueError(
        f"reference mode defines model weights for exactly 1 or 3 models, got {num_models}; "
        "use --mode paper or pass --model-weights"
    )


def model_scores(sentence: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Model-level score (the paper's model level): sum_m w_m * S_sent_m.

    sentence: (n, M); weights: (M,) (already normalised as the mode wants). Returns (n,);
    NaN where any model's sentence score is NaN (a record is never scored by a subset of models).
    """
    s = np.asarray(sentence, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != len(w):
        raise ValueError(f"sentence scores {s.shape} do not match {len(w)} model weights")
    return s @ w
