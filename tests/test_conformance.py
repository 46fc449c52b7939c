"""Conformance: one contract run over every backend, every format and every method.

- Backends (fake, hf on the tiny model, llama.cpp on the embedded GGUF where installed, vLLM on the
  stand-in engine): the whole protocol, shapes, float64, bounds, batch invariance, NaN for a row with
  nothing to score, and the same tokens (or close numbers) as the hf backend.
- Formats: every container written back unchanged when every record is selected in input order.
- Methods: each streams (chunked == whole file, byte for byte), resumes after SIGKILL, and rescoring
  a run gives what scoring gives. (Ray == local for every method: tests/test_ray.py.)
"""

import gzip
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import selectit
from conftest import DEMO, ROOT, score_file
from selectit.backends.base import MEMBERS
from selectit.backends.fake import FakeBackend
from selectit.formats import from_dicts
from selectit.jobs import rescore_run
from selectit.labels import resolve_label_ids
from selectit.methods import METHODS
from selectit.prompts import choose_prompts, rating_text, read_prompts

PAIRS = [("Instruction: add 2 and 2\n### Response:", " 4"), ("", "just some text here"),
         ("What is the capital of France?", " Paris."), ("context", "")]


def _hf(tiny_model, tiny_tokenizer):
    from selectit.backends.hf import HFBackend

    return HFBackend(tiny_model, tiny_tokenizer, name="tiny")


def _vllm(tiny_tokenizer):
    from test_backend_vllm import stand_in_backend

    return stand_in_backend(tiny_tokenizer, exact=True)[0]


def _llamacpp():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from selectit.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend.load(None, max_length=2048)


@pytest.fixture(scope="module")
def llamacpp():
    return _llamacpp()


@pytest.fixture(params=["fake", "hf", "llamacpp", "vllm-stand-in"])
def backend(request, tiny_model, tiny_tokenizer):
    return {"fake": lambda: FakeBackend(), "hf": lambda: _hf(tiny_model, tiny_tokenizer),
            "llamacpp": lambda: request.getfixturevalue("llamacpp"),
            "vllm-stand-in": lambda: _vllm(tiny_tokenizer)}[request.param]()


def _rows(backend, records, prompts):
    return [backend.encode(rating_text(p, r)) for r in records for p in prompts]


def test_backend_implements_the_whole_protocol(backend, alpaca_records):
    assert all(hasattr(backend, m) for m in MEMBERS)
    assert backend.template in ("plain", "chat") and backend.max_length > 16 and backend.num_parameters > 0
    assert isinstance(backend.fingerprint, dict) and isinstance(backend.end_token(), int)
    records = from_dicts(alpaca_records[:3])
    prompts = choose_prompts(read_prompts(), 2, 5)
    text = rating_text(prompts[0], records[0])
    labels = resolve_label_ids(lambda s: backend.encode(text, s), backend.decode, list("12345"), context=text)
    rows = _rows(backend, records, prompts)
    before = backend.tokens_computed
    probs = backend.label_probs(rows, labels)
    assert backend.tokens_computed > before
    assert probs.shape == (6, 5) and probs.dtype == np.float64
    assert np.all(probs >= 0) and np.all(probs.sum(axis=1) <= 1 + 1e-9)
    one_by_one = np.concatenate([backend.label_probs([r], labels) for r in rows])
    np.testing.assert_allclose(probs, one_by_one, rtol=1e-4, atol=1e-7)  # batch invariance


def test_backend_response_losses(backend):
    losses = backend.response_losses(PAIRS)
    assert losses.shape == (4,) and losses.dtype == np.float64
    assert np.all(losses[:3] > 0) and np.isnan(losses[3])  # nothing to score: NaN, never 0
    ended = backend.response_losses(PAIRS, end=True)
    assert np.isfinite(ended[3])  # the end token is a target of its own
    one_by_one = np.concatenate([backend.response_losses([p]) for p in PAIRS])
    np.testing.assert_allclose(losses, one_by_one, rtol=1e-4, equal_nan=True)


def test_backends_that_read_transformers_tokenizers_share_hf_tokens(tiny_model, tiny_tokenizer):
    hf, vllm = _hf(tiny_model, tiny_tokenizer), _vllm(tiny_tokenizer)
    for text in ("Rate this: 3", "Instruction:x\nResponse:y\nThe answer is: \n"):
        assert vllm.encode(text) == hf.encode(text) and vllm.encode_plain(text) == hf.encode_plain(text)
    assert vllm.end_token() == hf.end_token()


