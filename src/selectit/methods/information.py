"""The information term alone, no rating (``--method information``): what the instruction tells the model
about the response, in nats per reflection.INFORMATION_CHARS characters of response
(reflection.information_scores), combined over models by parameter count (or ``--model-weights``).

The same losses as SelectIT's default likelihood term, so ``selectit rescore DIR --method information``
on a default run needs no model. scores.jsonl gets an ``information`` column {model: float}, and the end
token's loss after the response, ``end_loss`` (what ``select --drop-junk`` reads).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from selectit import reflection
from selectit.config import RunConfig
from selectit.measures import Measure
from selectit.methods.base import RATING_COLUMNS, ChunkData, Method, model_run, plain_scores
from selectit.methods.selectit import LIKELIHOOD, READ, STOPPING, likelihood_term
from selectit.results import MODEL, Column, Figure, Schema, Scores

SCHEMA = Schema((*RATING_COLUMNS.columns, Column("information", MODEL), Column("end_loss", MODEL)),
                (Figure("weight", lambda s, m: float(s.weights[m]), "first"),),
                lambda s, i: "no response token fits in --max-length")


class Information(Method):
    name = "information"
    summary = "the information term alone: what the instruction tells the model about the response (no rating)"
    cite = "the likelihood term of our default, without the ratings"

    def needs(self, config: RunConfig, prompts: Sequence[str]) -> list[Measure]:
        return [*LIKELIHOOD, READ, STOPPING]

    def score(self, data: ChunkData) -> Scores:
        runs = [model_run(m.info, {"information": likelihood_term(tuple(m.values[k] for k in LIKELIHOOD),
                                                                  m.values[READ], "information"),
                                   "end_loss": m.values[STOPPING]})
                for m in data.models]
        given = data.config.method.model_weights
        weights = reflection.model_weights(given if given is not None else [r.num_parameters for r in runs])
        final = reflection.model_scores(np.stack([r.information for r in runs], axis=1), weights)  # (n,)
        return plain_scores(data, final, runs=runs, weights=weights, schema=SCHEMA)
