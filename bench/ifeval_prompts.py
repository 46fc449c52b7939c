"""Held-out instructions with verifiable constraints (IFEval style, Zhou et al. 2023), built from the 175
human-written Alpaca seed tasks, and their checks, for ``bench/finetune_eval.py`` (issue 19).

How a prompt is built (deterministic given ``seed``):
1. The seed tasks are shuffled with ``random.Random(seed)`` and the first ``n`` are taken (n <= 175).
2. The i-th of them gets constraint kind ``KINDS[i % len(KINDS)]`` (so every kind has n / 8 prompts,
   +-1) with its parameters drawn from the same generator (``KINDS`` says which).
3. The constraint's sentence, written by the IFEval checker itself (``build_description``), is appended
   to the task's instruction after a space; the task's first instance's input, if any, stays the input.
   The reference output is not used.
An answer is checked by the IFEval checker of the Apache-2.0 ``if-verifiable`` package (a copy of
Google's IFEval code): **strict** checks the answer as it is, **loose** also accepts it after removing
its first and/or last line or its markdown asterisks (IFEval's definition). One constraint per prompt,
so prompt-level and instruction-level accuracy are the same number.

Kinds (IFEval instruction id; parameters):
- ``words_less_than`` (length_constraints:number_words): "less than" N words, N in {20, 30, 40};
- ``words_at_least`` (same): "at least" N words, N in {30, 50}: reachable within 128 new tokens;
- ``bullets`` (detectable_format:number_bullet_lists): exactly N markdown bullets, N in {2, 3, 4};
- ``keyword`` (keywords:existence): one word from IFEval's own word list, unrelated to the task;
- ``uppercase`` / ``lowercase`` (change_case:english_capital / english_lowercase): English, all capitals /
  no capitals (language detected by langdetect, seeded here so it is deterministic);
- ``json`` (detectable_format:json_format): the whole answer is JSON (markdown fences allowed);
- ``end_phrase`` (startend:end_checker): ends with one of IFEval's two end phrases.
Sentence counts are left out: IFEval's sentence splitter needs NLTK's punkt data, a download.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

END_PHRASES = ("Any other questions?", "Is there anything else I can help with?")  # IFEval's _ENDING_OPTIONS


def _keyword(rng: random.Random) -> dict:
    from if_verifiable.ifeval.instructions_util import WORD_LIST

    return {"keywords": [rng.choice(WORD_LIST)]}


# kind -> (IFEval instruction id, parameters drawn from the generator)
KINDS = {
    "words_less_than": ("length_constraints:number_words",
                        lambda rng: {"relation": "less than", "num_words": rng.choice((20, 30, 40))}),
    "words_at_least": ("length_constraints:number_words",
                       lambda rng: {"relation": "at least", "num_words": rng.choice((30, 50))}),
    "bullets": ("detectable_format:number_bullet_lists", lambda rng: {"num_bullets": rng.choice((2, 3, 4))}),
    "keyword": ("keywords:existence", _keyword),
    "uppercase": ("change_case:english_capital", lambda rng: {}),
    "lowercase": ("change_case:english_lowercase", lambda rng: {}),
    "json": ("detectable_format:json_format", lambda rng: {}),
    "end_phrase": ("startend:end_checker", lambda rng: {"end_phrase": rng.choice(END_PHRASES)}),
}


@dataclass(frozen=True)
class ConstraintPrompt:
    """One held-out prompt: the seed task's instruction with the constraint sentence appended, its input,
    and what the checker needs (IFEval instruction id and its parameters)."""

    key: int
    task_id: str
    kind: str
    instruction: str
    input: str
    instruction_id: str
    kwargs: dict = field(hash=False)


def read_seed_tasks(path: Path) -> list[dict]:
    """The seed tasks: {"id", "instruction", "input"} (first instance's input, "" when none)."""
    tasks = []
    for line in path.read_text(encoding="utf-8").splitlines():
        t = json.loads(line)
        tasks.append({"id": t["id"], "instruction": t["instruction"], "input": t["instances"][0].get("input", "")})
    return tasks


def describe(instruction_id: str, kwargs: dict) -> str:
    """The constraint's sentence, in IFEval's own words (e.g. "Answer with less than 20 words.")."""
    _setup()
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

    return INSTRUCTION_DICT[instruction_id](instruction_id).build_description(**kwargs)


def build_prompts(tasks: list[dict], n: int, seed: int = 0) -> list[ConstraintPrompt]:
    """``n`` constraint prompts from ``tasks`` (see the module docstring for the rule). Raises
    ValueError when ``n`` is not in [1, len(tasks)]."""
    if not 1 <= n <= len(tasks):
        raise ValueError(f"n must be in [1, {len(tasks)}] (one prompt per seed task), got {n}")
    rng = random.Random(seed)
    order = list(range(len(tasks)))
    rng.shuffle(order)
    kinds = list(KINDS)
    prompts = []
    for key, t in enumerate(order[:n]):
        kind = kinds[key % len(kinds)]
        instruction_id, params = KINDS[kind]
        kwargs = params(rng)
        text = f"{tasks[t]['instruction'].strip()} {describe(instruction_id, kwargs)}"
        prompts.append(ConstraintPrompt(key, str(tasks[t]["id"]), kind, text, tasks[t]["input"],
                                        instruction_id, kwargs))
    return prompts


def check(prompt: ConstraintPrompt, answer: str) -> tuple[bool, bool]:
    """(strict, loose): whether ``answer`` follows the prompt's constraint (IFEval's definitions, through
    ``if_verifiable``; an empty answer fails both)."""
    from if_verifiable import IFEvalSample, evaluate_output_for_sample

    _setup()
    sample = IFEvalSample(key=prompt.key, prompt=f"{prompt.instruction}\n{prompt.input}".strip(),
                          instruction_id_list=[prompt.instruction_id], kwargs=[prompt.kwargs])
    _, scores = evaluate_output_for_sample("ifeval", sample, answer)
    return scores.binary_strict == 1.0, scores.binary_loose == 1.0


def accuracy(prompts: list[ConstraintPrompt], answers: list[str]) -> dict:
    """Strict and loose accuracy over all prompts and per kind: {"strict", "loose", "per_kind":
    {kind: {"strict", "loose", "n"}}}; accuracies in [0, 1]."""
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    results = [check(p, a) for p, a in zip(prompts, answers)]
    per_kind = {}
    for kind in KINDS:
        mine = [r for p, r in zip(prompts, results) if p.kind == kind]
        if mine:
            per_kind[kind] = {"strict": sum(s for s, _ in mine) / len(mine),
                              "loose": sum(l for _, l in mine) / len(mine), "n": len(mine)}
    n = max(len(results), 1)
    return {"strict": sum(s for s, _ in results) / n, "loose": sum(l for _, l in results) / n, "per_kind": per_kind}


def _setup() -> None:
    """langdetect (used by the case checkers) gives random answers on borderline text unless seeded."""
    import langdetect

    langdetect.DetectorFactory.seed = 0
