"""Selection steps of issue 16: exact and near duplicates on hand-made records (which one is kept, ties,
order), the diversity walk against a brute-force reference, and the steps through `selectit select`."""

import json

import numpy as np
import pytest
from conftest import score_file

from selectit.measures import minhash
from selectit.selection import dedup, diversity
from selectit.config import SelectOptions
from selectit.errors import ConfigError
from selectit.formats import MemorySource
from selectit.jobs import select_run
from selectit.records import Record
from selectit.selection.policy import Policy
from selectit.selection.steps import choose_run

LONG = ("The water cycle describes how water evaporates from the surface of the earth, rises into the atmosphere, "
        "cools and condenses into rain or snow in clouds, and falls again to the surface as precipitation.")


def rec(i, instruction, output, inp=""):
    return Record(id=i, instruction=instruction + (f"\n{inp}" if inp else ""), response=output,
                  raw={"instruction": instruction, "input": inp, "output": output})


def steps(records, scores, **options):
    source = MemorySource(records, chunk_size=3)  # several chunks: the steps stream them
    return choose_run(source, {}, np.asarray(scores, dtype=np.float64), SelectOptions(**options), ":memory:",
                      Policy(top=len(records)))


def test_exact_copies_count_once_up_to_case_and_whitespace_the_first_is_kept():
    records = [rec(0, "Name a colour.", "Blue."), rec(1, "Name a fruit.", "Apple."),
               rec(2, "name  a COLOUR.", " blue. "), rec(3, "Name a colour.", "Blue.", inp="x"),
               rec(4, "Name a\tcolour.", "Blue.")]
    keys = dedup.exact_keys(records)
    assert keys[0] == keys[2] == keys[4] and len({keys[0], keys[1], keys[3]}) == 3  # the input counts
    assert dedup.first_copies(keys).tolist() == [0, 1, 0, 3, 0]
    # the copy scores best, yet the first in input order is the one that can be selected
    chosen = steps(records, [1.0, 2.0, 9.0, 3.0, 9.0])
    assert chosen.indices.tolist() == [3, 1, 0] and chosen.info["exact_duplicates"] == 2
    assert chosen.info["clusters"] == [{"size": 3, "kept": 0, "members": [0, 2, 4]}]
    kept = steps(records, [1.0, 2.0, 9.0, 3.0, 9.0], keep_duplicates=True)
    assert kept.indices.tolist() == [2, 4, 3, 1, 0] and kept.info["exact_duplicates"] == 0


def test_an_unscored_first_copy_still_excludes_its_copies():
    records = [rec(0, "Name a colour.", "Blue."), rec(1, "Name a colour.", "Blue.")]
    assert steps(records, [np.nan, 5.0]).indices.tolist() == []


@pytest.fixture
def near_records():
    return [rec(0, "Explain the water cycle.", LONG),
            rec(1, "Give three tips for staying healthy.", "Eat vegetables, sleep eight hours and walk every day."),
            rec(2, "Explain the water cycle.", LONG.replace("rain or snow", "rain or hail")),  # one word changed
            rec(3, "Explain the water cycle!", LONG.upper()),  # punctuation, casing
            rec(4, "Describe a volcano.", "A volcano is an opening in the crust where magma, ash and gas escape.")]


def test_near_copies_cluster_and_the_best_scored_is_kept(near_records):
    pytest.importorskip("rensa")
    sigs = minhash.signatures(near_records)
    assert sigs.shape == (5, minhash.NUM_PERM) and sigs.dtype == np.uint32
    pairs = dedup.near_pairs(sigs, 0.7)
    assert {tuple(p) for p in pairs.tolist()} == {(0, 2), (0, 3), (2, 3)}
    assert dedup.clusters(5, pairs).tolist() == [0, 1, 0, 0, 4]
    chosen = steps(near_records, [1.0, 2.0, 5.0, 3.0, 0.5], dedup_threshold=0.7)
    assert chosen.indices.tolist() == [2, 1, 4] and chosen.info["near_duplicates"] == 2
    assert chosen.info["clusters"][0] == {"size": 3, "kept": 2, "members": [0, 2, 3]}
    # ties: the first in input order
    assert steps(near_records, [4.0, 2.0, 4.0, 4.0, 0.5], dedup_threshold=0.7).indices.tolist() == [0, 1, 4]
    # a stricter threshold: the one-word change stands alone; the copy that differs in punctuation and
    # casing only (the same words) still clusters with the original, and the better scored of them is kept
    strict = steps(near_records, [1.0, 2.0, 5.0, 3.0, 0.5], dedup_threshold=0.95)
    assert strict.indices.tolist() == [2, 3, 1, 4] and strict.info["exact_duplicates"] == 0
    assert strict.info["clusters"] == [{"size": 2, "kept": 3, "members": [0, 3]}]


def test_band_parameters_are_datasketchs():
    lsh = pytest.importorskip("datasketch.lsh")
    for threshold in (0.5, 0.7, 0.8, 0.9):
        assert dedup.band_params(threshold, 128) == lsh._optimal_param(threshold, 128, 0.5, 0.5)


def test_large_bucket_links_every_member(near_records):
    sigs = np.zeros((600, minhash.NUM_PERM), dtype=np.uint32)  # 600 identical signatures: one bucket per band
    pairs = dedup.near_pairs(sigs, 0.8)
    assert len(pairs) < 600 * 4 and set(dedup.clusters(600, pairs).tolist()) == {0}


