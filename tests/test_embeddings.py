"""Record embeddings (issue 16): pooled over the right tokens (compared with a plain forward of the tiny
model, token positions found independently from the tokenizer's character offsets), from passes that
run anyway (losses unchanged), stored as float16 and reused on rerun, and the same on Ray as locally."""

import json
import sqlite3

import numpy as np
import pytest

from conftest import DEMO, score_file
from selectit.backends.hf import HFBackend
from selectit.config import SelectOptions
from selectit.jobs import select_run
from selectit.measures.losses import instruction_context, record_spans
from selectit.prompts import rating_spans, rating_text
from selectit.records import Record

RAW = [{"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well, sleep, exercise."},
       {"instruction": "What is the capital of France?", "input": "Answer briefly.", "output": "Paris."},
       {"instruction": "Rate the quick brown fox.", "input": "", "output": "The fox jumps over the lazy dog. 12345"}]


def records():
    return [Record(id=i, instruction=r["instruction"] + (f"\n{r['input']}" if r["input"] else ""),
                   response=r["output"], raw=r) for i, r in enumerate(RAW)]


def reference(model, tokenizer, text, spans, extra=()):
    """The mean last hidden state of a plain forward over ``text`` (then ``extra`` ids), at the tokens lying
    inside the character ``spans`` (by the tokenizer's offsets)."""
    import torch

    enc = tokenizer(text, return_offsets_mapping=True)
    ids = enc["input_ids"] + list(extra)
    inside = [t for t, (a, b) in enumerate(enc["offset_mapping"]) if b > a and any(s <= a and b <= e for s, e in spans)]
    with torch.no_grad():
        hidden = model.model(torch.tensor([ids])).last_hidden_state[0].double()
    return hidden[inside].mean(0).numpy(), len(inside)


@pytest.mark.parametrize("packed", [True, False])
def test_loss_pass_pools_the_records_own_tokens(tiny_model, tiny_tokenizer, packed):
    backend = HFBackend(tiny_model, tiny_tokenizer, name="tiny", packed=packed)
    recs = records()
    pairs = [(instruction_context(r), r.response) for r in recs]
    spans = [record_spans(r) for r in recs]
    losses, pooled = backend.pooled_losses(pairs, spans, end=True)
    assert np.array_equal(losses, backend.response_losses(pairs, end=True))  # the same pass, the same losses
    assert pooled.shape == (3, 32) and pooled.dtype == np.float32
    for (context, response), s, got in zip(pairs, spans, pooled):
        want, count = reference(tiny_model, tiny_tokenizer, context + response, s, [tiny_tokenizer.eos_token_id])
        assert count > 5
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("packed", [True, False])
def test_rating_pass_pools_the_record_inside_the_template_with_a_cached_prefix(tiny_model, tiny_tokenizer, packed):
    from selectit.backends.pooling import token_spans
    from selectit.plan import common_prefix_len

    backend = HFBackend(tiny_model, tiny_tokenizer, name="tiny", packed=packed)
    prompt = "Rate the response on a scale of 1 to 5."
    recs = records()
    recs.append(Record(id=3, instruction="Give three tips for sleeping.", response="Dark room.", raw={}))  # a shared start
    texts = [rating_text(prompt, r) for r in recs]
    rows = [backend.encode(t) for t in texts]
    labels = [tiny_tokenizer.convert_tokens_to_ids(str(k)) for k in range(1, 6)]
    for group in ([0, 1, 2, 3], [0, 3]):  # [0, 3]: the cached prefix reaches into the instruction
        batch = [rows[i] for i in group]
        shared = min(common_prefix_len(batch), min(len(r) for r in batch) - 1)
        spans = [token_spans(backend.encode, texts[i], rows[i], rating_spans(prompt, recs[i])) for i in group]
        spans[-1] = None  # a row that is not pooled
        probs, pooled = backend.pooled_label_probs(batch, labels, shared, spans)
        np.testing.assert_allclose(probs, backend.label_probs(batch, labels, shared), rtol=1e-6, atol=1e-12)
        assert np.isnan(pooled[-1]).all()
        for k, i in enumerate(group[:-1]):
            want, count = reference(tiny_model, tiny_tokenizer, texts[i], rating_spans(prompt, recs[i]))
            assert count > 3 and (group != [0, 3] or spans[k][0][0] < shared)
            np.testing.assert_allclose(pooled[k], want, rtol=1e-5, atol=1e-5)


def _vectors(run_dir):
    with sqlite3.connect(run_dir / "store.sqlite") as db:
        return sorted(db.execute("SELECT kind, record, data FROM vectors"))


def _losses(run_dir):
    with sqlite3.connect(run_dir / "store.sqlite") as db:
        return sorted(db.execute("SELECT kind, record, loss FROM losses"))


