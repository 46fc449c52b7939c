"""Issue 29, the run directory: a damaged or wrong --store, a directory in use, a reused --out, compare's
labels, an interrupted run, a write error's file name, the proxy's line when nothing was computed."""

import json
import os
import subprocess
import sys

import pytest

from conftest import DEMO

ENV = {**os.environ, "COLUMNS": "80"}


def cli(*args):
    return subprocess.run([sys.executable, "-m", "selectit", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=ENV)


def one_line_error(res, *expect: str) -> str:
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("selectit: error:"), res.stderr
    assert all(e in lines[0] for e in expect), lines[0]
    return lines[0]


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(json.loads(DEMO.read_text())[:12]))
    return path


def score(data, out, *extra):
    res = cli("score", data, "--out", out, "--backend", "fake", "--quiet", *extra)
    assert res.returncode == 0, res.stderr
    return res


# ---------------------------------------------------------------- 4. --store that is not a store

def test_a_store_that_is_not_sqlite_or_a_directory_is_one_line(tmp_path, data):
    text = tmp_path / "notes.txt"
    text.write_text("these are my notes, not a database\n" * 100)
    one_line_error(cli("score", data, "--out", tmp_path / "a", "--backend", "fake", "--store", text),
                   str(text), "not a readable selectit store", "--store a new path")
    assert text.read_text().startswith("these are my notes")  # left as it was
    one_line_error(cli("score", data, "--out", tmp_path / "b", "--backend", "fake", "--store", tmp_path),
                   f"the score store {tmp_path} is a directory", "give --store a file path")


def test_a_damaged_store_is_one_line_for_score_and_rescore(tmp_path, data):
    out = tmp_path / "run"
    score(data, out)
    store = out / "store.sqlite"
    raw = bytearray(store.read_bytes())
    raw[100:] = b"\xff" * (len(raw) - 100)  # the header survives, every page is garbage
    store.write_bytes(bytes(raw))
    for res in (cli("rescore", out, "--alpha", "0.5"), cli("score", data, "--out", out, "--backend", "fake")):
        one_line_error(res, str(store), "damaged: delete it")


# ---------------------------------------------------------------- 5. a directory in use

def test_select_and_report_refuse_a_directory_another_command_holds(tmp_path, data):
    from selectit.rundir import locked

    out = tmp_path / "run"
    score(data, out)
    with locked(out, "selectit rescore"):
        one_line_error(cli("select", out, "--fraction", "0.5"), "in use by selectit rescore (pid", "wait for it")
        one_line_error(cli("report", out), "in use by selectit rescore (pid")
    assert not (out / "selected.json").exists() and not (out / "report.html").exists()
    assert cli("select", out, "--fraction", "0.5", "--quiet").returncode == 0  # released


# ---------------------------------------------------------------- 6. a reused --out

def test_reusing_an_out_for_another_input_removes_the_old_inputs_selection(tmp_path, data):
    out = tmp_path / "run"
    lines = tmp_path / "other.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in json.loads(DEMO.read_text())[20:30]))
    score(lines, out)
    assert cli("select", out, "--fraction", "0.5", "--quiet").returncode == 0
    assert cli("report", out, "--quiet").returncode == 0
    assert (out / "selected.jsonl").is_file()
    res = cli("score", data, "--out", out, "--backend", "fake")
    assert res.returncode == 0, res.stderr
    assert "removed what the directory held of its earlier input report.html, selected.jsonl" in res.stderr
    assert not (out / "selected.jsonl").exists() and not (out / "report.html").exists()
    assert cli("select", out, "--fraction", "0.5", "--quiet").returncode == 0
    assert sorted(p.name for p in out.glob("selected*")) == ["selected.json"]
    score(data, out)  # the same input again: its selection stays
    assert (out / "selected.json").is_file()


# ---------------------------------------------------------------- 7. compare's labels

def test_compare_labels_are_the_shortest_distinguishing_path_suffix(tmp_path):
    from selectit.compare import distinct_names

    runs = tmp_path / "runs"
    assert distinct_names([runs / "a" / "out", runs / "b" / "out"]) == ["a/out", "b/out"]
    assert distinct_names([runs / "a", runs / "b"]) == ["a", "b"]
    assert distinct_names([runs / "x" / "a" / "out", runs / "y" / "a" / "out"]) == ["x/a/out", "y/a/out"]


def test_compare_of_two_out_folders_names_them_apart(tmp_path, data):
    for name in ("a", "b"):
        score(data, tmp_path / "runs" / name / "out")
    res = cli("compare", tmp_path / "runs" / "a" / "out", tmp_path / "runs" / "b" / "out")
    assert res.returncode == 0, res.stderr
    assert "a/out (selectit)" in res.stdout and "b/out (selectit)" in res.stdout


# ---------------------------------------------------------------- 9. messages that said the wrong thing

def test_select_on_an_interrupted_run_says_rerun_to_resume(tmp_path, data):
    out = tmp_path / "run"
    score(data, out)
    (out / "scores.jsonl").unlink()  # as a run killed before its last pass leaves it
    (out / "config.json").unlink()
    one_line_error(cli("select", out, "--fraction", "0.5"), "interrupted", "rerun the same `selectit score` command")
    one_line_error(cli("select", tmp_path / "nothing-here", "--fraction", "0.5"), "run `selectit score` first")


