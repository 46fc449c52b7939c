"""Minus the mean token loss of the response given the instruction (``--method perplexity``): the
lowest perplexity ranks first. Perplexity filters are used both ways in the literature: low perplexity
as a fluency/quality filter (CCNet, Wenzek et al. 2020), high perplexity as "hard" examples; we keep the
low end, the quality-filter convention (the ``loss`` and ``perplexity`` columns are written too). The
instruction is given in the Alpaca prompt format (selectit.measures.losses)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from selectit.config import RunConfig
from selectit.measures import Losses, Measure
from selectit.measures.losses import CONDITIONED
from selectit.methods.base import ChunkData, Method, plain_scores
from selectit.results import Scores

GIVEN = Losses(CONDITIONED)


class Perplexity(Method):
    name = "perplexity"
    summary = "minus the mean token loss of the response given the instruction (lowest perplexity first)"
    cite = "Wenzek et al. 2020"
    models = "one"

    def needs(self, config: RunConfig, prompts: Sequence[str]) -> list[Measure]:
        return [GIVEN]

    def score(self, data: ChunkData) -> Scores:
        loss = data.models[0].values[GIVEN]
        return plain_scores(data, -loss, {"loss": loss, "perplexity": np.exp(loss)})
