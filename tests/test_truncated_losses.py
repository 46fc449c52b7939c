"""Issue 29: the likelihood term of a record cut by --max-length, on the tiny model, against values worked
out here from the backend's own response losses: the losses read the same response prefix in both
contexts, the information term counts the characters read, and an instruction that fills the max length
still leaves the response a share of it."""

import json

import numpy as np
import pytest

from conftest import score_file
from selectit.backends.hf import HFBackend
from selectit.formats import from_dicts
from selectit.measures.losses import blank_context, instruction_context
from selectit.measures.reading import RESPONSE_SHARE, cut_context
from selectit.reflection import INFORMATION_CHARS
from selectit.rundir import read_run

L = 300  # --max-length: room for the rating prompts, not for the long records below


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    records = [
        {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well, sleep, exercise."},
        {"instruction": "Describe the fox.", "input": "",
         "output": " ".join(f"The quick brown fox {i} jumps over the lazy dog." for i in range(60))},
        {"instruction": "What is the capital of France? " * 100, "input": "", "output": "Paris is the capital."},
    ]
    tmp = tmp_path_factory.mktemp("cut")
    data = tmp / "data.json"
    data.write_text(json.dumps(records))
    score_file(data, tmp / "run", models=(str(tiny_model_dir),), num_prompts=2, max_length=L, batch_size=2)
    backend = HFBackend.load(str(tiny_model_dir), template="plain", max_length=L)
    return from_dicts(records), read_run(tmp / "run")[1], backend


def _losses(backend, pairs, end):
    return backend.response_losses(pairs, L, end=end)


def _fits(backend, context, response):
    return len(backend.encode_plain(context + response)) <= L


def test_a_record_read_whole_keeps_its_losses_and_full_length(runs):
    recs, rows, backend = runs
    r, row = recs[0], rows[0]
    name = next(iter(row["likelihood_chars"]))
    given = _losses(backend, [(instruction_context(r), r.response)], True)[0]
    blank = _losses(backend, [(blank_context(r), r.response)], True)[0]
    assert row["likelihood_chars"][name] == len(r.response)
    assert row["response_loss"][name] == pytest.approx(given, rel=1e-6)
    assert row["blank_loss"][name] == pytest.approx(blank, rel=1e-6)
    assert row["likelihood"][name] == pytest.approx((blank - given) * len(r.response) / INFORMATION_CHARS, rel=1e-6)


def test_a_cut_response_counts_only_the_characters_read_in_both_losses(runs):
    recs, rows, backend = runs
    r, row = recs[1], rows[1]
    name = next(iter(row["likelihood_chars"]))
    k = row["likelihood_chars"][name]
    context = instruction_context(r)
    assert 0 < k < len(r.response) // 2  # cut: the answer is ~2,900 characters, L tokens hold far fewer
    assert _fits(backend, context, r.response[:k]) and not _fits(backend, context, r.response[: k + 1])
    given = _losses(backend, [(context, r.response[:k])], False)[0]  # no end token: the answer goes on
    blank = _losses(backend, [(blank_context(r), r.response[:k])], False)[0]  # the same prefix, not more
    assert row["response_loss"][name] == pytest.approx(given, rel=1e-6)
    assert row["blank_loss"][name] == pytest.approx(blank, rel=1e-6)
    assert row["likelihood"][name] == pytest.approx((blank - given) * k / INFORMATION_CHARS, rel=1e-6)


def test_an_instruction_that_fills_max_length_still_leaves_the_response_a_share(runs):
    recs, rows, backend = runs
    r, row = recs[2], rows[2]
    name = next(iter(row["likelihood_chars"]))
    assert len(backend.encode_plain(instruction_context(r))) > L  # before: no response token, score null
    assert row["score"] is not None and row["likelihood_chars"][name] == len(r.response)
    blank = blank_context(r)
    tokens = len(backend.encode_plain(blank + r.response)) - len(backend.encode_plain(blank))
    assert tokens < L * RESPONSE_SHARE  # so all of it is the share the response keeps
    lo, hi = 0, len(r.instruction)  # the instruction cut from its end to make room (bisection, as documented)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if _fits(backend, cut_context(r, mid), r.response) else (lo, mid - 1)
    chars = lo
    assert 0 < chars < len(r.instruction) and not _fits(backend, cut_context(r, chars + 1), r.response)
    given = _losses(backend, [(cut_context(r, chars), r.response)], False)[0]
    blank_loss = _losses(backend, [(blank, r.response)], False)[0]  # no end token: the record was cut
    assert row["response_loss"][name] == pytest.approx(given, rel=1e-6)
    assert row["blank_loss"][name] == pytest.approx(blank_loss, rel=1e-6)


def test_the_summary_names_why_a_record_got_no_score(alpaca_records):
    """Before: every unscored record was put down to "zero label mass", whatever the reason."""
    import selectit
    from selectit.backends.fake import FakeBackend
    from selectit.methods import SelectIT
    from selectit.rundir import Totals

    scores = selectit.score(alpaca_records[:3], backends=[FakeBackend()])
    run = scores.runs[0]
    run.likelihood[0], scores.final[0] = np.nan, np.nan  # no response token was scored
    run.label_mass[1], scores.final[1] = 0.0, np.nan  # no probability on the rating labels
    totals = Totals()
    totals.add(scores)
    assert totals.unscored_why == {"no response token fits in --max-length for the likelihood term": 1,
                                   "zero label mass": 1}
    note = SelectIT().unscored_note(totals.unscored, totals.unscored_why)
    assert note == ("warning: 2 record(s) got no score (1: no response token fits in --max-length for the "
                    "likelihood term; 1: zero label mass); they are never selected")


def test_the_default_max_length_is_4096_tokens_and_the_flag_reads_more(tmp_path):
    """Issue 29.3: before, the default was the model's whole context (8,192 tokens for SmolLM2, 1 << 20 on
    the fake backend), so one multi-megabyte record cost minutes of 8k-token passes. The fake backend's
    tokens are bytes: a 5,000-byte answer is over the default and within --max-length 8192."""
    from selectit.config import MAX_LENGTH, MeasureSpec

    assert MeasureSpec().max_length == MAX_LENGTH == 4096
    records = [{"instruction": "Describe the fox.", "input": "", "output": "The quick brown fox jumps. " * 185},
               {"instruction": "Name a colour.", "input": "", "output": "Blue."}]
    data = tmp_path / "data.json"
    data.write_text(json.dumps(records))
    for flags, cut in [({}, True), ({"max_length": 8192}, False)]:
        out = tmp_path / f"run{len(flags)}"
        score_file(data, out, backend="fake", num_prompts=2, **flags)
        rows = read_run(out)[1]
        assert [row["truncated"]["fake"] for row in rows] == [cut, False]
        read = rows[0]["likelihood_chars"]["fake"]  # the answer's bytes the likelihood term counted
        assert read < MAX_LENGTH if cut else read == len(records[0]["output"])
