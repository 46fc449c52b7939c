"""bench/ifeval_prompts.py: constraint prompts built from the seed tasks, and the IFEval checkers (from
``if-verifiable``) on hand-made answers: one that follows and one that breaks each constraint kind."""

import importlib.util
import json
import sys

import pytest

from conftest import ROOT

pytest.importorskip("if_verifiable", reason="needs the bench extra: pip install -e .[bench]")


def load():
    spec = importlib.util.spec_from_file_location("ifeval_prompts", ROOT / "bench" / "ifeval_prompts.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ifeval_prompts"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


ip = load()

TASKS = [{"id": f"seed_task_{i}", "instruction": f"Describe thing number {i}.", "input": "in" if i % 2 else ""}
         for i in range(20)]


def prompt(kind: str, **kwargs):
    instruction_id = ip.KINDS[kind][0]
    return ip.ConstraintPrompt(0, "t", kind, "Describe a cat. " + ip.describe(instruction_id, kwargs), "",
                               instruction_id, kwargs)


PARAGRAPH = "The cat is a small domesticated carnivorous mammal that people keep as a pet in many homes."
# kind -> (parameters, an answer that follows, an answer that breaks the constraint)
CASES = {
    "words_less_than": ({"relation": "less than", "num_words": 20}, "A cat is a small furry pet.", PARAGRAPH * 2),
    "words_at_least": ({"relation": "at least", "num_words": 30}, PARAGRAPH * 2, "A cat is a small furry pet."),
    "bullets": ({"num_bullets": 3}, "* small\n* furry\n* independent", "* small\n* furry"),
    "keyword": ({"keywords": ["whisker"]}, "A cat has long whiskers.", "A cat is a small furry pet."),
    "uppercase": ({}, "THE CAT IS A SMALL FURRY PET THAT LIVES WITH PEOPLE.", "The cat is a small furry pet."),
    "lowercase": ({}, "the cat is a small furry pet that lives with people.", "The cat is a small furry pet."),
    "json": ({}, '```json\n{"animal": "cat", "size": "small"}\n```', "animal: cat, size: small"),
    "end_phrase": ({"end_phrase": "Any other questions?"}, "A cat is a small pet. Any other questions?",
                   "Any other questions? A cat is a small pet."),
}


def test_every_kind_has_a_case():
    assert set(CASES) == set(ip.KINDS)


@pytest.mark.parametrize("kind", list(CASES))
def test_checker_passes_an_answer_that_follows_and_fails_one_that_breaks(kind):
    kwargs, good, bad = CASES[kind]
    p = prompt(kind, **kwargs)
    assert ip.check(p, good) == (True, True)
    assert ip.check(p, bad) == (False, False)


def test_loose_accepts_what_strict_rejects():
    """IFEval's loose check also tries the answer without its first line and without asterisks."""
    p = prompt("end_phrase", end_phrase="Any other questions?")
    assert ip.check(p, "A cat is a pet. **Any other questions?**") == (False, True)
    p = prompt("json")
    assert ip.check(p, 'Here is the JSON:\n{"animal": "cat"}') == (False, True)


def test_empty_answer_fails():
    assert ip.check(prompt("lowercase"), "") == (False, False)


def test_prompts_are_deterministic_balanced_and_built_from_the_tasks():
    a = ip.build_prompts(TASKS, 16, seed=0)
    assert a == ip.build_prompts(TASKS, 16, seed=0)
    assert a != ip.build_prompts(TASKS, 16, seed=1)
    assert [p.key for p in a] == list(range(16))
    assert len({p.task_id for p in a}) == 16  # one prompt per task, no repeats
    kinds = [p.kind for p in a]
    assert all(kinds.count(k) == 2 for k in ip.KINDS)  # 16 prompts, 8 kinds
    by_id = {t["id"]: t for t in TASKS}
    for p in a:
        task = by_id[p.task_id]
        sentence = ip.describe(p.instruction_id, p.kwargs)
        assert p.instruction == f"{task['instruction']} {sentence}" and p.input == task["input"]


def test_prompt_parameters_stay_in_their_stated_ranges():
    for p in ip.build_prompts(TASKS, 20, seed=3):
        if p.kind == "words_less_than":
            assert p.kwargs == {"relation": "less than", "num_words": p.kwargs["num_words"]}
            assert p.kwargs["num_words"] in (20, 30, 40)
        elif p.kind == "words_at_least":
            assert p.kwargs["num_words"] in (30, 50)
        elif p.kind == "bullets":
            assert p.kwargs["num_bullets"] in (2, 3, 4)
        elif p.kind == "keyword":
            assert len(p.kwargs["keywords"]) == 1
        elif p.kind == "end_phrase":
            assert p.kwargs["end_phrase"] in ip.END_PHRASES


def test_n_out_of_range_is_an_error():
    with pytest.raises(ValueError, match=r"n must be in \[1, 20\]"):
        ip.build_prompts(TASKS, 21)
    with pytest.raises(ValueError, match="got 0"):
        ip.build_prompts(TASKS, 0)


def test_accuracy_counts_strict_and_loose_per_kind():
    ps = [prompt("lowercase"), prompt("keyword", keywords=["whisker"])]
    ps = [ip.ConstraintPrompt(i, p.task_id, p.kind, p.instruction, p.input, p.instruction_id, p.kwargs)
          for i, p in enumerate(ps)]
    acc = ip.accuracy(ps, ["the cat is a small furry pet that lives with people.", "**No."])
    assert acc["strict"] == 0.5 and acc["loose"] == 0.5
    assert acc["per_kind"]["lowercase"] == {"strict": 1.0, "loose": 1.0, "n": 1}
    assert acc["per_kind"]["keyword"] == {"strict": 0.0, "loose": 0.0, "n": 1}
    with pytest.raises(ValueError, match="2 prompts but 1 answers"):
        ip.accuracy(ps, ["x"])


def test_the_real_seed_tasks_give_175_prompts():
    path = ROOT.parent / "shared" / "data" / "alpaca_seed_tasks.jsonl"
    if not path.is_file():
        pytest.skip("../shared/data is not here")
    tasks = ip.read_seed_tasks(path)
    assert len(tasks) == 175 and tasks[0]["id"] == json.loads(path.read_text().splitlines()[0])["id"]
    prompts = ip.build_prompts(tasks, 175, seed=0)
    assert len({p.task_id for p in prompts}) == 175
