"""One SelectIT level alone: the model-level combination (parameter-count weights) of each model's
first-prompt token score (``--method model``: models, no sentence level). With one model it equals
``token``."""

from __future__ import annotations

import numpy as np

from selectit import reflection
from selectit.methods.selectit import SelectIT
from selectit.results import ModelRun


class Model(SelectIT):
    name = "model"
    summary = "parameter-weighted mean over models of the first-prompt token score (no sentence level)"
    cite = "the paper's ablation of the levels"

    def final(self, runs: list[ModelRun], weights: np.ndarray, full: np.ndarray) -> np.ndarray:
        first = np.stack([r.token[:, 0] for r in runs], axis=1)  # (n, M)
        return reflection.model_scores(first, weights)
