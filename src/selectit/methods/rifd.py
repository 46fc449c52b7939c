"""Reversed IFD (``--method rifd``; Li et al., "Selective Reflection-Tuning: Student-Selected Data Recycling
for LLM Instruction-Tuning", Findings of ACL 2024).

r-IFD = loss(instruction | response) / loss(instruction alone), mean token losses of the scoring model:
how much the response helps predict the instruction that produced it. The instruction is predicted
after their selection code's prompt (the Alpaca prompt asking to guess the instruction of the shown
response; selectit.measures.losses.REVERSED). A low r-IFD (the response pins its instruction down) is
what their selection keeps, and they keep only r-IFD < 1: here the score is -r-IFD (the lowest first)
and records with r-IFD >= 1 (or undefined) get no score. As for ``ifd``, losses are mean token losses
(nats), so the ratio is of losses, not of perplexities (the order of records differs; the < 1 cut does not).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from selectit.config import RunConfig
from selectit.measures import Losses, Measure
from selectit.measures.losses import INSTRUCTION_ALONE, REVERSED
from selectit.methods.base import ChunkData, Method, plain_scores
from selectit.results import Scores

GIVEN_RESPONSE, ALONE = Losses(REVERSED), Losses(INSTRUCTION_ALONE)


class RIFD(Method):
    name = "rifd"
    summary = "minus r-IFD = loss(instruction | response) / loss(instruction alone); r-IFD >= 1 dropped"
    cite = 'Li et al., "Selective Reflection-Tuning", ACL Findings 2024'
    models = "one"

    def needs(self, config: RunConfig, prompts: Sequence[str]) -> list[Measure]:
        return [GIVEN_RESPONSE, ALONE]

    def score(self, data: ChunkData) -> Scores:
        values = data.models[0].values
        given, alone = values[GIVEN_RESPONSE], values[ALONE]
        with np.errstate(divide="ignore", invalid="ignore"):
            rifd = given / alone  # (n,)
        final = np.where(rifd < 1, -rifd, np.nan)  # r-IFD >= 1 (or undefined) is dropped, as Li et al. do
        return plain_scores(data, final, {"loss_reversed": given, "loss_instruction": alone, "rifd": rifd})

    def unscored_note(self, count: int, why=None) -> str:
        return (f"note: {count} record(s) have r-IFD >= 1 (or no instruction token) and are never selected, "
                "as in Li et al. (2024)")
