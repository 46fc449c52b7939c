"""The record-once layout (issue 17): one pass over the record gives its ratings' context, its response
loss and its embedding; the P rating prompts read it from the cache as later turns."""

import json

import numpy as np
import pytest

import selectit
from conftest import DEMO, score_file
from selectit.backends.base import response_ids
from selectit.backends.fake import FakeBackend
from selectit.backends.hf import HFBackend
from selectit.measures.losses import instruction_context, record_spans
from selectit.measures.record_once import turn_ids
from selectit.records import Record
from selectit.store import ScoreStore


def _records(n, start=0):
    data = json.loads(DEMO.read_text())[start : start + n]
    return [Record(id=str(i), instruction=r["instruction"], response=r["output"], raw=r) for i, r in enumerate(data)]


def _labels(tokenizer):
    return [tokenizer.convert_tokens_to_ids(d) for d in "12345"]


def test_the_shared_pass_equals_the_long_way(tiny_model, tiny_tokenizer):
    """Float32, tiny model: the record's loss equals a plain response-loss pass, each rating equals the
    record and its turn run as one sequence, the pooled state equals the loss pass's, within 1e-5."""
    backend = HFBackend(tiny_model, tiny_tokenizer, name="tiny")
    assert backend.shares_records
    records = _records(7)
    pairs = [(instruction_context(r), r.response) for r in records]
    rows = [response_ids(backend.encode_plain, c, t, 2048, backend.end_token()) for c, t in pairs]
    turns = [turn_ids(backend, p) for p in ("Rate it from 1 to 5.", "Is it correct? Reply with one digit 1-5.")]
    assert all(t[0] != tiny_tokenizer.bos_token_id for t in turns)  # a later turn: no second BOS
    from selectit.backends.pooling import positions, token_spans

    pools = [positions(token_spans(backend.encode_plain, c + t, ids, record_spans(r)))
             for (c, t), (ids, _), r in zip(pairs, rows, records)]
    losses, probs, pooled = backend.record_pass(rows, turns, _labels(tiny_tokenizer), pools)
    assert probs.shape == (7, 2, 5) and pooled.shape == (7, 32)
    long_losses, long_pooled = backend.pooled_losses(pairs, [record_spans(r) for r in records], 2048, end=True)
    long_probs = np.stack([backend.label_probs([ids + t for t in turns], _labels(tiny_tokenizer)) for ids, _ in rows])
    np.testing.assert_allclose(losses, long_losses, atol=1e-5)
    np.testing.assert_allclose(probs, long_probs, atol=1e-5)
    np.testing.assert_allclose(pooled, long_pooled, atol=1e-5)


def test_a_run_equals_the_long_way_and_shares_the_loss_with_the_default_layout(tmp_path, tiny_model_dir,
                                                                                   monkeypatch):
    data = tmp_path / "data.json"
    data.write_text(json.dumps(json.loads(DEMO.read_text())[:12]))
    common = dict(models=(str(tiny_model_dir),), num_prompts=3, batch_size=4, likelihood_weight=1.0)
    once = score_file(data, tmp_path / "once", layout="record-once", **common)
    monkeypatch.setattr(HFBackend, "shares_records", property(lambda self: False))
    score_file(data, tmp_path / "long", layout="record-once", **common)
    monkeypatch.undo()
    score_file(data, tmp_path / "first", **common)
    rows = {name: [json.loads(line) for line in (tmp_path / name / "scores.jsonl").read_text().splitlines()]
            for name in ("once", "long", "first")}
    for a, b, c in zip(rows["once"], rows["long"], rows["first"]):
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
        np.testing.assert_allclose(a["label_probs"].popitem()[1], b["label_probs"].popitem()[1], atol=1e-5)
        # the likelihood term's losses are the default layout's, taken from the record's pass
        assert a["response_loss"].popitem()[1] == pytest.approx(c["response_loss"].popitem()[1], abs=1e-5)
        assert a["blank_loss"].popitem()[1] == pytest.approx(c["blank_loss"].popitem()[1], abs=1e-5)
    tokens = {name: json.loads((tmp_path / name / "config.json").read_text())["models"][0]["tokens"]
              for name in ("once", "first")}
    assert tokens["once"] < tokens["first"]
    assert once.models[0].tokens == tokens["once"]


