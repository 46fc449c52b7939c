"""Resumable, crash-safe scoring: the store, resume after SIGKILL, failures isolated to their records."""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np

import selectit
from conftest import DEMO
from selectit.backends.fake import FakeBackend
from selectit.store import ScoreStore


class CountingBackend(FakeBackend):
    """The fake backend, counting the prompts it is asked to run, optionally failing on some."""

    def __init__(self, fail_on: str | None = None, **kw):
        super().__init__(**kw)
        self.calls, self.fail_on = 0, fail_on

    def label_probs(self, batch, label_ids, shared=0):
        if self.fail_on and any(self.fail_on in self.decode(ids) for ids in batch):
            raise RuntimeError("boom")
        self.calls += len(batch)
        return super().label_probs(batch, label_ids, shared)


def records(n):
    return json.loads(DEMO.read_text())[:n]


def test_store_makes_the_second_run_free(tmp_path):
    store = ScoreStore(tmp_path / "s.sqlite")
    first, again = CountingBackend(), CountingBackend()
    a = selectit.score(records(30), backends=[first], store=store)
    b = selectit.score(records(30), backends=[again], store=store)
    assert first.calls == 120 and again.calls == 0  # 30 records x the default's 4 prompts
    np.testing.assert_array_equal(a.final, b.final)


def test_duplicates_are_scored_once_and_order_does_not_matter(tmp_path):
    store = ScoreStore(tmp_path / "s.sqlite")
    data = records(10)
    backend = CountingBackend()
    s = selectit.score(data + data[:4], backends=[backend], store=store)
    assert backend.calls == 40
    np.testing.assert_array_equal(s.final[10:], s.final[:4])
    shuffled = CountingBackend()
    t = selectit.score(data[::-1], backends=[shuffled], store=store)
    assert shuffled.calls == 0
    np.testing.assert_array_equal(t.final, s.final[:10][::-1])


def test_changing_prompts_reuses_what_still_applies(tmp_path):
    store = ScoreStore(tmp_path / "s.sqlite")
    three, five = CountingBackend(), CountingBackend()
    selectit.score(records(8), backends=[three], store=store, num_prompts=3)
    selectit.score(records(8), backends=[five], store=store, num_prompts=5)
    assert three.calls == 24 and five.calls == 16
    other = CountingBackend(name="other-model")
    selectit.score(records(8), backends=[other], store=store, num_prompts=5)
    assert other.calls == 40  # another model: nothing applies


def test_a_failing_forward_pass_hits_only_its_record(tmp_path):
    data = records(12)
    marker = data[5]["instruction"][:30]
    clean = selectit.score(data, backends=[FakeBackend()])
    store = ScoreStore(tmp_path / "s.sqlite")
    broken = selectit.score(data, backends=[CountingBackend(fail_on=marker)], store=store, batch_size=4)
    run = broken.runs[0]
    assert {i for i, _ in run.errors} == {5} and len(run.errors) == 4  # one per prompt
    assert "boom" in next(iter(run.errors.values()))
    assert np.isnan(broken.final[5])
    others = [i for i in range(12) if i != 5]
    np.testing.assert_array_equal(broken.final[others], clean.final[others])
    # failures are stored as failures, never as scores: the next run reruns only the batches that held them
    # (4 prompts x 4 rows)
    retry = CountingBackend()
    fixed = selectit.score(data, backends=[retry], store=store, batch_size=4)
    assert retry.calls == 16 and np.isfinite(fixed.final).all()


def test_nan_probabilities_are_reported_not_averaged(tmp_path):
    class NanOnSome(FakeBackend):
        def label_probs(self, batch, label_ids, shared=0):
            out = super().label_probs(batch, label_ids, shared)
            out[0] = np.nan
            return out

    s = selectit.score(records(6), backends=[NanOnSome()], batch_size=6)
    token = s.runs[0].token
    assert np.isnan(token).sum() == 4  # one per prompt batch; the others keep real scores
    some = np.isfinite(token).any(axis=1)  # records with at least one valid prompt are still scored
    np.testing.assert_array_equal(np.isfinite(s.final), some)
    assert not some.all()  # the shortest record lost every prompt here: it gets no score, not a made-up one


def _selectit(*args):
    return [sys.executable, "-m", "selectit", *map(str, args)]


def _stored(db):
    try:
        with sqlite3.connect(db, timeout=1) as c:
            return c.execute("SELECT COUNT(*) FROM probs").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_sigkill_and_resume_gives_identical_scores(tmp_path, tiny_model_dir):
    """Kill the scorer with SIGKILL at random points during scoring, several times, then let it finish:
    scores.jsonl is byte-identical to an uninterrupted run."""
    data = tmp_path / "data.json"
    data.write_text(json.dumps(records(120)))
    common = ["--model", tiny_model_dir, "--batch-size", "2", "--quiet"]
    ref = subprocess.run(_selectit("score", data, "--out", tmp_path / "ref", *common), capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    rng, kills, total = random.Random(0), 0, 600
    while True:
        proc = subprocess.Popen(_selectit("score", data, "--out", out, *common), stderr=subprocess.PIPE, text=True)
        before, deadline = _stored(out / "store.sqlite"), time.time() + 120
        while proc.poll() is None and _stored(out / "store.sqlite") <= before and time.time() < deadline:
            time.sleep(0.05)
        if proc.poll() is None and kills < 4:
            time.sleep(rng.uniform(0, 0.2))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            assert not (out / "scores.jsonl").exists()  # no half-written results
            continue
        assert proc.wait() == 0, proc.stderr.read()
        break
    assert kills >= 3 and 0 < _stored(out / "store.sqlite") <= total
    assert (out / "scores.jsonl").read_bytes() == (tmp_path / "ref" / "scores.jsonl").read_bytes()
