"""The batch plan: which prompts go through the model together, fixed by the data alone.

Prompts are grouped so that each group shares a token prefix (prompt-first layout: one group per
rating prompt, sharing the rating prompt; record-first: one group per record, sharing the record).
Within a group, prompts are sorted by length (little padding) and cut into batches by a row cap and,
optionally, a padded-token budget. The plan depends only on the token ids, never on what was already
scored, so a rerun computes every batch the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Batch:
    rows: list[int]  # indices into the items
    shared: int  # every row starts with the same `shared` tokens


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix that every sequence shares."""
    if not seqs:
        return 0
    first, n = seqs[0], min(len(s) for s in seqs)
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
    return n


def plan_batches(items: Sequence[Sequence[int]], groups: Sequence[Sequence[int]], *, batch_size: int,
                 batch_tokens: int | None = None, share_prefix: bool = True) -> list[Batch]:
    """Cut each group of item indices into batches.

    items: token ids per item; groups: item indices that share a prefix.
    batch_size: at most this many rows; batch_tokens: at most rows x longest row tokens (a single row
    over the budget still runs alone).
    """
    batches = []
    for group in groups:
        order = sorted(group, key=lambda k: (len(items[k]), k))
        shared = 0
        if share_prefix and len(order) > 1:
            # keep at least one token per row after the prefix: its logits are what we read
            shared = min(common_prefix_len([items[k] for k in order]), len(items[order[0]]) - 1)
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and end - start < batch_size and (
                batch_tokens is None or (end - start + 1) * len(items[order[end]]) <= batch_tokens
            ):
                end += 1
            batches.append(Batch(rows=order[start:end], shared=shared))
            start = end
    return batches
