"""Length-neutral ranking (``--length-neutral``, issue 26): the best records for their length.

The default's information term grows with the response (the information an instruction gives about an
answer is counted in total, over its characters), so its top 20% is the pool's long answers: on the
contaminated 500-record pools of bench/proof.py its answers average 61 words against the pool's 38, and
a model tuned on them is worse than a random 20% on short held-out answers. Here records are ranked by
their score minus the median score of the records of like response length:

- bins: up to ``BINS`` quantile bins of the response's characters over the records that can be selected
  (at least ``MIN_PER_BIN`` records a bin, so a small input gets fewer bins; one bin is the plain ranking
  shifted, the same order); records of equal length always share a bin;
- key: score - median(scores of the selectable records in the record's bin).

Unlike a quota per length stratum, a bin that is mostly junk (short template answers, say) has a junk
median, so what stands out there is its clean records, and nothing forces the selection to take junk to
fill a bin's share. Pure numpy; the selection steps (selectit.selection.steps) call it after the
duplicate steps, before the policy and the diversity walk.
"""

from __future__ import annotations

import numpy as np

BINS = 10
MIN_PER_BIN = 20


def bin_edges(lengths: np.ndarray, eligible: np.ndarray, bins: int = BINS, min_per_bin: int = MIN_PER_BIN
              ) -> np.ndarray:
    """Inner bin edges (b - 1,) in characters: quantiles of ``lengths`` (n,) over the ``eligible`` (n,) bool
    records, b = min(bins, eligible count // min_per_bin) (at least 1), duplicates dropped."""
    chosen = np.asarray(lengths, dtype=np.float64)[np.asarray(eligible, dtype=bool)]
    b = max(1, min(bins, len(chosen) // min_per_bin))
    if b == 1:
        return np.zeros(0)
    return np.unique(np.quantile(chosen, np.linspace(0, 1, b + 1)[1:-1]))


def neutral_scores(scores: np.ndarray, lengths: np.ndarray, eligible: np.ndarray, bins: int = BINS,
                   min_per_bin: int = MIN_PER_BIN) -> tuple[np.ndarray, dict]:
    """The ranking key (n,) and what it did.

    scores: (n,) float, NaN where unscored; lengths: (n,) response characters; eligible: (n,) bool, the
    records that can be selected (their medians alone set the key). Returns (key, info): key = score -
    the median score of the eligible records in the record's length bin (NaN where the score is NaN);
    info: {"bins": b, "edges": inner edges in characters, "medians": b medians (None for an empty bin),
    "counts": eligible records per bin}."""
    s = np.asarray(scores, dtype=np.float64)
    n = np.asarray(lengths, dtype=np.float64)
    ok = np.asarray(eligible, dtype=bool) & np.isfinite(s)
    if not s.shape == n.shape == ok.shape or s.ndim != 1:
        raise ValueError(f"scores, lengths and eligible must all have shape (n,), got {s.shape}, {n.shape}, "
                         f"{np.shape(eligible)}")
    edges = bin_edges(n, ok, bins, min_per_bin)
    where = np.searchsorted(edges, n, side="right")  # (n,) bin of each record; equal lengths, one bin
    medians = np.full(len(edges) + 1, np.nan)
    counts = np.bincount(where[ok], minlength=len(medians))
    for b in np.flatnonzero(counts):
        medians[b] = np.median(s[ok & (where == b)])
    key = s - np.nan_to_num(medians[where], nan=0.0)
    info = {"bins": int(len(medians)), "edges": [float(e) for e in edges],
            "medians": [None if np.isnan(m) else round(float(m), 6) for m in medians],
            "counts": counts.tolist()}
    return key, info
