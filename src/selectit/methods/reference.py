"""The authors' published scripts (github.com/Blue-Raincoat/SelectIT), not the paper: ``--method reference``.

The published method (selectit.methods.paper) with the authors' scripts' two differences from the paper: each label
distribution is renormalised with softmax(p / sum p) instead of p / sum p, and the model-level weights
are their hard-coded 7/20, 13/20, 70/90 (three models only; one model gets weight 1). Useful to
reproduce the published Selective Alpaca.
"""

from __future__ import annotations

import numpy as np

from selectit import reflection
from selectit.config import PUBLISHED_NUM_PROMPTS, RunConfig
from selectit.errors import ConfigError
from selectit.methods.paper import PAPER
from selectit.methods.selectit import SelectIT
from selectit.results import ModelRun


class Reference(SelectIT):
    name = "reference"
    summary = "the authors' scripts: the published method with softmax renormalisation and their model weights"
    cite = "github.com/Blue-Raincoat/SelectIT"
    preset = PAPER
    exact = True
    num_prompts = PUBLISHED_NUM_PROMPTS
    normalisation = "reference"

    def weights(self, runs: list[ModelRun], config: RunConfig) -> np.ndarray:
        if config.method.model_weights is not None:
            return reflection.model_weights(config.method.model_weights)
        try:
            return reflection.reference_model_weights(len(runs))
        except ValueError as e:
            raise ConfigError(str(e)) from None
