"""Selection methods (issue 6): the baselines, SelectIT's single levels, response losses and their store."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import selectit
from conftest import DEMO, build_metaspace_tokenizer, build_tiny_model
from selectit.backends.fake import FakeBackend
from selectit.measures.losses import (
    ALONE, CONDITIONED, PROMPT_INPUT, REVERSE_ASK, instruction_context,
)
from selectit.cli import app
from selectit.formats import from_dicts
from selectit.records import Record
from selectit.store import ScoreStore

PAIRS = [
    ("Instruction: Give three tips.\nResponse:", " Eat well, sleep, exercise."),
    ("What is the capital of France?", " Paris is the capital of France. 12345"),
    ("", "The quick brown fox jumps over the lazy dog."),
    ("Rate the response on a scale of 1 to 5.", " 3"),
    ("", "x"),  # one token, nothing before it: no token to score
]


def records(n):
    return json.loads(DEMO.read_text())[:n]


def loop_losses(model, tokenizer, pairs, max_length=10_000, end=False):
    """The plain reference: one record at a time, the model's own loss with the context masked out
    (with ``end``, the EOS token after the response is a label too, as SFT trains it, when it fits)."""
    import torch

    out = []
    for context, response in pairs:
        ids = tokenizer(context + response)["input_ids"]
        head = tokenizer(context)["input_ids"]
        start = next((k for k, (a, b) in enumerate(zip(ids, head)) if a != b), min(len(ids), len(head)))
        if end and len(ids) < max_length:
            ids = ids + [tokenizer.eos_token_id]
        ids = ids[:max_length]
        labels = torch.tensor([ids])
        labels[0, :start] = -100
        if (labels[0, 1:] != -100).sum() == 0:
            out.append(float("nan"))
            continue
        with torch.no_grad():
            out.append(float(model(input_ids=torch.tensor([ids]), labels=labels).loss))
    return np.array(out)


@pytest.mark.parametrize("kind", ["byte-level", "metaspace-with-bos"])
@pytest.mark.parametrize("max_length", [None, 12])
@pytest.mark.parametrize("end", [False, True])
@pytest.mark.parametrize("packed", [True, False])
def test_hf_response_losses_match_a_plain_loop(kind, max_length, end, packed, tiny_model, tiny_tokenizer):
    from selectit.backends.hf import HFBackend

    if kind == "byte-level":
        model, tok = tiny_model, tiny_tokenizer
    else:
        tok = build_metaspace_tokenizer()
        model = build_tiny_model(len(tok), seed=1)
    backend = HFBackend(model, tok, name="tiny", packed=packed)
    batched = backend.response_losses(PAIRS, max_length, end=end)
    expected = loop_losses(model, tok, PAIRS, max_length or 10_000, end=end)
    assert batched.shape == (len(PAIRS),) and batched.dtype == np.float64
    np.testing.assert_allclose(batched, expected, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert np.isfinite(batched[:4]).all()
    # Batch neighbours and padding do not change a row's loss.
    one_by_one = np.concatenate([backend.response_losses([p], max_length, end=end) for p in PAIRS])
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_hf_response_losses_tell_context_from_none(tiny_model, tiny_tokenizer):
    from selectit.backends.hf import HFBackend

    backend = HFBackend(tiny_model, tiny_tokenizer, name="tiny")
    given, alone = backend.response_losses([PAIRS[1], ("", PAIRS[1][1])])
    assert given != pytest.approx(alone)


class CountingBackend(FakeBackend):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.loss_rows = 0

    def response_losses(self, pairs, max_length=None, **kw):
        self.loss_rows += len(pairs)
        return super().response_losses(pairs, max_length, **kw)


def test_random_is_seeded():
    data = records(50)
    a = selectit.score(data, method="random", seed=1, backend="fake")
    b = selectit.score(data, method="random", seed=1, backend="fake")
    c = selectit.score(data, method="random", seed=2, backend="fake")
    np.testing.assert_array_equal(a.final, b.final)
    assert not np.array_equal(a.final, c.final)
    np.testing.assert_array_equal(a.final, np.random.default_rng(1).random(50))


def test_length_is_response_characters():
    data = records(20)
    s = selectit.score(data, method="length", backend="fake")
    np.testing.assert_array_equal(s.final, [len(r["output"]) for r in data])


def test_perplexity_and_ifd_follow_their_definitions():
    data = records(40)
    fake = FakeBackend()
    recs = from_dicts(data)
    given = fake.response_losses([(instruction_context(r), r.response) for r in recs])
    alone = fake.response_losses([("", r.response) for r in recs])
    ppl = selectit.score(data, method="perplexity", backends=[fake])
    np.testing.assert_allclose(ppl.final, -given)  # lowest perplexity ranks first
    np.testing.assert_allclose(ppl.columns["perplexity"], np.exp(given))
    ifd = selectit.score(data, method="ifd", backends=[fake])
    ratio = given / alone
    np.testing.assert_allclose(ifd.columns["ifd"], ratio)
    np.testing.assert_allclose(ifd.final, np.where(ratio <= 1, ratio, np.nan))  # IFD > 1 is dropped
    assert int(np.isnan(ifd.final).sum()) == int((ratio > 1).sum())


def test_rifd_follows_its_definition():
    """r-IFD (Li et al. 2024, Selective Reflection-Tuning): loss(instruction | response) / loss(instruction
    alone), the instruction predicted after their prompt that shows the response; the lowest ranks first,
    r-IFD >= 1 is dropped."""
    data = records(40)
    fake = FakeBackend()
    recs = from_dicts(data)
    ask = [PROMPT_INPUT.split("### Instruction")[0].replace(", paired with an input that provides further context", "")
           + f"### Instruction:\n{REVERSE_ASK.format(response=r.response)}\n\n### Response:" for r in recs]
    given = fake.response_losses([(a, r.instruction) for a, r in zip(ask, recs)])
    alone = fake.response_losses([("", r.instruction) for r in recs])
    s = selectit.score(data, method="rifd", backends=[fake])
    ratio = given / alone
    np.testing.assert_allclose(s.columns["rifd"], ratio)
    np.testing.assert_allclose(s.final, np.where(ratio < 1, -ratio, np.nan))
    assert s.columns["loss_reversed"].shape == (40,) and np.isfinite(s.columns["loss_instruction"]).all()

    class Harder(FakeBackend):  # the response context makes every instruction token twice as costly
        def response_losses(self, pairs, max_length=None, **kw):
            return super().response_losses(pairs, max_length, **kw) * [2.0 if c else 1.0 for c, _ in pairs]

    hard = selectit.score(data, method="rifd", backends=[Harder()])
    np.testing.assert_allclose(hard.columns["rifd"], 2 * ratio)
    assert np.isnan(hard.final[2 * ratio >= 1]).all() and np.isfinite(hard.final[2 * ratio < 1]).all()
    assert 0 < int((2 * ratio >= 1).sum()) < len(data)


def test_alpaca_input_fills_the_input_section():
    with_input = Record(id=0, instruction="Sum these.\n1 2", response="3",
                        raw={"instruction": "Sum these.", "input": "1 2", "output": "3"})
    assert instruction_context(with_input) == PROMPT_INPUT.format(instruction="Sum these.", input="1 2")
    plain = Record(id=1, instruction="Say hi.", response="hi", raw={"instruction": "Say hi.", "input": ""})
    assert instruction_context(plain).endswith("### Instruction:\nSay hi.\n\n### Response:")


def test_losses_are_stored_and_shared_by_perplexity_and_ifd(tmp_path):
    store = ScoreStore(tmp_path / "s.sqlite")
    data = records(30) + records(5)  # duplicates run once
    first = CountingBackend()
    a = selectit.score(data, method="ifd", backends=[first], store=store)
    assert first.loss_rows == 60
    again = CountingBackend()
    b = selectit.score(data, method="ifd", backends=[again], store=store)
    assert again.loss_rows == 0
    np.testing.assert_array_equal(a.final, b.final)
    ppl = CountingBackend()
    selectit.score(data, method="perplexity", backends=[ppl], store=store)
    assert ppl.loss_rows == 0
    rows = store.db.execute("SELECT kind, COUNT(*) FROM losses GROUP BY kind").fetchall()
    assert dict(rows) == {CONDITIONED: 30, ALONE: 30}
    assert store.count() == 0  # the label-probability table is untouched


def test_selectit_levels():
    data = records(25)
    small, big = FakeBackend(name="a", num_parameters=1), FakeBackend(name="b", num_parameters=3)
    full = selectit.score(data, backends=[small, big])
    token = selectit.score(data, backends=[small, big], method="token")
    sentence = selectit.score(data, backends=[small, big], method="sentence")
    model = selectit.score(data, backends=[small, big], method="model")
    np.testing.assert_allclose(token.final, full.runs[0].token[:, 0])
    np.testing.assert_allclose(sentence.final, full.runs[0].sentence)
    np.testing.assert_allclose(model.final, 0.25 * full.runs[0].token[:, 0] + 0.75 * full.runs[1].token[:, 0])
    assert not np.allclose(full.final, token.final)


def test_cli_method_columns_and_config(tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", str(DEMO), "--out", str(out), "--backend", "fake", "--method", "ifd",
                                 "--quiet", "--fraction", "0.1"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == cfg["config"]["method"]["method"] == "ifd" and cfg["models"][0]["name"] == "fake"
    rows = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    assert {"id", "score", "token_scores", "sentence_scores", "label_mass", "loss", "loss_alone", "ifd"} <= set(rows[0])
    kept = [x for x in rows if x["score"] is not None]
    assert all(x["score"] == x["ifd"] <= 1 for x in kept)
    assert len(json.loads((out / "selected.json").read_text())) == 20


@pytest.mark.parametrize("args, message", [
    (["--method", "best"], "--method must be one of selectit, paper, reference, token"),
    (["--method", "ifd", "--model", "a,b"], "--method ifd uses one model; got 2"),
])
def test_cli_method_errors(tmp_path, args, message):
    r = CliRunner().invoke(app, ["score", str(DEMO), "--out", str(tmp_path / "x"), "--backend", "fake", *args])
    assert r.exit_code == 2
    assert message in r.output and "Traceback" not in r.output
