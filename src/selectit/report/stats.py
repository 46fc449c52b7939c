"""The report's statistics: pure functions on numpy arrays and strings, no I/O, no plotting.

Shapes: n records, P prompts. NaN marks a missing score (a prompt the model failed on, or a record
with no probability on any rating label).
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from collections.abc import Sequence

import numpy as np

LOW_MASS = 0.1
"""A record (mean over prompts) or prompt (mean over records) with less label mass than this is flagged:
the model put under 10% of its next-token probability on the ratings (the CLI warns at the same level)."""

# "Involves calculation" (our rule; the paper counts math/calculation problems but gives no rule):
# an arithmetic expression between numbers (``3 + 4``, ``12*7``, ``2^10``, ``15 % of``) anywhere in the
# instruction or response, or a math word in the instruction together with a digit in the instruction
# ("Calculate the area of a circle with radius 5"). "How many legs does a spider have?" has no digit, so
# it is not a calculation; "Name 3 fruits" has a digit but no math word, so it is not either.
_EXPRESSION = re.compile(r"\d\s*(?:[-+*/×÷^=]|\*\*)\s*\(?\s*\d|\d\s*%")
_MATH_WORDS = re.compile(
    r"\b(?:calculat\w*|comput\w*|solv\w*|evaluat\w*|simplif\w*|sum|product|quotient|remainder|multipl\w*|"
    r"divid\w*|subtract\w*|add|plus|minus|times|average|mean|median|percent\w*|ratio|equation|area|perimeter|"
    r"volume|convert|how many|how much|square root|factorial|interest|probability)\b", re.IGNORECASE)
_DIGIT = re.compile(r"\d")

# Task type: the first word of the instruction, the way the Alpaca and Self-Instruct papers show the
# first verb. Instructions start with an imperative verb ("Generate", "Explain") or are questions;
# questions ("What is ...", "Can you ...") are one type, "question". Leading "Please" is skipped; a
# conversation's leading "User:" role tag is dropped. No tagger: a first word that is not a verb
# ("The following ...") is shown as it is.
_QUESTION = frozenset(
    "what who whom whose which when where why how is are was were do does did can could would should will "
    "shall may might has have had am".split())
_ROLE = re.compile(r"^\s*(?:user|human|system)\s*:\s*", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def word_counts(texts: Sequence[str]) -> np.ndarray:
    """Whitespace-separated words per text. (n,) int."""
    return np.fromiter((len(t.split()) for t in texts), dtype=np.int64, count=len(texts))


def involves_calculation(instruction: str, response: str) -> bool:
    """True when the record is (or contains) a calculation, by the rule documented above."""
    if _EXPRESSION.search(instruction) or _EXPRESSION.search(response):
        return True
    return bool(_DIGIT.search(instruction) and _MATH_WORDS.search(instruction))


def task_type(instruction: str) -> str:
    """The instruction's first word, lower case ("generate", "explain"), or "question"; "(none)" if no word."""
    words = _WORD.findall(_ROLE.sub("", instruction, count=1)[:200])
    if words and words[0].lower() == "please":
        words = words[1:]
    if not words:
        return "(none)"
    first = words[0].lower()
    return "question" if first in _QUESTION else first


def type_mix(types: Sequence[str], selected: np.ndarray, top: int = 12) -> list[tuple[str, float, float]]:
    """(type, share of all records, share of selected records) for the ``top`` commonest types of all
    records, then "other" for the rest. ``selected``: (n,) bool. Shares are in [0, 1]."""
    all_counts = Counter(types)
    sel_counts = Counter(t for t, s in zip(types, selected) if s)
    n, k = max(len(types), 1), max(int(np.sum(selected)), 1)
    names = [t for t, _ in all_counts.most_common(top)]
    out = [(t, all_counts[t] / n, sel_counts[t] / k) for t in names]
    rest_all = len(types) - sum(all_counts[t] for t in names)
    if rest_all:
        rest_sel = int(np.sum(selected)) - sum(sel_counts[t] for t in names)
        out.append(("other", rest_all / n, rest_sel / k))
    return out


