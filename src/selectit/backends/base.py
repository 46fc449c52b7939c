"""The backend interface."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Backend(Protocol):
    """What the scorer needs from a model.

    name: shown in outputs (scores.jsonl keys by it).
    num_parameters: the model's parameter count, for the model-level weights.
    max_length: the longest prompt (in tokens) the model accepts.
    fingerprint: what determines the model's outputs (identity, dtype, template); keys the score store.
    """

    name: str
    num_parameters: int
    max_length: int
    fingerprint: dict

    def encode(self, text: str, suffix: str = "") -> list[int]:
        """Token ids of the rating ``text`` as the model reads it (template applied, BOS as the
        tokenizer adds it), with ``suffix`` appended after the template (used to resolve labels)."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids."""
        ...

    def label_probs(self, batch: Sequence[Sequence[int]], label_ids: Sequence[int], shared: int = 0) -> np.ndarray:
        """Next-token probabilities of ``label_ids`` after each prompt (full softmax over the
        vocabulary, not renormalised). batch: n token-id lists, all starting with the same ``shared``
        tokens (a hint a backend may use to compute them once). Returns (n, S) float64.
        Raises MemoryError when the batch does not fit; the caller splits it and retries."""
        ...