def test_a_rerun_computes_nothing_and_the_fake_backend_takes_the_long_way(tmp_path):
    """The fake backend has no shared pass: the long way gives the ratings of record + turn and the GIVEN
    loss; a rerun on the same store computes nothing."""
    store = ScoreStore(tmp_path / "s.sqlite")
    data = json.loads(DEMO.read_text())[:10]
    first = FakeBackend()
    a = selectit.score(data, backends=[first], store=store, layout="record-once")
    assert first.tokens_computed > 0
    again = FakeBackend()
    b = selectit.score(data, backends=[again], store=store, layout="record-once")
    assert again.tokens_computed == 0
    np.testing.assert_array_equal(a.final, b.final)
    record = Record(id="0", instruction=data[0]["instruction"], response=data[0]["output"], raw=data[0])
    ids, _ = response_ids(first.encode_plain, instruction_context(record), record.response, 1 << 20, first.end_token())
    turn = turn_ids(first, a.prompts[0])
    expected = FakeBackend().label_probs([ids + turn], a.runs[0].label_ids)[0]
    np.testing.assert_allclose(a.runs[0].probs[0, 0], expected)


def test_resume_after_a_crash_gives_the_same_scores(tmp_path, tiny_model, tiny_tokenizer):
    data = json.loads(DEMO.read_text())[:16]
    ref = selectit.score(data, backends=[HFBackend(tiny_model, tiny_tokenizer, name="tiny")], layout="record-once",
                         batch_size=4, num_prompts=3)

    class Crashing(HFBackend):
        calls = 0

        def record_pass(self, *args, **kwargs):
            Crashing.calls += 1
            if Crashing.calls == 3:
                raise KeyboardInterrupt  # not an error the long way would absorb: the run stops here
            return super().record_pass(*args, **kwargs)

    store = ScoreStore(tmp_path / "s.sqlite")
    with pytest.raises(KeyboardInterrupt):
        selectit.score(data, backends=[Crashing(tiny_model, tiny_tokenizer, name="tiny")], store=store,
                       layout="record-once", batch_size=4, num_prompts=3)
    resumed = HFBackend(tiny_model, tiny_tokenizer, name="tiny")
    again = selectit.score(data, backends=[resumed], store=store, layout="record-once", batch_size=4, num_prompts=3)
    np.testing.assert_allclose(again.final, ref.final, atol=1e-9)
    assert 0 < again.runs[0].tokens < ref.runs[0].tokens  # two batches of four were stored


def test_an_overlong_record_is_cut_flagged_and_keeps_its_own_loss(tmp_path, tiny_model_dir):
    data = tmp_path / "data.json"
    rows = json.loads(DEMO.read_text())[:4]
    rows[1] = {**rows[1], "output": "word " * 1000}
    data.write_text(json.dumps(rows))
    common = dict(models=(str(tiny_model_dir),), num_prompts=2, max_length=1000, likelihood_weight=1.0)
    score_file(data, tmp_path / "once", layout="record-once", **common)
    score_file(data, tmp_path / "first", **common)
    once, first = ([json.loads(x) for x in (tmp_path / d / "scores.jsonl").read_text().splitlines()]
                   for d in ("once", "first"))
    assert [r["truncated"].popitem()[1] for r in once] == [False, True, False, False]
    # the cut record's GIVEN loss comes from its own pass (up to --max-length), as in the default layout
    for a, b in zip(once, first):
        assert a["response_loss"].popitem()[1] == pytest.approx(b["response_loss"].popitem()[1], abs=1e-5)