def test_a_write_error_names_the_output_not_the_temporary_file(tmp_path):
    from selectit.atomic import atomic_write

    target = tmp_path / "x.html"

    def fail(f):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as e:
        atomic_write(target, fail)
    assert e.value.filename == str(target) and not list(tmp_path.iterdir())
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o500)
    try:
        if os.access(tmp_path / "ro", os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(OSError) as e:
            atomic_write(tmp_path / "ro" / "x.html", lambda f: f.write("x"))
        assert e.value.filename == str(tmp_path / "ro" / "x.html")
    finally:
        os.chmod(tmp_path / "ro", 0o700)


def test_the_proxy_line_says_nothing_false_when_nothing_was_computed():
    from selectit.summary import _proxy_lines

    p = {"full": 10, "records": 30, "predicted": 20, "features": "likelihood", "regressor": "ridge",
         "held_out": 2, "trained_on": 8, "held_out_spearman": 0.9, "held_out_top20_overlap": 1.0,
         "seconds": {"full_method": 1.0, "features": 0.6, "predict": 0.1}}
    line = _proxy_lines(p, [{"stored": 30}])[0]
    assert "for 0 records" not in line and "every feature was stored already" in line
    assert "0.6s for 20 records" in _proxy_lines(p, [{"stored": 10}])[0]
    assert "no record was left to predict" in _proxy_lines({**p, "predicted": 0}, [{"stored": 10}])[0]


# ---------------------------------------------------------------- 10. help and typos

def test_switches_show_no_value_placeholder_and_typos_suggest_the_flag(tmp_path):
    from selectit.config import section_of
    from selectit.errors import ConfigError

    helptext = cli("select", "--help").stdout
    keep = next(line for line in helptext.splitlines() if "--keep-order" in line)
    assert "--no-keep-order" in keep and "<bool>" not in keep
    res = cli("select", tmp_path, "--dedup", "0.7")
    assert res.returncode == 2 and "--dedup-threshold" in res.stderr
    with pytest.raises(ConfigError, match=r"unknown option 'likelihod_weight'; did you mean 'likelihood_weight'\?$"):
        section_of("likelihod_weight")


def test_report_reads_a_directory_it_cannot_write_without_its_lock(tmp_path, data, monkeypatch):
    """A read-only run directory (shared, archived) still gets a report written elsewhere: no lock can be
    taken there, so it is read as it is (root may write anywhere, so the check is stubbed here)."""
    from selectit import rundir
    from selectit.report import write_report

    out = tmp_path / "run"
    score(data, out)
    (out / ".lock").unlink(missing_ok=True)
    real = os.access
    monkeypatch.setattr(rundir.os, "access", lambda p, mode: False if os.path.samefile(p, out) else real(p, mode))
    page = write_report(out, output=tmp_path / "page.html")
    assert page.read_text(encoding="utf-8").startswith("<!")
    assert not (out / ".lock").exists()  # no lock taken in the directory


# ---------------------------------------------------------------- 12. the Python API given a path; stdin

def test_the_python_api_takes_a_path_as_the_cli_does(data):
    import selectit

    from_path = selectit.score(str(data), backend="fake", num_prompts=2)
    from_dicts = selectit.score(json.loads(data.read_text()), backend="fake", num_prompts=2)
    assert from_path.final.tolist() == from_dicts.final.tolist() and len(from_path.final) == 12
    assert selectit.score(data, backend="fake", num_prompts=2).final.tolist() == from_path.final.tolist()
    with pytest.raises(selectit.DataError, match="pass a dataset's path instead; got a int"):
        selectit.score([1, 2], backend="fake")


def test_standard_input_is_refused_with_what_to_do(tmp_path):
    res = subprocess.run([sys.executable, "-m", "selectit", "score", "-", "--out", str(tmp_path / "o"),
                          "--backend", "fake"], input='{"instruction": "a", "output": "b"}\n', capture_output=True,
                         text=True, timeout=600, env=ENV, cwd=tmp_path)
    one_line_error(res, "standard input (-) is not supported", "save the records to a file")


# ---------------------------------------------------------------- 13. progress written to a file or pipe

def test_progress_to_a_pipe_is_plain_lines_not_carriage_returns(tmp_path, data):
    res = cli("score", data, "--out", tmp_path / "run", "--backend", "fake")  # stderr is a pipe here
    assert res.returncode == 0, res.stderr
    assert "\r" not in res.stderr
    lines = [x for x in res.stderr.splitlines() if "records (" in x]
    assert lines and lines[-1].split(": ", 1)[1].startswith("12/12 records (100%)")


def test_plain_progress_lines_at_each_tenth_or_after_a_minute():
    import io

    from selectit.progress import RecordLines

    now = [0.0]
    out = io.StringIO()
    lines = RecordLines(100, "rating", stream=out, clock=lambda: now[0])
    for _ in range(25):
        lines.update(1)  # a line at 10% and 20%
    now[0] = 61.0
    lines.update(1)  # a minute without a line
    lines.update(200)  # clamped to the total: one line at 100%
    lines.close()
    text = out.getvalue().splitlines()
    assert [t.split(": ")[1].split(" records")[0] for t in text] == ["10/100", "20/100", "26/100", "100/100"]
    assert "~" in text[2] and "left" not in text[-1]
