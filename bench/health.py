"""Generation health: what a fine-tune on junk teaches a model to write (issue 26).

A greedy answer is unhealthy when it is one of (checked in this order, an answer can be several):
- ``empty``: nothing but white space;
- ``short``: fewer than ``MIN_WORDS`` words (an empty answer is short too);
- ``repeats``: some run of ``NGRAM`` words occurs ``REPEATS`` or more times, or one non-empty line
  occurs twice or more (a model looping on itself);
- ``mojibake``: UTF-8 read as cp1252/latin-1 (``Â``, ``â€``, ``Ã`` followed by a continuation
  character) or a control character other than tab, line feed and carriage return;
- ``template``: an artifact of scraped data (``<No Output>``, ``<noinput>``, an answer that is only a
  URL, "Here is the picture").
Pure functions on strings; the shares are over the answers given.
"""

from __future__ import annotations

import re
from collections import Counter

MIN_WORDS = 5
NGRAM, REPEATS = 4, 3
CHECKS = ("empty", "short", "repeats", "mojibake", "template")
MOJIBAKE = re.compile(r"[ÂÃ][\u0080-\u00bf]|â€|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
TEMPLATE = re.compile(r"<\s*no\s*_?(output|input)\s*>|here is the picture|see the attached (image|picture)|"
                      r"^\s*https?://\S+\s*$", re.I)


def repeats(answer: str) -> bool:
    words = answer.lower().split()
    grams = Counter(tuple(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1))
    lines = Counter(line.strip() for line in answer.splitlines() if line.strip())
    return (bool(grams) and max(grams.values()) >= REPEATS) or (bool(lines) and max(lines.values()) >= 2)


def problems(answer: str) -> set[str]:
    """The checks (``CHECKS``) the answer fails."""
    found = set()
    if not answer.strip():
        found.add("empty")
    if len(answer.split()) < MIN_WORDS:
        found.add("short")
    if repeats(answer):
        found.add("repeats")
    if MOJIBAKE.search(answer):
        found.add("mojibake")
    if TEMPLATE.search(answer):
        found.add("template")
    return found


def shares(answers: list[str]) -> dict[str, float]:
    """The share of answers failing each check, and ``unhealthy``: the share failing any."""
    if not answers:
        raise ValueError("no answers to check")
    found = [problems(a) for a in answers]
    out = {c: sum(c in f for f in found) / len(answers) for c in CHECKS}
    out["unhealthy"] = sum(bool(f) for f in found) / len(answers)
    return out
