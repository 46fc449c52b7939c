"""Uniform random scores, seeded (``--method random --seed N``): the baseline to beat.

numpy's PCG64 stream from the seed, one draw per record in input order; a chunk starting at position
``offset`` advances the generator by ``offset`` draws, so chunked and whole-file scores are the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from selectit.config import RunConfig
from selectit.measures import Measure
from selectit.methods.base import ChunkData, Method, plain_scores
from selectit.results import Scores


def random_scores(seed: int, offset: int, n: int) -> np.ndarray:
    """Draws offset .. offset + n - 1 of ``np.random.default_rng(seed).random`` (one 64-bit step each)."""
    rng = np.random.default_rng(seed)
    rng.bit_generator.advance(offset)
    return rng.random(n)


class Random(Method):
    name = "random"
    summary = "uniform random, seeded by --seed"
    cite = "the baseline to beat"
    models = "none"

    def needs(self, config: RunConfig, prompts: Sequence[str]) -> list[Measure]:
        return []

    def score(self, data: ChunkData) -> Scores:
        return plain_scores(data, random_scores(data.config.method.seed, data.offset, len(data.records)))
