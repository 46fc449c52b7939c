"""Damaged copies of real instruction records, for the discrimination benchmark (issue 8).

Each damage kind turns a good (instruction, response) pair into one a careful reviewer would rate
lower. Everything is seeded; each function is pure given its ``random.Random``.

Kinds (the damaged copy keeps the original's id with a suffix):

- ``swap``: the response of another record (a different task).
- ``truncate``: the response cut to its first 15% of words (at least one word, always shorter).
- ``shuffle``: the response's words in random order.
- ``wrong_language``: the instruction asks for the answer in French, German or Spanish; the
  (English) response is unchanged, so it is in the wrong language.
- ``ignore_constraint``: a constraint the response breaks is added to the instruction: a word limit
  below the response's length, or "all capital letters", or "one sentence" for a multi-sentence answer.
- ``degenerate_repetition``: the response replaced by its own first sentence repeated until it is about
  as long as the original (in words). Repetition is cheap to predict, so a likelihood signal rewards it;
  it is also a common defect of synthetic data (issue 19: on ShareGPT first turns the default scored
  such copies above the originals in 33 of 40 pairs).

The two last kinds change the instruction, not the response: the response is the same text and is
now wrong for what was asked. We have no offline translator, and this is how a wrong-language or
constraint-ignoring answer arises in real data (the answer does not do what the instruction says).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

KINDS = ("swap", "truncate", "shuffle", "wrong_language", "ignore_constraint", "degenerate_repetition")
LANGUAGES = ("French", "German", "Spanish")
MIN_WORDS = 8  # responses shorter than this are not used: truncating or shuffling them says little


def load_originals(alpaca: Path, seed_tasks: Path, n_alpaca: int, n_seed: int, seed: int = 0) -> list[dict]:
    """Real records with a response of at least MIN_WORDS words: a seeded sample of Alpaca
    (text-davinci-003) and of the human-written seed tasks. Each: {"id", "source", "instruction", "response"}."""
    rng = random.Random(seed)
    pool = []
    for i, r in enumerate(json.loads(alpaca.read_text(encoding="utf-8"))):
        instruction = r["instruction"] + (f"\n{r['input']}" if r.get("input") else "")
        pool.append({"id": f"alpaca-{i}", "source": "alpaca", "instruction": instruction, "response": r["output"]})
    seeds = []
    for line in seed_tasks.read_text(encoding="utf-8").splitlines():
        t = json.loads(line)
        inst = t["instances"][0]
        instruction = t["instruction"] + (f"\n{inst['input']}" if inst.get("input") else "")
        seeds.append({"id": t["id"], "source": "seed", "instruction": instruction, "response": inst["output"]})
    keep = lambda r: len(r["response"].split()) >= MIN_WORDS  # noqa: E731
    return rng.sample([r for r in pool if keep(r)], n_alpaca) + rng.sample([r for r in seeds if keep(r)], n_seed)


def truncate(response: str) -> str:
    words = response.split()
    return " ".join(words[: max(1, int(len(words) * 0.15))])


def shuffle(response: str, rng: random.Random) -> str:
    words = response.split()
    for _ in range(10):  # a shuffle that leaves the order unchanged is no damage
        order = rng.sample(words, len(words))
        if order != words:
            return " ".join(order)
    return " ".join(reversed(words))


def wrong_language(instruction: str, rng: random.Random) -> str:
    return f"{instruction}\nWrite the answer in {rng.choice(LANGUAGES)}."


def ignore_constraint(instruction: str, response: str, rng: random.Random) -> str:
    """A constraint the response breaks, added to the instruction."""
    words = len(response.split())
    sentences = len([s for s in re.split(r"(?<=[.!?])\s+", response.strip()) if s])
    options = [f"Answer in at most {max(2, words // 4)} words."]
    if response.upper() != response:
        options.append("Write the whole answer in capital letters.")
    if sentences > 1:
        options.append("Answer in exactly one sentence.")
    return f"{instruction}\n{rng.choice(options)}"


def first_sentence(text: str) -> str:
    """The text up to its first sentence end (. ! ? followed by white space) or first line break;
    the whole text when it has neither."""
    head = re.split(r"(?<=[.!?])\s+|\n", text.strip(), maxsplit=1)[0].strip()
    return head or text.strip()


def degenerate_repetition(response: str) -> str:
    """The response's first sentence repeated (space-separated) until the copy has at least as many words
    as the response, then cut to exactly that many words: same length, no new content. A response that
    is a single sentence gets its first half repeated instead, so a copy of two or more words differs
    from it (uses no randomness: the other kinds' copies stay what they were before this kind)."""
    words = response.split()
    head = first_sentence(response).split()
    if len(head) >= len(words):  # one sentence: repeat its first half (at least one word)
        head = words[: max(1, len(words) // 2)]
    copies = -(-len(words) // len(head))  # ceil: enough copies to reach the original's length
    return " ".join((head * copies)[: len(words)])


def damaged_copies(originals: list[dict], seed: int = 0) -> list[dict]:
    """Every original once per damage kind. Each copy: the original's fields plus {"kind", "of"}."""
    rng = random.Random(seed)
    out = []
    n = len(originals)
    for i, r in enumerate(originals):
        other = originals[(i + 1 + rng.randrange(n - 1)) % n]  # any record but this one
        copies = {
            "swap": (r["instruction"], other["response"]),
            "truncate": (r["instruction"], truncate(r["response"])),
            "shuffle": (r["instruction"], shuffle(r["response"], rng)),
            "wrong_language": (wrong_language(r["instruction"], rng), r["response"]),
            "ignore_constraint": (ignore_constraint(r["instruction"], r["response"], rng), r["response"]),
            "degenerate_repetition": (r["instruction"], degenerate_repetition(r["response"])),
        }
        for kind in KINDS:
            instruction, response = copies[kind]
            out.append({"id": f"{r['id']}/{kind}", "source": r["source"], "instruction": instruction,
                        "response": response, "kind": kind, "of": r["id"]})
    return out
