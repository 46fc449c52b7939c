"""`--length-neutral` (issue 26): records rank by score minus the median score of their response-length bin;
the math on hand-made scores, then the step through `selectit select` and its CLI line."""

import json

import numpy as np
import pytest
from conftest import score_file
from typer.testing import CliRunner

from selectit.cli import app
from selectit.config import SelectOptions
from selectit.formats import MemorySource
from selectit.jobs import select_run
from selectit.records import Record
from selectit.selection.length import bin_edges, neutral_scores
from selectit.selection.policy import Policy
from selectit.selection.steps import choose_run


def test_a_score_that_grows_with_length_is_ranked_for_length():
    # 40 short answers (10 chars) score 1.0 + q, 40 long ones (100 chars) 3.0 + q: by score the top 20
    # are all long; by the key, the best of each length.
    q = np.tile(np.linspace(0, 0.39, 40), 2)
    lengths = np.repeat([10.0, 100.0], 40)
    scores = np.repeat([1.0, 3.0], 40) + q
    key, info = neutral_scores(scores, lengths, np.ones(80, bool), bins=2)
    assert info["bins"] == 2 and info["counts"] == [40, 40] and info["edges"] == [55.0]
    assert info["medians"] == pytest.approx([1.195, 3.195])
    np.testing.assert_allclose(key[:40], key[40:])  # the length offset is gone
    top = np.argsort(-key, kind="stable")[:20]
    assert sorted(lengths[top].tolist()).count(10.0) == 10


def test_equal_lengths_share_a_bin_and_a_small_input_keeps_the_score_order():
    lengths = np.array([5, 5, 5, 5, 9, 9, 9, 9], dtype=float)
    edges = bin_edges(lengths, np.ones(8, bool), bins=3, min_per_bin=2)
    where = np.searchsorted(edges, lengths, side="right").tolist()
    assert len(set(where[:4])) == len(set(where[4:])) == 1 and where[0] != where[4]  # one bin for one length
    scores = np.array([3.0, 1.0, 2.0, 5.0, 4.0, 0.0, 7.0, 6.0])
    key, info = neutral_scores(scores, lengths, np.ones(8, bool))  # 8 records < 2 x MIN_PER_BIN: one bin
    assert info["bins"] == 1 and info["edges"] == []
    assert np.argsort(-key, kind="stable").tolist() == np.argsort(-scores, kind="stable").tolist()


def test_unscored_and_excluded_records_set_no_median():
    scores = np.array([1.0, 2.0, np.nan, 100.0, 3.0])
    eligible = np.array([True, True, True, False, True])  # 3: an excluded copy
    key, info = neutral_scores(scores, np.ones(5), eligible, bins=1)
    assert info["medians"] == [2.0] and info["counts"] == [3]
    assert np.isnan(key[2]) and key.tolist()[:2] == [-1.0, 0.0] and key[3] == 98.0
    empty, info = neutral_scores(np.array([np.nan]), np.array([3.0]), np.array([True]))
    assert np.isnan(empty[0]) and info["medians"] == [None]
    with pytest.raises(ValueError, match="shape"):
        neutral_scores(np.zeros(3), np.zeros(2), np.ones(3, bool))


def test_the_step_ranks_after_the_duplicate_steps_and_a_threshold_still_reads_the_score():
    records = [Record(id=i, instruction=f"Task {i}.", response="x" * (10 if i < 40 else 100),
                      raw={"instruction": f"Task {i}.", "output": "x"}) for i in range(80)]
    records.append(Record(id=80, instruction="Task 79.", response="x" * 100, raw={}))  # an exact copy of 79
    scores = np.concatenate([1.0 + np.linspace(0, 0.39, 40), 3.0 + np.linspace(0, 0.39, 40), [9.0]])
    source = MemorySource(records, chunk_size=7)
    plain = choose_run(source, {}, scores, SelectOptions(), ":memory:", Policy(top=20))
    assert all(i >= 40 for i in plain.indices)  # by score: only long answers
    neutral = choose_run(source, {}, scores, SelectOptions(length_neutral=True), ":memory:", Policy(top=20))
    assert sum(i < 40 for i in neutral.indices) == 10 and 80 not in neutral.indices
    assert neutral.info["exact_duplicates"] == 1 and neutral.info["length_neutral"]["bins"] == 4
    over = choose_run(source, {}, scores, SelectOptions(length_neutral=True), ":memory:", Policy(threshold=3.295))
    assert sorted(over.indices.tolist()) == list(range(70, 80))  # the scores >= 3.295 (not the copy); by the key


def test_select_cli_says_what_the_step_did_and_selection_json_keeps_it(tmp_path):
    data = [{"instruction": f"Task {i}: describe thing {i}.", "input": "",
             "output": " ".join(["word"] * (3 + (i % 10) * 8))} for i in range(60)]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    score_file(path, tmp_path / "run", backend="fake")
    result = CliRunner().invoke(app, ["select", str(tmp_path / "run"), "--fraction", "0.2", "--length-neutral"])
    assert result.exit_code == 0, result.output
    assert "length-neutral: ranked by score minus the median score of its response-length bin (3 bins)" in result.output
    record = json.loads((tmp_path / "run" / "selection.json").read_text())
    assert record["policy"]["length_neutral"] is True and record["steps"]["length_neutral"]["bins"] == 3
    assert len(record["indices"]) == 12
    again = select_run(tmp_path / "run", fraction=0.2)
    assert "length_neutral" not in again.steps
