"""The command line (SPEC 3): end to end on the embedded model, and one clear line for each bad input."""

import json
import subprocess
import sys

import pytest

from conftest import DEMO
from selectit.config import flat_options


def selectit(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "selectit", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.fixture
def five_records(tmp_path):
    path = tmp_path / "five.json"
    path.write_text(json.dumps(json.loads(DEMO.read_text())[:5], indent=2))
    return path


@pytest.mark.embedded
def test_run_end_to_end_on_the_embedded_model(tmp_path, five_records):
    out = tmp_path / "run"
    res = selectit("run", five_records, "--out", out, "--num-prompts", "3", "--fraction", "0.4")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [0, 1, 2, 3, 4]
    for r in rows:
        assert set(r) >= {"id", "score", "token_scores", "sentence_scores", "label_mass"}
        assert len(r["token_scores"]["SmolLM2-135M-Instruct"]) == 3
        assert all(0 < m < 1 for m in r["label_mass"]["SmolLM2-135M-Instruct"])
        assert r["score"] == pytest.approx(r["sentence_scores"]["SmolLM2-135M-Instruct"])
    config = json.loads((out / "config.json").read_text())
    assert config["models"][0]["num_parameters"] == 134_515_008 and config["models"][0]["weight"] == 1.0
    assert config["models"][0]["template"] == "chat"  # --template auto (default): SmolLM2 has a chat template
    assert config["config"]["method"]["likelihood_weight"] == 2.0 and all(r["likelihood"] for r in rows)
    assert config["config"]["method"]["likelihood_term"] == "information"
    selected = json.loads((out / "selected.json").read_text())
    source = json.loads(five_records.read_text())
    best = sorted(range(5), key=lambda i: -rows[i]["score"])[:2]
    assert selected == [source[i] for i in best]
    assert "rec/s" in res.stderr


def test_score_then_select_with_fake_backend(tmp_path, five_records):
    out = tmp_path / "run"
    assert selectit("score", five_records, "--out", out, "--backend", "fake").returncode == 0
    res = selectit("select", out, "--top", "2", "--output", tmp_path / "best.json", "--keep-order")
    assert res.returncode == 0, res.stderr
    assert len(json.loads((tmp_path / "best.json").read_text())) == 2
    res = selectit("select", out, "--threshold", "-1")
    assert res.returncode == 0 and "selected 5 of 5" in res.stderr


def _bad(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("case,expect", [
    ("missing", "no such file"),
    ("unknown_format", "cannot tell the record format"),
    ("no_response", "record 1 (element 1) has no 'output' field"),
    ("empty", "empty"),
    ("fraction", "fraction must be in (0, 1]"),
    ("unknown_model", "not found"),
    ("bad_alpha", "--alpha must be >= 0"),
    ("not_a_run", "not a scored run directory"),
])
def test_bad_input_gives_one_line_and_nonzero_exit(tmp_path, five_records, case, expect):
    out = tmp_path / "out"
    args = {
        "missing": ["run", tmp_path / "nope.json", "--out", out],
        "unknown_format": ["run", _bad(tmp_path, "q.json", '[{"question": "a", "answer": "b"}]'), "--out", out],
        "no_response": ["run", _bad(tmp_path, "r.json", '[{"instruction": "a", "output": "b"}, {"instruction": "c"}]'),
                        "--out", out, "--backend", "fake"],
        "empty": ["run", _bad(tmp_path, "e.jsonl", ""), "--out", out],
        "fraction": ["run", five_records, "--out", out, "--fraction", "1.5"],
        "unknown_model": ["run", five_records, "--out", out, "--model", "./no/such/model"],
        "bad_alpha": ["score", five_records, "--out", out, "--alpha", "-1"],
        "not_a_run": ["select", tmp_path, "--fraction", "0.2"],
    }[case]
    res = selectit(*args)
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("selectit: error:"), res.stderr
    assert expect in lines[0]
    assert "Traceback" not in res.stderr


def test_usage_errors_exit_nonzero(five_records, tmp_path):
    res = selectit("run", five_records)  # no --out
    assert res.returncode == 2 and "--out" in res.stderr


def test_defaults_and_the_paper_one_flag_away(tmp_path, five_records):
    """The default is the measured best (auto template, expected rating, likelihood term); --paper (and
    --mode reference, the authors' scripts) is the published method; a flag typed against it is an error."""
    def config(*flags):
        out = tmp_path / "-".join(flags or ("default",))
        res = selectit("score", five_records, "--out", out, "--backend", "fake", "--quiet", *flags)
        assert res.returncode == 0, res.stderr
        written = json.loads((out / "config.json").read_text())
        assert written["models"][0]["template"] == "plain"  # what 'auto' became: the fake model has no chat template
        return {**flat_options(written), "run_method": written["method"]}

    picked = ("template", "rating", "calibrate", "prompt_weights", "likelihood_weight")
    assert [config()[k] for k in picked] == ["auto", "expected", False, "equal", 2.0]
    paper = ["plain", "argmax", False, "equal", 0.0]
    assert [config("--paper")[k] for k in picked] == paper
    assert [config("--paper", "--rating", "argmax")[k] for k in picked] == paper  # agreeing flags are fine
    assert config()["run_method"] == "selectit" and config("--paper")["run_method"] == "paper"
    reference = config("--mode", "reference")
    assert [reference[k] for k in picked] == paper and reference["run_method"] == "reference"
    assert [config("--method", "reference")[k] for k in picked] == paper
    for flags, expect in (
            (["--paper", "--rating", "expected"], "--paper uses the published method; drop --rating expected"),
            (["--method", "paper", "--template", "chat"], "--method paper uses the published method; drop --template chat"),
            (["--paper", "--method", "ifd"], "--paper is --method paper; drop --method ifd"),
            (["--mode", "reference", "--likelihood-weight", "1"], "drop --likelihood-weight 1.0")):
        res = selectit("score", five_records, "--out", tmp_path / "bad", "--backend", "fake", *flags)
        assert res.returncode == 2 and expect in res.stderr and "Traceback" not in res.stderr, res.stderr
