"""Bad input: each bad record is reported with its reason (or skipped and listed with --skip-bad);
none shifts another record's score."""

import json
import subprocess
import sys

GOOD = [{"id": f"g{i}", "instruction": f"Task {i}: name a fruit.", "output": f"Fruit number {i}: apple."}
        for i in range(6)]
BAD_LINES = {
    "malformed JSON": b'{"instruction": "x", "output": ',
    "missing output": json.dumps({"instruction": "no answer here"}).encode(),
    "empty output": json.dumps({"instruction": "x", "output": "   "}).encode(),
    "non-string field": json.dumps({"instruction": ["a", "list"], "output": "y"}).encode(),
    "binary garbage": bytes(range(255, 135, -1)),
    "non-UTF-8": b'{"instruction": "caf\xe9", "output": "ok"}',
    "not an object": b"[1, 2, 3]",
}
REASONS = {"malformed JSON": "not valid JSON", "missing output": "no 'output' field", "empty output": "is empty",
           "non-string field": "expected a string", "binary garbage": "not UTF-8", "non-UTF-8": "not UTF-8",
           "not an object": "expected an object"}


def _write(path, good, bad):
    lines = []
    for i, g in enumerate(good):
        lines.append(json.dumps(g).encode())
        if i < len(bad):
            lines.append(bad[i])
    path.write_bytes(b"\n".join(lines) + b"\n\n")


def _run(*args):
    return subprocess.run([sys.executable, "-m", "selectit", *map(str, args)], capture_output=True, text=True)


def test_bad_records_fail_loudly_then_skip_cleanly(tmp_path):
    big = {"id": "big", "instruction": "Summarise this.", "output": "lorem ipsum " * 90_000}  # ~1 MB
    dup = dict(GOOD[0])  # a duplicate id: scored, kept in order
    good = GOOD + [big, dup]
    data = tmp_path / "data.jsonl"
    _write(data, good, list(BAD_LINES.values()))

    res = _run("score", data, "--out", tmp_path / "strict", "--backend", "fake")
    assert res.returncode == 2 and "7 bad record(s)" in res.stderr and "line 2" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1

    out = tmp_path / "skip"
    res = _run("run", data, "--out", out, "--backend", "fake", "--skip-bad", "--fraction", "1")
    assert res.returncode == 0, res.stderr
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == 7
    for reject, kind in zip(rejects, BAD_LINES):
        assert REASONS[kind] in reject["reason"], (kind, reject)
    assert rejects[0]["where"] == "record 1 (line 2)"
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [g["id"] for g in good]
    assert "duplicate id" in res.stderr and "left out 7 bad record(s)" in res.stderr

    clean = tmp_path / "clean.jsonl"
    clean.write_text("".join(json.dumps(g) + "\n" for g in good))
    assert _run("score", clean, "--out", tmp_path / "clean", "--backend", "fake", "--quiet").returncode == 0
    clean_rows = [json.loads(line) for line in (tmp_path / "clean" / "scores.jsonl").read_text().splitlines()]
    assert [r["score"] for r in rows] == [r["score"] for r in clean_rows]  # nothing shifted
    selected = [json.loads(line) for line in (out / "selected.jsonl").read_text().splitlines()]
    # the duplicate id is also an exact copy of GOOD[0]: scored, but never selected (issue 16's exact dedup)
    assert sorted(s["id"] for s in selected) == sorted(g["id"] for g in good[:-1])


def test_empty_and_blank_files(tmp_path):
    for name, content in [("empty.jsonl", b""), ("blank.jsonl", b"\n \n"), ("empty.json", b"[]")]:
        path = tmp_path / name
        path.write_bytes(content)
        res = _run("score", path, "--out", tmp_path / "o", "--backend", "fake")
        assert res.returncode == 2 and "empty" in res.stderr, (name, res.stderr)
