"""The response's length in characters (``--method length``; Zhao et al., "Long Is More for Alignment",
ICML 2024: the longest responses are a strong baseline). Characters, not tokens, so no model is loaded
and the score does not depend on a tokenizer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from selectit.config import RunConfig
from selectit.measures import Measure
from selectit.methods.base import ChunkData, Method, plain_scores
from selectit.results import Scores


class Length(Method):
    name = "length"
    summary = "response length in characters (tokenizer-independent)"
    cite = 'Zhao et al., "Long Is More for Alignment", ICML 2024'
    models = "none"

    def needs(self, config: RunConfig, prompts: Sequence[str]) -> list[Measure]:
        return []

    def score(self, data: ChunkData) -> Scores:
        length = np.array([len(r.response) for r in data.records], dtype=np.float64)
        return plain_scores(data, length, {"length": length})
