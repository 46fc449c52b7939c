"""One SelectIT level alone: the sentence-level score of the first model (P prompts, no model level),
``--method sentence``."""

from __future__ import annotations

import numpy as np

from selectit.methods.selectit import SelectIT
from selectit.results import ModelRun


class Sentence(SelectIT):
    name = "sentence"
    summary = "sentence-level score of the first model (P prompts, no model level)"
    cite = "the paper's ablation of the levels"

    def final(self, runs: list[ModelRun], weights: np.ndarray, full: np.ndarray) -> np.ndarray:
        return runs[0].sentence
