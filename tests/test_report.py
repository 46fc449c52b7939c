"""The HTML report: its statistics against hand-computed values, the page it writes from real (fake-backend)
runs, and the page itself in a real headless Chromium (no console errors, nothing fetched, plots drawn,
the table filters)."""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DEMO
from selectit.report import page, stats

CHROMIUM = Path("/usr/bin/chromium")
N = 40


def selectit(*args):
    return subprocess.run([sys.executable, "-m", "selectit", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


# --- statistics -------------------------------------------------------------------------------------------

def test_word_counts():
    assert stats.word_counts(["a b  c", "", " one\ntwo\t"]).tolist() == [3, 0, 2]


@pytest.mark.parametrize("instruction,response,expect", [
    ("What is 3 + 4?", "7", True),
    ("Evaluate the expression.", "12*7 = 84", True),
    ("Calculate the area of a circle with radius 5.", "78.5", True),
    ("What is 15% of 80?", "12", True),
    ("How many legs does a spider have?", "Eight.", False),  # a math word but no digit
    ("Name 3 fruits.", "Apple, pear, plum.", False),  # a digit but no math word or expression
    ("Write a poem about the sea.", "The sea, the sea.", False),
    ("Convert 10 km to miles.", "6.2 miles", True),
    ("List the years 1990-2000 in a table.", "...", True),  # a range reads as an expression: documented limit
])
def test_involves_calculation(instruction, response, expect):
    assert stats.involves_calculation(instruction, response) is expect


@pytest.mark.parametrize("instruction,expect", [
    ("Generate a list of colors.", "generate"),
    ("  please explain gravity", "explain"),
    ("What is the capital of France?", "question"),
    ("Can you help me?", "question"),
    ("User: Rewrite this sentence.\n\nAssistant: Sure.", "rewrite"),
    ("123 ...", "(none)"),
    ("The following text is a review.", "the"),
])
def test_task_type(instruction, expect):
    assert stats.task_type(instruction) == expect


def test_type_mix_shares_and_other():
    types = ["write", "write", "explain", "question", "question", "question"]
    sel = np.array([1, 0, 0, 1, 1, 0], dtype=bool)
    mix = stats.type_mix(types, sel, top=2)
    assert mix == [("question", 0.5, pytest.approx(2 / 3)), ("write", pytest.approx(1 / 3), pytest.approx(1 / 3)),
                   ("other", pytest.approx(1 / 6), 0.0)]


def test_prompt_std_is_the_sentence_level_std():
    token = np.array([[1.0, 2.0, 3.0], [2.0, np.nan, 4.0], [np.nan, np.nan, np.nan]])
    std = stats.prompt_std(token)
    assert std[0] == pytest.approx(math.sqrt(2 / 3))  # ddof 0
    assert std[1] == pytest.approx(1.0)  # the failed prompt is left out
    assert math.isnan(std[2])


def test_low_mass_flags_records_and_prompt_means():
    mass = np.array([[0.05, 0.1], [0.3, 0.5], [np.nan, np.nan], [0.02, np.nan]])
    assert stats.low_mass_records(mass).tolist() == [True, False, True, True]  # mean 0.075 < 0.1; absent counts
    assert stats.prompt_mass(mass) == pytest.approx([(0.05 + 0.3 + 0.02) / 3, 0.3])


def test_rating_counts_use_argmax_and_skip_zero_mass():
    probs = np.array([[[0.1, 0.3, 0.1], [0.0, 0.0, 0.0]],
                      [[0.2, 0.2, 0.1], [0.0, 0.0, 0.4]]])  # (n=2, P=2, S=3); a tie goes to the first
    assert stats.rating_counts(probs).tolist() == [[1, 1, 0], [0, 0, 1]]


def test_share_selected():
    values = np.array([1.0, 2.0, 3.0, np.nan])
    sel = np.array([True, False, True, True])
    assert stats.share_selected(values, sel) == (2.0, 2.0, 2.0)
    a, s, r = stats.share_selected(np.array([1.0]), np.array([False]))
    assert (a, r) == (1.0, 1.0) and math.isnan(s)


def test_ranks_average_ties():
    assert stats.ranks(np.array([10.0, 20.0, 10.0, 5.0])).tolist() == [2.5, 4.0, 2.5, 1.0]


def test_spearman_against_hand_values():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert stats.spearman(a, a ** 3) == pytest.approx(1.0)
    assert stats.spearman(a, -a) == pytest.approx(-1.0)
    # d = rank differences (0, 0, 1, -1, 0): rho = 1 - 6 * 2 / (5 * 24) = 0.9
    assert stats.spearman(a, np.array([1.0, 2.0, 4.0, 3.0, 5.0])) == pytest.approx(0.9)
    assert stats.spearman(np.array([1.0, np.nan, 3.0, 2.0]), np.array([2.0, 5.0, 6.0, 4.0])) == pytest.approx(1.0)
    assert math.isnan(stats.spearman(np.array([1.0, 1.0]), np.array([1.0, 2.0])))


def test_spearman_matches_scipy_when_available():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 200).astype(float), rng.normal(size=200)
    assert stats.spearman(a, b) == pytest.approx(scipy_stats.spearmanr(a, b).statistic)


def test_overlap():
    assert stats.overlap([1, 2, 3], [2, 3, 4, 5]) == (2, 0.4)
    both, jac = stats.overlap([], [])
    assert both == 0 and math.isnan(jac)


def test_histogram_counts_finite_values_in_equal_bins():
    edges, counts = stats.histogram(np.array([0.0, 0.5, 1.0, 1.0, np.nan]), bins=2)
    assert edges.tolist() == [0.0, 0.5, 1.0] and counts.tolist() == [1, 3]  # the last bin includes its right edge
    edges, counts = stats.histogram(np.array([2.0, 2.0]), bins=4)  # one value: a range around it
    assert counts.sum() == 2 and edges[0] < 2.0 < edges[-1]
    assert stats.histogram(np.array([0.2, 5.0]), edges=np.array([0.0, 1.0]))[1].tolist() == [1]


def test_script_json_cannot_close_the_script_element():
    text = page.script_json({"t": "</script><script>alert(1)</script><!--"})
    assert "<" not in text and json.loads(text) == {"t": "</script><script>alert(1)</script><!--"}


# --- the page from real runs -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two real runs of the fake backend on the same 40 demo records (3 and 5 prompts), reports written."""
    base = tmp_path_factory.mktemp("report")
    records = json.loads(DEMO.read_text())[:N]
    records[0]["instruction"] = "Find </script> 12 + 30 <b>bold</b>"  # must stay text, never markup
    data = base / "data.json"
    data.write_text(json.dumps(records, indent=1))
    a, b = base / "run-a", base / "run-b"
    for out, prompts in ((a, 3), (b, 5)):
        res = selectit("run", data, "--out", out, "--backend", "fake", "--num-prompts", prompts)
        assert res.returncode == 0, res.stderr
        assert "report:" in res.stderr
    return base, data, a, b


def _embedded_rows(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="records-data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def test_run_writes_a_self_contained_report(runs):
    _, _, a, _ = runs
    html = (a / "report.html").read_text()
    assert html.count("<script") >= 3 and not re.search(r'<script[^>]+src=', html)
    ours = re.sub(r"<script>/\*\*\n\* plotly\.js v.*?</script>", "", html, flags=re.S)  # the bundle names
    assert len(ours) < len(html) / 2  # map tile servers it never asks for here; the rest of the page is ours
    assert not re.search(r'(?:src|href)\s*=\s*["\']?(?:https?:)?//', ours)  # no CDN, no links out
    assert len(re.findall(r'<div id="fig-\d+"', html)) >= 6 and len(re.findall(r"plotly\.js v\d", html)) == 1
    assert "Find </script>" not in html and "<b>bold</b>" not in html  # text is escaped everywhere
    rows = _embedded_rows(html)
    assert len(rows["rows"]) == N and sum(r[3] for r in rows["rows"]) == N // 5  # default fraction 0.2
    scores = [json.loads(line)["score"] for line in (a / "scores.jsonl").read_text().splitlines()]
    by_rank = sorted(rows["rows"], key=lambda r: r[0])
    assert [r[2] for r in by_rank] == pytest.approx(sorted(scores, reverse=True), abs=1e-6)


def test_report_follows_the_last_selection(runs, tmp_path):
    _, data, a, _ = runs
    run = tmp_path / "run"
    shutil.copytree(a, run)
    assert selectit("select", run, "--top", "7", "--output", tmp_path / "sel.json").returncode == 0
    res = selectit("report", run, "--output", tmp_path / "r.html")
    assert res.returncode == 0, res.stderr
    html = (tmp_path / "r.html").read_text()
    assert "the best 7 records (--top 7)" in html and sum(r[3] for r in _embedded_rows(html)["rows"]) == 7
    res = selectit("report", run, "--output", tmp_path / "r2.html", "--fraction", "0.5")
    assert sum(r[3] for r in _embedded_rows((tmp_path / "r2.html").read_text())["rows"]) == N // 2
    # Scoring again makes the old selection stale: it is dropped and the report falls back to 20%.
    assert selectit("score", data, "--out", run, "--backend", "fake", "--num-prompts", "2", "--quiet").returncode == 0
    assert not (run / "selection.json").exists()
    assert selectit("report", run).returncode == 0
    assert sum(r[3] for r in _embedded_rows((run / "report.html").read_text())["rows"]) == N // 5


def test_report_compares_runs(runs, tmp_path):
    _, _, a, b = runs
    res = selectit("report", a, b, "--output", tmp_path / "both.html")
    assert res.returncode == 0, res.stderr
    html = (tmp_path / "both.html").read_text()
    assert "Comparing 2 runs" in html and "same input" in html
    sa = np.array([json.loads(x)["score"] for x in (a / "scores.jsonl").read_text().splitlines()])
    sb = np.array([json.loads(x)["score"] for x in (b / "scores.jsonl").read_text().splitlines()])
    assert f"{stats.spearman(sa, sb):.3f}" in html


def test_report_without_the_input_still_shows_scores(runs, tmp_path):
    base, data, a, _ = runs
    moved = base / "moved.json"
    data.rename(moved)
    try:
        res = selectit("report", a, "--output", tmp_path / "r.html")
    finally:
        moved.rename(data)
    assert res.returncode == 0, res.stderr
    html = (tmp_path / "r.html").read_text()
    assert "is gone" in html and "not shown" in html
    assert len(_embedded_rows(html)["rows"]) == N


def test_report_of_unscored_and_failed_records(runs, tmp_path):
    """Records with no score (zero mass everywhere, or every prompt failed) rank last, are never selected,
    are flagged low-mass and counted; the page still renders."""
    _, _, a, _ = runs
    run = tmp_path / "run"
    shutil.copytree(a, run)
    (run / "selection.json").unlink(missing_ok=True)
    rows = [json.loads(line) for line in (run / "scores.jsonl").read_text().splitlines()]
    model = next(iter(rows[0]["token_scores"]))
    for i in (0, 1):
        rows[i]["score"] = None
        rows[i]["token_scores"][model] = [None] * 3
        rows[i]["sentence_scores"][model] = None
        rows[i]["label_mass"][model] = [0.0] * 3 if i == 0 else [None] * 3
        rows[i]["label_probs"][model] = [[0.0] * 5] * 3 if i == 0 else [[None] * 5] * 3
    rows[1]["errors"] = {model: {"0": "boom", "1": "boom", "2": "boom"}}
    (run / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = selectit("report", run, "--fraction", "1.0")
    assert res.returncode == 0, res.stderr
    html = (run / "report.html").read_text()
    table = {r[1]: r for r in _embedded_rows(html)["rows"]}
    assert table["0"][0] > N - 2 and table["1"][0] > N - 2  # ranked last
    assert table["0"][2] is None and table["0"][3] == 0 and table["1"][3] == 0  # no score, never selected
    assert sum(r[3] for r in table.values()) == N - 2
    assert re.search(r'<div class="v">3</div><div class="k">failed prompts', html)
    assert re.search(r'<div class="v">2</div><div class="k">low label mass', html)


def test_report_of_a_non_run_is_one_line(tmp_path):
    res = selectit("report", tmp_path)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "not a scored run directory" in res.stderr


def test_run_can_skip_the_report(tmp_path):
    data = tmp_path / "d.json"
    data.write_text(json.dumps(json.loads(DEMO.read_text())[:5]))
    res = selectit("run", data, "--out", tmp_path / "r", "--backend", "fake", "--quiet", "--no-report")
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "r" / "report.html").exists()


# --- the page in a real browser ----------------------------------------------------------------------------

BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]


def test_report_in_headless_chromium(runs, tmp_path):
    if not CHROMIUM.exists():
        if os.environ.get("CI"):  # .ci/run installs it: there a missing browser is a failure, not a skip
            pytest.fail(f"{CHROMIUM} is missing in CI")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    _, _, a, _ = runs
    html_path = a / "report.html"
    data = _embedded_rows(html_path.read_text())
    figures = len(re.findall(r'<div id="fig-\d+"', html_path.read_text()))
    query = "the"  # some records match, some do not
    expect = sum(any(query in str(r[c]).lower() for c in data["text"]) for r in data["rows"])
    assert 0 < expect < N

    errors, outside = [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page_ = browser.new_page(viewport={"width": 1280, "height": 900})
            page_.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page_.on("pageerror", lambda e: errors.append(str(e)))

            def route(r):  # anything but the file itself is recorded and refused
                if r.request.url.startswith(("file:", "data:", "blob:", "about:")):
                    return r.continue_()
                outside.append(r.request.url)
                return r.abort()

            page_.route("**/*", route)
            page_.goto(html_path.as_uri(), wait_until="load")
            page_.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length === {figures}")
            plots = page_.locator(".js-plotly-plot")
            assert plots.count() == figures
            for k in range(figures):  # every plot drew its SVG with at least one trace
                assert plots.nth(k).locator(".main-svg").count() >= 1
                assert plots.nth(k).locator("g.trace, g.barlayer .point, g.scatterlayer g.trace").count() >= 1

            count = page_.locator("#records-count")
            assert count.get_attribute("data-count") == str(N)
            assert page_.locator("#records-table tbody tr").count() == N  # one page of 50
            page_.fill("#records-search", query)
            page_.wait_for_function(f"document.getElementById('records-count').dataset.count === '{expect}'")
            assert page_.locator("#records-table tbody tr").count() == expect
            page_.fill("#records-search", "<B>BOLD</b>")  # the record's text, shown as text
            page_.wait_for_function("document.getElementById('records-count').dataset.count === '1'")
            assert "Find </script> 12 + 30 <b>bold</b>" in page_.locator("#records-table tbody tr").inner_text()
            page_.fill("#records-search", "no record says zqxj")
            page_.wait_for_function("document.getElementById('records-count').dataset.count === '0'")
            page_.fill("#records-search", "")
            page_.wait_for_function(f"document.getElementById('records-count').dataset.count === '{N}'")

            page_.click("#records-table th:nth-child(3)")  # score: click sorts descending first
            first = page_.locator("#records-table tbody tr").first.locator("td").first.inner_text()
            assert first == "1"
            page_.click("#records-table th:nth-child(3)")
            first = page_.locator("#records-table tbody tr").first.locator("td").first.inner_text()
            assert first == str(N)

            shot = tmp_path / "report_screenshot.png"
            page_.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
    assert errors == [], errors
    assert outside == [], outside


def test_report_of_a_junk_step_and_a_draw(runs, tmp_path):
    """A selection with --drop-junk and --sample: the report names the step and the draw and counts the junk."""
    _, _, a, _ = runs
    run = tmp_path / "run"
    shutil.copytree(a, run)
    res = selectit("select", run, "--fraction", "0.25", "--drop-junk", "--junk-min-information", "-1e9",
                   "--junk-max-end-loss", "1e9", "--sample", "--sample-seed", "3")
    assert res.returncode == 0, res.stderr
    res = selectit("report", run, "--output", tmp_path / "r.html")
    assert res.returncode == 0, res.stderr
    html = (tmp_path / "r.html").read_text()
    assert "a random 25% of the records that can be selected (--fraction 0.25 --sample)" in html
    assert "junk excluded" in html and "drawn at random (seed 3)" in html
    assert "Junk (--drop-junk): 0 with no information" in html
    assert sum(r[3] for r in _embedded_rows(html)["rows"]) == N // 4