@pytest.mark.embedded
def test_llamacpp_is_close_to_hf_on_the_same_weights(llamacpp, embedded_backend):
    np.testing.assert_allclose(llamacpp.response_losses(PAIRS[:3]), embedded_backend.response_losses(PAIRS[:3]),
                               rtol=0.05)


# ---------------------------------------------------------------- formats

def _write(container: str, path, data):
    if container == "json":
        path.write_text(json.dumps(data, indent=2))
    elif container == "jsonl":
        path.write_text("".join(json.dumps(o) + "\r\n" for o in data))  # CRLF survives too
    elif container == "jsonl.gz":
        path.write_bytes(gzip.compress("".join(json.dumps(o) + "\n" for o in data).encode()))
    else:
        pa = pytest.importorskip("pyarrow")
        table = pa.Table.from_pylist(data)
        if container == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, path)
        elif container == "csv":
            import pyarrow.csv as pcsv

            pcsv.write_csv(table, path)
        else:
            pytest.importorskip("datasets").Dataset.from_list(data).save_to_disk(str(path))


def _read(container: str, path):
    from selectit import formats

    return [r.raw for r in formats.read(path).records]


@pytest.mark.parametrize("container,name", [("json", "d.json"), ("jsonl", "d.jsonl"), ("jsonl.gz", "d.jsonl.gz"),
                                            ("parquet", "d.parquet"), ("csv", "d.csv"), ("hf", "d_ds")])
def test_every_format_round_trips(tmp_path, container, name):
    """Score (fake), select every record in input order: the records come back unchanged (the bytes
    for JSON, JSON Lines and their compressed forms; the values for the columnar containers)."""
    data = json.loads(DEMO.read_text())[:9]
    src = tmp_path / name
    _write(container, src, data)
    score_file(src, tmp_path / "run", backend="fake", num_prompts=2, chunk_size=4)
    from selectit.jobs import select_run

    sel = select_run(tmp_path / "run", fraction=1.0, keep_order=True)
    if container in ("json", "jsonl", "jsonl.gz"):
        raw = gzip.decompress(src.read_bytes()) if container.endswith(".gz") else src.read_bytes()
        out = gzip.decompress(sel.output.read_bytes()) if container.endswith(".gz") else sel.output.read_bytes()
        assert out.rstrip(b"\n") == raw.rstrip(b"\n")
    else:
        assert _read(container, sel.output) == _read(container, src)


# ---------------------------------------------------------------- methods

ALL = list(METHODS)


def _data(tmp_path, n=30):
    path = tmp_path / "data.jsonl"
    rows = json.loads(DEMO.read_text())[:n]
    path.write_text("".join(json.dumps(o) + "\n" for o in rows + rows[:3]))  # duplicates too
    return path


@pytest.mark.parametrize("method", ALL)
def test_every_method_streams(tmp_path, method):
    """Chunks of 7 records give the scores.jsonl of one chunk, byte for byte."""
    data = _data(tmp_path)
    score_file(data, tmp_path / "whole", backend="fake", method=method, num_prompts=3)
    score_file(data, tmp_path / "chunked", backend="fake", method=method, num_prompts=3, chunk_size=7)
    whole = (tmp_path / "whole" / "scores.jsonl").read_bytes()
    assert whole == (tmp_path / "chunked" / "scores.jsonl").read_bytes() and len(whole.splitlines()) == 33


@pytest.mark.parametrize("method", ALL)
def test_rescore_equals_score(tmp_path, method):
    """A run of the default method rescored as ``method`` (from its stored measurements, no model)
    equals scoring with ``method``; what the default run lacks is added by scoring once more with
    ``method`` into the same run directory, and rescoring then finds it."""
    data = _data(tmp_path)
    direct = tmp_path / "direct"
    score_file(data, direct, backend="fake", method=method, num_prompts=3)
    run = tmp_path / "run"
    score_file(data, run, backend="fake", num_prompts=3)
    needs = METHODS[method].needs(*_config(method), ["p"])
    if any(type(m).__name__ == "Losses" and m.kind not in _default_kinds() for m in needs):
        with pytest.raises(selectit.ConfigError, match="has no losses"):
            rescore_run(run, {"method": method})
        score_file(data, run, backend="fake", method=method, num_prompts=3)  # adds the missing measurement
        score_file(data, run, backend="fake", num_prompts=3)
    rescore_run(run, {"method": method})  # paper, reference: 'plain' is what 'auto' was for the fake model
    assert (run / "scores.jsonl").read_bytes() == (direct / "scores.jsonl").read_bytes()


