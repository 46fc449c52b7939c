"""`selectit compare`: overlap of selections and rank correlation of scores, checked against hand values."""

import csv
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import DEMO
from selectit.cli import app
from selectit.report.stats import ranks as rankdata
from selectit.report.stats import spearman

runner = CliRunner()


def test_rankdata_averages_ties():
    np.testing.assert_array_equal(rankdata([10, 20, 20, 5, 20]), [2, 4, 4, 1, 4])
    np.testing.assert_array_equal(rankdata([3.0]), [1])


def test_spearman_hand_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # d = (0, 1, -1, 0): 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert spearman([1, np.nan, 3, 4], [1, 5, 2, 4]) == pytest.approx(spearman([1, 3, 4], [1, 2, 4]))
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


@given(st.lists(st.integers(-5, 5), min_size=3, max_size=30), st.integers(0, 2**31))
def test_spearman_is_pearson_of_average_ranks(values, seed):
    a = np.array(values, dtype=float)
    b = np.random.default_rng(seed).permutation(a) + np.arange(len(a)) % 2
    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        assert np.isnan(spearman(a, b))
    else:
        assert spearman(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1])


def scored(tmp_path, name, *args, data=DEMO):
    out = tmp_path / name
    r = runner.invoke(app, ["score", str(data), "--out", str(out), "--backend", "fake", "--quiet", *args])
    assert r.exit_code == 0, r.output
    return out


def test_compare_table_and_csv(tmp_path):
    a = scored(tmp_path, "selectit")
    same = scored(tmp_path, "again")
    rnd = scored(tmp_path, "random", "--method", "random")
    r = runner.invoke(app, ["compare", str(a), str(same), str(rnd), "--csv", str(tmp_path / "c.csv")])
    assert r.exit_code == 0, r.output
    assert "jaccard" in r.output and "random" in r.output
    rows = list(csv.DictReader((tmp_path / "c.csv").open()))
    assert [(x["a"], x["b"]) for x in rows] == [("selectit", "again (selectit)"), ("selectit", "random"),
                                                ("again (selectit)", "random")]
    first = rows[0]
    assert (first["selected_a"], first["overlap"], float(first["jaccard"]), float(first["spearman"])) == \
        ("40", "40", 1.0, 1.0)
    # Against the random run: overlap and correlation recomputed from the files.
    sa = np.array([json.loads(x)["score"] for x in (a / "scores.jsonl").read_text().splitlines()])
    sr = np.array([json.loads(x)["score"] for x in (rnd / "scores.jsonl").read_text().splitlines()])
    top_a, top_r = set(np.argsort(-sa, kind="stable")[:40]), set(np.argsort(-sr, kind="stable")[:40])
    assert int(rows[1]["overlap"]) == len(top_a & top_r)
    assert float(rows[1]["jaccard"]) == pytest.approx(len(top_a & top_r) / len(top_a | top_r))
    assert float(rows[1]["spearman"]) == pytest.approx(np.corrcoef(rankdata(sa), rankdata(sr))[0, 1])


def test_compare_top_policy(tmp_path):
    a, b = scored(tmp_path, "a"), scored(tmp_path, "b", "--method", "length")
    r = runner.invoke(app, ["compare", str(a), str(b), "--top", "7"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[2].split()[-6:-4] == ["7", "7"]


def test_compare_errors(tmp_path):
    a = scored(tmp_path, "a")
    other = tmp_path / "other.json"
    other.write_text(json.dumps(json.loads(DEMO.read_text())[:50]))
    b = scored(tmp_path, "b", data=other)
    for args, message in [([str(a)], "at least two run directories"),
                          ([str(a), str(b)], "did not score the same input"),
                          ([str(a), str(tmp_path)], "is not a scored run directory"),
                          ([str(a), str(a), "--fraction", "2"], "fraction must be in (0, 1]")]:
        r = runner.invoke(app, ["compare", *args])
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output and "Traceback" not in r.output
