"""Instruction-Following Difficulty (``--method ifd``; Li et al., "From Quantity to Quality: Boosting LLM
Performance with Self-Guided Data Selection for Instruction Tuning", NAACL 2024).

IFD = loss(response | instruction) / loss(response alone), mean token losses of the scoring model: high
IFD (the instruction helps little) ranks first. As the authors do, records with IFD > 1 (the instruction
makes the response *less* likely) are dropped: their score is null, never selected. The instruction is
given in the Alpaca prompt format their code uses; a record's Alpaca ``input`` fills "### Input:".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from selectit.config import RunConfig
from selectit.measures import Losses, Measure
from selectit.measures.losses import ALONE, CONDITIONED
from selectit.methods.base import ChunkData, Method, plain_scores
from selectit.results import Scores

GIVEN, ALONE_LOSS = Losses(CONDITIONED), Losses(ALONE)


class IFD(Method):
    name = "ifd"
    summary = "IFD = loss(response | instruction) / loss(response alone); IFD > 1 dropped"
    cite = 'Li et al., "From Quantity to Quality", NAACL 2024'
    models = "one"

    def needs(self, config: RunConfig, prompts: Sequence[str]) -> list[Measure]:
        return [GIVEN, ALONE_LOSS]

    def score(self, data: ChunkData) -> Scores:
        values = data.models[0].values
        given, alone = values[GIVEN], values[ALONE_LOSS]
        with np.errstate(divide="ignore", invalid="ignore"):
            ifd = given / alone  # (n,)
        final = np.where(ifd <= 1, ifd, np.nan)  # IFD > 1 (or undefined) is dropped, as Li et al. do
        return plain_scores(data, final, {"loss": given, "loss_alone": alone, "ifd": ifd})

    def unscored_note(self, count: int, why=None) -> str:
        return (f"note: {count} record(s) have IFD > 1 (or no response token) and are never selected, "
                "as in Li et al. (2024)")
