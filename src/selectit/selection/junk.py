"""Junk: records the scoring model and the text itself say are broken (``--drop-junk``, issue 26).

A selection that ranks by score keeps what scores best; on a pool that is partly junk what matters first
is that the junk is left out. Three tests, each with a scale of its own, so a record is junk or not by
what it is, not by how much junk the pool holds:

- **no information**: the information term (selectit.reflection.information_scores: what the
  instruction tells the model about the response, nats per 100 characters) is below
  ``min_information``: an answer to another question, a generic one ("Sure."), a template artifact;
- **cut off**: the loss of the end-of-text token right after the response, given the instruction
  (selectit.measures.losses.END_LOSS), is above ``max_end_loss`` nats: the model would not stop there,
  as where a generation limit cut an answer mid-sentence;
- **broken text**: mojibake (ftfy's badness: UTF-8 read as cp1252 or latin-1) or control characters
  other than tab and line breaks in the response.

The defaults were chosen on development pools the proof never sees (bench/junk_dev.py: 500 Alpaca
records outside every proof pool, contaminated with another seed): information > 0.05 and end loss < 8
keep 95-97% of the clean records and pass 0-5% of the cut answers, 0-9% of the generic and template
answers, 14-18% of the swapped ones, and no mojibake. A NaN measurement (a record cut by --max-length)
is never the reason a record is junk. Wrong facts and wrong numbers are not caught: a small model does
not know them.
"""

from __future__ import annotations

import numpy as np

from selectit.config import JUNK_MAX_END_LOSS as MAX_END_LOSS  # nats: stopping there has probability < e^-8
from selectit.config import JUNK_MIN_INFORMATION as MIN_INFORMATION  # nats per 100 response characters

REASONS = ("no_information", "cut_off", "broken_text")
_CONTROL = {c for c in range(32) if chr(c) not in "\t\n\r"} | {0x7F}


def broken_text(text: str) -> bool:
    """Whether ``text`` has mojibake (ftfy's badness) or a control character other than tab and line breaks."""
    from ftfy.badness import badness

    return any(ord(c) in _CONTROL for c in text) or badness(text) > 0


def junk_reasons(information: np.ndarray, end_loss: np.ndarray, broken: np.ndarray,
                 min_information: float = MIN_INFORMATION, max_end_loss: float = MAX_END_LOSS) -> dict[str, np.ndarray]:
    """Each test's verdict, REASONS -> (n,) bool (a record may fail several).

    information, end_loss: (n,) float, NaN where not measured (never junk for that test); broken: (n,)
    bool, from :func:`broken_text`."""
    info = np.asarray(information, dtype=np.float64)
    end = np.asarray(end_loss, dtype=np.float64)
    bad = np.asarray(broken, dtype=bool)
    if not info.shape == end.shape == bad.shape or info.ndim != 1:
        raise ValueError(f"information, end_loss and broken must all have shape (n,), got {info.shape}, "
                         f"{end.shape}, {bad.shape}")
    with np.errstate(invalid="ignore"):
        return {"no_information": info < min_information, "cut_off": end > max_end_loss, "broken_text": bad}


def junk(reasons: dict[str, np.ndarray]) -> np.ndarray:
    """(n,) bool: failed any test."""
    return np.logical_or.reduce([reasons[r] for r in REASONS])