def brute_force_walk(ranked, vectors, d, budget):
    """DEITA's rule, one record at a time, with numpy."""
    x = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    taken = []
    for i in ranked:
        if len(taken) >= budget:
            break
        if not taken or (x[taken] @ x[i]).max() < 1 - d:
            taken.append(int(i))
    return taken


@pytest.mark.parametrize("exact_limit", [10_000, 0])  # exact search only, and the IVF index from the start
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_diversity_walk_equals_brute_force(seed, exact_limit):
    if exact_limit == 0:
        pytest.importorskip("faiss")
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((15, 16))
    vectors = (centres[rng.integers(0, 15, 700)] + 0.35 * rng.standard_normal((700, 16))).astype(np.float16)
    ranked = rng.permutation(700)
    for d, budget in ((0.02, 150), (0.1, 700), (0.3, 40)):
        want = brute_force_walk(ranked, vectors.astype(np.float32), d, budget)
        got, walked = diversity.diverse(ranked, vectors, d, budget, block=64, exact_limit=exact_limit)
        if exact_limit:  # exact search: the same records, in the same order
            assert got.tolist() == want
            assert len(want) < budget or walked == int(np.flatnonzero(ranked == want[-1])[0]) + 1
        else:  # the index is approximate: a close taken record in a list not scanned lets one in
            assert len(set(got.tolist()) ^ set(want)) <= max(2, len(want) // 50)


def test_diversity_takes_records_without_embedding_on_score_alone():
    vectors = np.array([[1, 0], [1, 0], [np.nan, np.nan], [0, 0], [0, 1]], dtype=np.float16)
    got, _ = diversity.diverse(np.arange(5), vectors, 0.5)
    assert got.tolist() == [0, 2, 3, 4]
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        diversity.diverse(np.arange(5), vectors, 0.0)


def test_missing_libraries_name_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "faiss", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "rensa", None)
    with pytest.raises(ConfigError, match=r"--diversity needs faiss-cpu: pip install 'selectit\[dedup\]'"):
        diversity.diverse(np.arange(10), np.ones((10, 4), dtype=np.float16), 0.1, exact_limit=4)
    with pytest.raises(ConfigError, match=r"needs rensa: pip install 'selectit\[dedup\]'"):
        minhash.signatures([rec(0, "a", "b")])


def test_select_cli_steps_on_a_scored_run(tmp_path):
    pytest.importorskip("rensa")
    pytest.importorskip("faiss")
    base = [{"instruction": f"Task {i}: name a thing.", "input": "", "output": f"Thing number {i} is here."}
            for i in range(40)]
    data = base + [dict(base[3]), {**base[5], "output": base[5]["output"].upper()}]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    score_file(path, tmp_path / "run", backend="fake")
    sel = select_run(tmp_path / "run", top=42)
    assert len(sel.indices) == 40 and sel.steps["exact_duplicates"] == 2
    assert not {40, 41} & set(sel.indices.tolist())
    record = json.loads((tmp_path / "run" / "selection.json").read_text())
    assert record["steps"]["exact_duplicates"] == 2 and record["policy"]["keep_duplicates"] is False
    assert len(select_run(tmp_path / "run", top=42, options=SelectOptions(keep_duplicates=True)).indices) == 42
    walked = select_run(tmp_path / "run", fraction=0.5, options=SelectOptions(diversity=0.01, dedup_threshold=0.9))
    assert len(walked.indices) == 21 and walked.steps["diversity"]["embedding_dim"] == 64
    from selectit.report import write_report

    html = write_report(tmp_path / "run").read_text()
    assert "Duplicates and diversity" in html and "Duplicate clusters collapsed" in html
    assert "first two principal components" in html and "mean cosine distance to the nearest" in html
    assert "exact copies excluded, near duplicates (Jaccard &gt;= 0.9) collapsed, diversity 0.01" in html
    with pytest.raises(ConfigError, match=r"--diversity must be in \(0, 1\]"):
        SelectOptions(diversity=2.0)


def test_diversity_on_a_run_without_embeddings_names_the_fix(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([{"instruction": "a", "input": "", "output": "b"}] * 2))
    score_file(path, tmp_path / "run", backend="fake", method="length")
    with pytest.raises(ConfigError, match="--embeddings on"):
        select_run(tmp_path / "run", top=1, options=SelectOptions(diversity=0.1))


def test_diversity_that_cannot_fill_the_budget_says_so_and_which_would(tmp_path):
    """Issue 29 (11): a walk that takes fewer records than asked says so, why, and which --diversity
    would fill the budget (a smaller D, halved until one does)."""
    from selectit.cli import _step_lines

    path = tmp_path / "data.json"
    path.write_text(json.dumps([{"instruction": f"Task {i}: name a thing.", "input": "", "output": f"Thing {i}."}
                                for i in range(40)]))
    score_file(path, tmp_path / "run", backend="fake")
    strict = select_run(tmp_path / "run", top=30, options=SelectOptions(diversity=0.9))
    d = strict.steps["diversity"]
    assert len(strict.indices) < 30 and d["budget"] == 30
    warning = [line for line in _step_lines(strict.steps) if line.startswith("warning:")]
    assert len(warning) == 1 and f"{len(strict.indices)} selected, not the 30 asked for" in warning[0]
    if d["would_meet"] is not None:  # the suggestion is true
        assert f"--diversity {d['would_meet']:g} would fill it" in warning[0]
        assert len(select_run(tmp_path / "run", top=30, options=SelectOptions(diversity=d["would_meet"])).indices) == 30
    loose = select_run(tmp_path / "run", top=5, options=SelectOptions(diversity=0.01))
    assert len(loose.indices) == 5 and "budget" not in loose.steps["diversity"]
