"""bench/damage.py: the degenerate-repetition damage (issue 19) and its place among the kinds."""

import importlib.util
import random
import sys

from conftest import ROOT


def load():
    spec = importlib.util.spec_from_file_location("damage", ROOT / "bench" / "damage.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["damage"] = module
    spec.loader.exec_module(module)
    return module


damage = load()


def test_first_sentence_is_repeated_to_the_original_length():
    response = "Paris is the capital of France. It has about two million people. The Seine runs through it."
    got = damage.degenerate_repetition(response)
    assert got == " ".join(("Paris is the capital of France. " * 3).split()[: len(response.split())])
    assert len(got.split()) == len(response.split()) == 17
    assert got.startswith("Paris is the capital of France. Paris is the capital of France. Paris is")


def test_a_line_break_ends_the_first_sentence():
    response = "Three tips:\n1. Eat well.\n2. Sleep enough.\n3. Exercise daily."
    assert damage.degenerate_repetition(response) == " ".join(["Three tips:"] * 5 + ["Three"])  # 11 words


def test_a_single_sentence_repeats_its_first_half():
    """Repeating a one-sentence answer whole would give it back unchanged: the first half is repeated."""
    response = "The quick brown fox jumps over the lazy dog"
    got = damage.degenerate_repetition(response)
    assert got.split() == ["The", "quick", "brown", "fox"] * 2 + ["The"]
    assert got != response and len(got.split()) == len(response.split())


def test_first_sentence_stops_at_the_first_end_mark():
    assert damage.first_sentence("Yes! It works. Really?") == "Yes!"
    assert damage.first_sentence("  No end mark here  ") == "No end mark here"
    assert damage.first_sentence("3.5 is a number. Two.") == "3.5 is a number."  # no space after the point


def test_copies_include_the_new_kind_and_leave_the_others_unchanged():
    originals = [{"id": f"r{i}", "source": "seed", "instruction": f"Task {i}.",
                  "response": f"Answer {i} has words. Then more words follow here."} for i in range(4)]
    copies = damage.damaged_copies(originals, seed=0)
    assert "degenerate_repetition" in damage.KINDS
    assert len(copies) == len(originals) * len(damage.KINDS)
    rep = [c for c in copies if c["kind"] == "degenerate_repetition"]
    assert [c["of"] for c in rep] == ["r0", "r1", "r2", "r3"]
    assert rep[0]["instruction"] == "Task 0."
    assert rep[0]["response"] == "Answer 0 has words. Answer 0 has words. Answer"  # 9 words, as the original
    # The kind uses no randomness: the other kinds' copies are what they were before it was added.
    rng = random.Random(0)
    other = originals[(0 + 1 + rng.randrange(3)) % 4]
    assert copies[0]["kind"] == "swap" and copies[0]["response"] == other["response"]
