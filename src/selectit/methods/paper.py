"""The published method (Liu et al., NeurIPS 2024), exactly: ``--method paper``, or ``--paper``.

The plain published template, the paper's argmax-and-margin token score, equal prompt weights, no
calibration and no likelihood term. The rating prompts stay the packaged ones unless ``--prompts``
gives the authors' file.
"""

from __future__ import annotations

from selectit.config import PUBLISHED_NUM_PROMPTS
from selectit.methods.selectit import SelectIT

# What the published method fixes; a flag typed against it is an error (selectit.config.build).
PAPER = {"template": "plain", "rating": "argmax", "calibrate": False, "prompt_weights": "equal",
         "likelihood_weight": 0.0}


class Paper(SelectIT):
    name = "paper"
    summary = "the published method: plain template, argmax token score, no likelihood term"
    cite = "Liu et al., NeurIPS 2024"
    preset = PAPER
    exact = True
    num_prompts = PUBLISHED_NUM_PROMPTS
