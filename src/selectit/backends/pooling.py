"""Mean-pooled last hidden states over chosen tokens: the record embedding (selectit.measures.embeddings)
that a backend reads off a forward pass it runs anyway (the response-loss pass, or a rating pass).

Which tokens are given as character spans of the text the model reads; :func:`token_spans` turns them
into token positions the way :func:`selectit.backends.base.response_ids` finds where a response starts:
the boundary at character c is the length of the common prefix of the row's ids and the ids of the
text up to c, so a token that merges across a boundary counts after it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from selectit.plan import common_prefix_len

Spans = Sequence[tuple[int, int]]  # [start, end) pairs: characters of a text, or token positions of a row


def token_spans(encode: Callable[[str], list[int]], text: str, ids: Sequence[int],
                spans: Spans) -> list[tuple[int, int]]:
    """The token spans [a, b) of ``ids`` (``encode(text)``, possibly cut at the end or followed by an end
    token) that cover the character ``spans`` of ``text``; empty spans are dropped. A span cut off by
    the end of ``ids`` keeps what is left of it."""
    cuts = sorted({c for span in spans for c in span})
    bound = {c: common_prefix_len([list(ids), encode(text[:c])]) for c in cuts}
    return [(bound[s], bound[e]) for s, e in spans if bound[e] > bound[s]]


def positions(spans: Spans) -> np.ndarray:
    """(N,) int64: every position inside ``spans``."""
    parts = [np.arange(a, b, dtype=np.int64) for a, b in spans]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def mean_rows(torch, hidden, rows: Sequence[np.ndarray]) -> np.ndarray:
    """(B, H) float32: for each row, the mean of ``hidden`` (T, H), any float dtype) at its positions
    (int arrays indexing T), summed in float64; NaN for a row with no position."""
    counts = np.array([len(p) for p in rows], dtype=np.float64)
    flat = np.concatenate(rows) if len(rows) else np.zeros(0, dtype=np.int64)
    with torch.inference_mode():
        where = torch.as_tensor(flat, dtype=torch.long, device=hidden.device)
        which = torch.as_tensor(np.repeat(np.arange(len(rows)), counts.astype(np.int64)), dtype=torch.long,
                                device=hidden.device)
        sums = torch.zeros((len(rows), hidden.shape[-1]), dtype=torch.float64, device=hidden.device)
        sums.index_add_(0, which, hidden[where].double())
        out = sums.cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return (out / counts[:, None]).astype(np.float32)