def prompt_std(token: np.ndarray) -> np.ndarray:
    """The prompts' disagreement per record: std over prompts (ddof 0, the one the sentence level divides
    by 1 + alpha * std), ignoring failed prompts; NaN when no prompt has a score. (n, P) -> (n,)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN, which is what we want
        return np.nanstd(np.asarray(token, dtype=np.float64), axis=1)


def nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN where a row has no value. (n, P) -> (n,)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.asarray(a, dtype=np.float64), axis=-1)


def low_mass_records(mass: np.ndarray, threshold: float = LOW_MASS) -> np.ndarray:
    """Records whose label mass, averaged over prompts, is below ``threshold`` (or absent). (n, P) -> (n,) bool."""
    m = nanmean_rows(mass)
    return ~(m >= threshold)


def prompt_mass(mass: np.ndarray) -> np.ndarray:
    """Mean label mass of each prompt over records, ignoring missing values. (n, P) -> (P,)."""
    return nanmean_rows(np.asarray(mass, dtype=np.float64).T)


def rating_counts(probs: np.ndarray) -> np.ndarray:
    """How often each rating is the model's choice (argmax, first on ties), per prompt.
    (n, P, S) raw label probabilities -> (P, S) counts; records with no mass on a prompt are not counted."""
    p = np.asarray(probs, dtype=np.float64)
    ok = np.isfinite(p).all(axis=2) & (np.nan_to_num(p).sum(axis=2) > 0)  # (n, P)
    choice = np.argmax(np.nan_to_num(p, nan=-1.0), axis=2)  # (n, P)
    S = p.shape[2]
    return np.stack([np.bincount(choice[ok[:, j], j], minlength=S) for j in range(p.shape[1])])


def share_selected(values: np.ndarray, selected: np.ndarray) -> tuple[float, float, float]:
    """Mean of ``values`` over all, selected and not selected records (NaN when a group is empty).
    values: (n,) numbers or bools; selected: (n,) bool."""
    v = np.asarray(values, dtype=np.float64)
    s = np.asarray(selected, dtype=bool)

    def mean(x):
        x = x[np.isfinite(x)]
        return float(x.mean()) if x.size else float("nan")

    return mean(v), mean(v[s]), mean(v[~s])


def ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties get the average of their ranks (as scipy.stats.rankdata). (n,) -> (n,) float."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # Boundaries of runs of equal values; each run gets the mean of the positions it spans.
    starts = np.r_[0, np.flatnonzero(sorted_x[1:] != sorted_x[:-1]) + 1]
    ends = np.r_[starts[1:], len(x)]
    avg = (starts + ends + 1) / 2.0  # mean of 1-based positions start+1 .. end
    out = np.empty(len(x))
    out[order] = np.repeat(avg, ends - starts)
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two score vectors over the records where both are finite; NaN when
    fewer than 2 such records or one side is constant. (n,), (n,) -> float."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 2:
        return float("nan")
    ra, rb = ranks(a[ok]), ranks(b[ok])
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def overlap(a: Sequence, b: Sequence) -> tuple[int, float]:
    """(size of the intersection, Jaccard index) of two selected sets; Jaccard is NaN if both are empty."""
    sa, sb = set(a), set(b)
    union = len(sa | sb)
    both = len(sa & sb)
    return both, (both / union if union else float("nan"))


def histogram(values: np.ndarray, bins: int | None = None, edges: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Counts of the finite values in equal bins over their range (or the given ``edges``), so a plot
    embeds B+1 numbers instead of every value. ``bins`` defaults to sqrt(count), kept within 10..50.
    values: any shape -> (edges (B+1,), counts (B,))."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if edges is None:
        bins = bins or min(50, max(10, math.ceil(math.sqrt(v.size))))
        lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
    counts, _ = np.histogram(v, bins=edges)
    return edges, counts


def pca_2d(x: np.ndarray) -> np.ndarray:
    """(m, 2): rows of ``x`` (m, H) projected on their first two principal components (SVD of the
    centred rows, in float64; the sign of each component fixed so its largest loading is positive)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return np.zeros((len(x), 2))
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    vt = vt[:2] * np.sign(vt[:2][np.arange(min(2, len(vt))), np.abs(vt[:2]).argmax(axis=1)])[:, None]
    out = centred @ vt.T
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
