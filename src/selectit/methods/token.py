"""One SelectIT level alone: the token-level score under the first rating prompt, first model
(``--method token``): the method with one prompt and one model, as in the paper's ablation of the levels."""

from __future__ import annotations

import numpy as np

from selectit.methods.selectit import SelectIT
from selectit.results import ModelRun


class Token(SelectIT):
    name = "token"
    summary = "token-level score under the first rating prompt, first model"
    cite = "the paper's ablation of the levels"

    def final(self, runs: list[ModelRun], weights: np.ndarray, full: np.ndarray) -> np.ndarray:
        return runs[0].token[:, 0]