def _config(method):
    from selectit.methods import configure

    return configure({"method": method, "backend": "fake"})[:1]


def _default_kinds():
    """The loss kinds the default method measures (the likelihood term's two, and the end loss)."""
    from selectit.measures.losses import END_LOSS, GIVEN, GIVEN_BLANK

    return {GIVEN, GIVEN_BLANK, END_LOSS}


SLOW_RUN = """
import sys, time, numpy as np
import selectit
from selectit.backends.fake import FakeBackend
from selectit.store import ScoreStore

class Slow(FakeBackend):
    def label_probs(self, batch, label_ids, shared=0):
        time.sleep(0.03)
        return super().label_probs(batch, label_ids, shared)
    def response_losses(self, pairs, max_length=None, **kw):
        time.sleep(0.03)
        return super().response_losses(pairs, max_length, **kw)

import json
records = json.loads(open(sys.argv[1]).read())
scores = selectit.score(records, method=sys.argv[2], backends=[Slow()], store=ScoreStore(sys.argv[3]),
                        batch_size=2, num_prompts=3)
np.save(sys.argv[4], scores.final)
"""


def _stored(db) -> int:
    import sqlite3

    try:
        with sqlite3.connect(db, timeout=1) as c:
            return sum(c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("probs", "losses"))
    except sqlite3.Error:
        return 0


@pytest.mark.parametrize("method", [m for m in ALL if METHODS[m].models != "none"])
def test_every_method_resumes_after_sigkill(tmp_path, method):
    """Killed (SIGKILL) while measuring, then run again: the same scores as a run never killed, and the
    second run did not start over (what the first had stored was kept)."""
    records = json.loads(DEMO.read_text())[:24]
    data = tmp_path / "data.json"
    data.write_text(json.dumps(records))
    script = tmp_path / "slow.py"
    script.write_text(SLOW_RUN)
    store, out = tmp_path / "store.sqlite", tmp_path / "final.npy"
    cmd = [sys.executable, str(script), str(data), method, str(store), str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.time() + 120
    while proc.poll() is None and _stored(store) < 4 and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = _stored(store)
    assert kept >= 4 and not out.exists()
    assert subprocess.run(cmd, env=env, timeout=300).returncode == 0
    clean = selectit.score(records, method=method, backends=[FakeBackend()], batch_size=2, num_prompts=3)
    np.testing.assert_array_equal(np.load(out), clean.final)


@pytest.mark.parametrize("prompts", [1, 3, 4])
def test_rescore_with_fewer_prompts_equals_scoring_with_them(tmp_path, tiny_model_dir, prompts):
    """Issue 27: `rescore --num-prompts P` down from a stored 5-prompt default run is the run scored with P
    prompts (the tiny model, float32: every row's numbers within 1e-5, the same columns)."""
    import json

    data = tmp_path / "data.json"
    data.write_text(json.dumps(json.loads(DEMO.read_text())[:8]))
    model = str(tiny_model_dir)
    score_file(data, tmp_path / "direct", models=(model,), num_prompts=prompts, dtype="float32")
    score_file(data, tmp_path / "run", models=(model,), num_prompts=5, dtype="float32")
    rescore_run(tmp_path / "run", {"num_prompts": prompts})
    rows = lambda d: [json.loads(x) for x in (tmp_path / d / "scores.jsonl").read_text().splitlines()]  # noqa: E731
    for a, b in zip(rows("run"), rows("direct"), strict=True):
        assert list(a) == list(b)
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
        (name,) = a["token_scores"]
        assert len(a["token_scores"][name]) == prompts
        np.testing.assert_allclose(a["token_scores"][name], b["token_scores"][name], atol=1e-5)
        assert a["end_loss"][name] == pytest.approx(b["end_loss"][name], abs=1e-5)