def test_embeddings_are_stored_once_and_reused(tmp_path, tiny_model_dir):
    data = tmp_path / "demo12.json"
    data.write_text(json.dumps(json.loads(DEMO.read_text())[:12]))
    opts = dict(models=(str(tiny_model_dir),), num_prompts=2, batch_size=4)
    score_file(data, tmp_path / "off", embeddings="off", **opts)
    score_file(data, tmp_path / "auto", **opts)
    assert _losses(tmp_path / "off") == _losses(tmp_path / "auto")  # pooling leaves the losses as they were
    assert (tmp_path / "off" / "scores.jsonl").read_bytes() == (tmp_path / "auto" / "scores.jsonl").read_bytes()
    stored = _vectors(tmp_path / "auto")
    assert _vectors(tmp_path / "off") == [] and len(stored) == 12
    assert {k for k, _, _ in stored} == {"embedding:alpaca"} and {len(v) for _, _, v in stored} == {32 * 2}  # float16
    scored = score_file(data, tmp_path / "auto", **opts)  # a rerun: nothing to compute, no model loaded
    assert scored.models[0].tokens == 0 and _vectors(tmp_path / "auto") == stored
    # the off run's store lacks only the embeddings: they alone are computed, the losses stay
    scored = score_file(data, tmp_path / "off", **opts)
    assert scored.models[0].tokens > 0 and _vectors(tmp_path / "off") == stored
    assert _losses(tmp_path / "off") == _losses(tmp_path / "auto")
    # another method riding on the same pass finds them stored
    score_file(data, tmp_path / "auto", method="perplexity", **opts)
    assert _vectors(tmp_path / "auto") == stored


def test_paper_pools_in_the_first_rating_pass_and_selects_with_them(tmp_path):
    data = tmp_path / "demo.json"
    data.write_text(json.dumps(json.loads(DEMO.read_text())[:30]))
    score_file(data, tmp_path / "paper", backend="fake", method="paper")
    kinds = {k for k, _, _ in _vectors(tmp_path / "paper")}
    assert len(kinds) == 1 and next(iter(kinds)).startswith("embedding:rating:")
    sel = select_run(tmp_path / "paper", fraction=0.5, options=SelectOptions(diversity=0.5))
    assert 0 < len(sel.indices) <= 15 and sel.steps["diversity"]["walked"] >= len(sel.indices)


def test_config_json_says_where_the_embeddings_are_and_selection_reads_only_that(tmp_path):
    """Selection no longer replays the method (configure + engine) to find the embeddings: config.json
    names their store key and kind, a rescore keeps them, and a run that made none, or a config.json
    from before the field, is one line saying what to do."""
    from selectit.errors import ConfigError
    from selectit.jobs import rescore_run
    from selectit.rundir import read_config, write_config

    data = tmp_path / "demo.json"
    data.write_text(json.dumps(json.loads(DEMO.read_text())[:30]))
    score_file(data, tmp_path / "paper", backend="fake", method="paper")
    found = read_config(tmp_path / "paper")["embeddings"]
    assert found["model"] == "fake" and found["kind"] == _vectors(tmp_path / "paper")[0][0]
    assert found["key"] == read_config(tmp_path / "paper")["models"][0]["keys"]["ratings"]
    rescore_run(tmp_path / "paper", {"alpha": 0.5})  # scores change, what was measured does not
    assert read_config(tmp_path / "paper")["embeddings"] == found
    assert select_run(tmp_path / "paper", fraction=0.5, options=SelectOptions(diversity=0.5)).indices.size
    score_file(data, tmp_path / "none", backend="fake", method="paper", embeddings="off")
    assert read_config(tmp_path / "none")["embeddings"] is None
    with pytest.raises(ConfigError, match="this run made none .*--embeddings off.*score it with --embeddings on"):
        select_run(tmp_path / "none", fraction=0.5, options=SelectOptions(diversity=0.5))
    cfg = read_config(tmp_path / "paper")
    del cfg["embeddings"]  # as written before the field
    write_config(tmp_path / "paper", cfg)
    with pytest.raises(ConfigError, match="does not say where they are stored: score it again"):
        select_run(tmp_path / "paper", fraction=0.5, options=SelectOptions(diversity=0.5))


def test_embeddings_on_refuses_a_backend_without_hidden_states(tmp_path):
    from selectit.errors import ConfigError
    from selectit.measures import Losses, embedding_measure
    from selectit.measures.losses import GIVEN

    with pytest.raises(ConfigError, match="gives no hidden states"):
        embedding_measure([Losses(GIVEN)], mode="on", backend="vllm", layout="prompt-first")
    assert embedding_measure([Losses(GIVEN)], mode="auto", backend="llamacpp", layout="prompt-first") is None
    assert embedding_measure([], mode="auto", backend="hf", layout="prompt-first") is None
    assert embedding_measure([], mode="on", backend="hf", layout="prompt-first").describe().endswith("loss pass)")


def test_ray_equals_local(tmp_path, tiny_model_dir):
    ray = pytest.importorskip("ray")
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(o) + "\n" for o in json.loads(DEMO.read_text())[:20]))
    opts = dict(models=(str(tiny_model_dir),), num_prompts=2, batch_size=4, chunk_size=8)
    score_file(data, tmp_path / "local", **opts)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        score_file(data, tmp_path / "ray", runner="ray", workers=2, **opts)
    finally:
        ray.shutdown()
    assert _vectors(tmp_path / "ray") == _vectors(tmp_path / "local") and len(_vectors(tmp_path / "local")) == 20
    picked = [select_run(tmp_path / d, fraction=0.5, options=SelectOptions(diversity=0.001)).indices.tolist()
              for d in ("local", "ray")]
    assert picked[0] == picked[1]