def test_the_embedding_rides_on_the_record_pass(tmp_path, tiny_model_dir):
    """The record-once pass reads the loss pass's tokens: the same ALPACA embedding, without the loss pass."""
    from selectit.measures.embeddings import ALPACA

    data = tmp_path / "data.json"
    data.write_text(json.dumps(json.loads(DEMO.read_text())[:8]))
    common = dict(models=(str(tiny_model_dir),), num_prompts=2, embeddings="on")
    vectors = {}
    for layout in ("record-once", "prompt-first"):
        score_file(data, tmp_path / layout, layout=layout, **common)
        model = json.loads((tmp_path / layout / "config.json").read_text())["models"][0]
        key = model["keys"]["ratings" if layout == "record-once" else "losses"]
        store = ScoreStore(tmp_path / layout / "store.sqlite")
        found = store.load_vectors(key, ALPACA, _record_keys(data), np.float16)
        vectors[layout] = np.stack([found[k] for k in _record_keys(data)]).astype(np.float32)
    np.testing.assert_allclose(vectors["record-once"], vectors["prompt-first"], atol=2e-3)  # float16 storage


def _record_keys(path):
    from selectit.formats import from_dicts
    from selectit.store import record_key

    return [record_key(r) for r in from_dicts(json.loads(path.read_text()))]


def test_the_turn_has_no_second_system_prompt(embedded_backend):
    """SmolLM2's chat template adds a system prompt to a first turn; the rating turn after the record is a
    later turn: only the user's message and the answer cue."""
    from selectit.backends.tokenizer import encode_turn_text

    tok = embedded_backend.tokenizer
    ids = encode_turn_text(tok, "chat", "Rate it.\nThe answer is: \n")
    text = tok.decode(ids)
    assert text.startswith("<|im_start|>user\nRate it.<|im_end|>") and text.endswith("assistant\nThe answer is: ")
    assert "system" not in text


def test_the_blank_loss_pass_computes_its_shared_context_once(tiny_model, tiny_tokenizer):
    """The blank instruction's context, the same for every record, runs once per batch (cached), not once
    per row: fewer tokens, the same losses as without the prefix cache. A context shared only in part (the
    loss given each record's own instruction) is not cached, so a record's loss never depends on its
    batch's neighbours."""
    records = _records(6)
    empty = Record(id="b", instruction="", response="", raw={})
    blank = [(instruction_context(empty), r.response) for r in records]
    given = [(instruction_context(r), r.response) for r in records]
    cached = HFBackend(tiny_model, tiny_tokenizer, name="tiny")
    plain = HFBackend(tiny_model, tiny_tokenizer, name="tiny", prefix_cache=False)
    np.testing.assert_allclose(cached.response_losses(blank, 2048, end=True),
                               plain.response_losses(blank, 2048, end=True), atol=1e-5)
    starts = [response_ids(plain.encode_plain, c, t, 2048)[1] for c, t in blank]
    assert plain.tokens_computed - cached.tokens_computed == (len(records) - 1) * (min(starts) - 1)
    before = cached.tokens_computed, plain.tokens_computed
    np.testing.assert_array_equal(cached.response_losses(given, 2048, end=True),
                                  plain.response_losses(given, 2048, end=True))
    assert cached.tokens_computed - before[0] == plain.tokens_computed - before[1]


def test_the_long_way_isolates_a_record_whose_loss_fails():
    """A record whose loss pass fails is marked failed (its ratings stored as failures, no score); the
    batch's other records keep their losses and ratings."""
    from selectit.measures.record_once import _long_way, record_ids

    data = json.loads(DEMO.read_text())[:5]
    records = [Record(id=str(i), instruction=r["instruction"], response=r["output"], raw=r) for i, r in enumerate(data)]
    marker = records[2].response[:30]

    class Failing(FakeBackend):
        def response_losses(self, pairs, max_length=None, *, end=False):
            if any(marker in t for _, t in pairs):
                raise RuntimeError("boom")
            return super().response_losses(pairs, max_length, end=end)

    backend, clean = Failing(), FakeBackend()
    rows = [record_ids(backend, r, 4096, "truncate") for r in records]
    turns = [turn_ids(backend, "Rate it from 1 to 5.")]
    losses, probs, pooled, failed = _long_way(backend, records, rows, turns, [49, 50, 51, 52, 53], None, 4096)
    want, want_probs, _, _ = _long_way(clean, records, rows, turns, [49, 50, 51, 52, 53], None, 4096)
    assert list(failed) == [2] and "boom" in failed[2] and np.isnan(losses[2]) and pooled is None
    others = [0, 1, 3, 4]
    np.testing.assert_array_equal(losses[others], want[others])
    np.testing.assert_array_equal(probs, want_probs)
