"""Scoring end to end in Python: records -> three levels -> selection, with fake and tiny models."""

import numpy as np
import pytest

import selectit
from selectit.backends.fake import FakeBackend
from selectit.backends.hf import HFBackend
from selectit.methods import PAPER
from selectit.errors import ConfigError


def test_api_scores_and_selects(alpaca_records):
    scores = selectit.score(alpaca_records[:20], backends=[FakeBackend()])
    assert scores.final.shape == (20,)
    best = selectit.select(scores, fraction=0.2)
    assert len(best) == 4 and scores.final[best[0]] == scores.final.max()
    assert selectit.select(scores.final, top=3).tolist() == best[:3].tolist()


def test_scores_do_not_depend_on_order_or_neighbours(alpaca_records):
    records = alpaca_records[:12]
    a = selectit.score(records, backends=[FakeBackend()]).final
    b = selectit.score(records[::-1], backends=[FakeBackend()]).final
    np.testing.assert_array_equal(a, b[::-1])


def test_model_level_weights_by_parameter_count(alpaca_records):
    small, big = FakeBackend(name="s", num_parameters=1), FakeBackend(name="b", num_parameters=3)
    scores = selectit.score(alpaca_records[:5], backends=[small, big])
    np.testing.assert_allclose(scores.weights, [0.25, 0.75])
    expected = 0.25 * scores.runs[0].sentence + 0.75 * scores.runs[1].sentence
    np.testing.assert_allclose(scores.final, expected)
    same = selectit.score(alpaca_records[:5], backends=[FakeBackend(), FakeBackend()])
    assert [r.name for r in same.runs] == ["fake", "fake#2"]


def test_reference_mode_differs_from_paper(alpaca_records):
    paper = selectit.score(alpaca_records[:8], backends=[FakeBackend()], method="paper")
    # --method paper is the selectit method with the published settings and the published P = 5
    np.testing.assert_array_equal(paper.final, selectit.score(alpaca_records[:8], backends=[FakeBackend()],
                                                              **PAPER, num_prompts=5).final)
    assert paper.config.measure.num_prompts == 5 and len(paper.runs[0].probs[0]) == 5
    ref = selectit.score(alpaca_records[:8], backends=[FakeBackend()], method="reference")
    assert ref.final.max() < paper.final.max()
    assert ref.final.max() <= 5 * (np.e - 1) / (np.e + 4) + 1e-12  # softmax squashes every score
    # the authors' scripts rate with the published method: the tool's own defaults do not mix with them
    with pytest.raises(ConfigError, match="reference.*uses the published method; drop --rating expected"):
        selectit.score(alpaca_records[:8], backends=[FakeBackend()], method="reference", rating="expected")


def test_weight_override_and_errors(alpaca_records):
    two = [FakeBackend(name="a"), FakeBackend(name="b")]
    s = selectit.score(alpaca_records[:3], backends=two, models=("a", "b"), model_weights=(1, 1))
    np.testing.assert_allclose(s.weights, [0.5, 0.5])
    with pytest.raises(ConfigError, match="exactly 1 or 3"):
        selectit.score(alpaca_records[:3], backends=two, method="reference")
    with pytest.raises(ConfigError, match="num-prompts"):
        selectit.score(alpaca_records[:3], backends=[FakeBackend()], num_prompts=9)


def test_chat_template_mode(tiny_model, tiny_tokenizer, alpaca_records):
    with pytest.raises(ConfigError, match="no chat template"):
        HFBackend(tiny_model, tiny_tokenizer, name="tiny", template="chat")


def test_auto_template_is_chat_where_the_model_has_one(tiny_model, tiny_tokenizer):
    import copy

    plain = HFBackend(tiny_model, tiny_tokenizer, name="tiny", template="auto")
    assert plain.template == "plain" and plain.fingerprint["template"] == "plain"
    assert plain.encode("x\n\nInstruction:a\nResponse:b\nThe answer is: \n") == \
        HFBackend(tiny_model, tiny_tokenizer, name="tiny", template="plain").encode(
            "x\n\nInstruction:a\nResponse:b\nThe answer is: \n")
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    chat = HFBackend(tiny_model, tok, name="tiny", template="auto")
    assert chat.template == "chat" and chat.fingerprint["template"] == "chat"


@pytest.mark.embedded
def test_chat_template_puts_more_mass_on_labels(embedded_backend, alpaca_records):
    """SmolLM2 with its chat template puts most of its mass on the digits (SPEC 5)."""
    chat = HFBackend(embedded_backend.model, embedded_backend.tokenizer, name="chat", template="chat")
    plain = selectit.score(alpaca_records[:2], backends=[embedded_backend], num_prompts=2)
    inchat = selectit.score(alpaca_records[:2], backends=[chat], num_prompts=2, template="chat")
    assert inchat.runs[0].label_mass.mean() > plain.runs[0].label_mass.mean()
    assert inchat.runs[0].label_mass.mean() > 0.8


def test_rating_options_change_only_the_math(alpaca_records):
    """--rating, --calibrate and --prompt-weights reuse the same label probabilities; calibration adds
    the content-free inputs once per prompt, not per record."""
    from selectit.methods import METHODS

    levels = METHODS["selectit"].levels
    records = alpaca_records[:10]
    base = selectit.score(records, backends=[FakeBackend()], **PAPER)
    for opts in (dict(rating="expected"), dict(calibrate=True), dict(prompt_weights="mass"),
                 dict(calibrate=True, rating="expected", prompt_weights="mass")):
        s = selectit.score(records, backends=[FakeBackend()], **{**PAPER, **opts})
        run = s.runs[0]
        np.testing.assert_array_equal(run.probs, base.runs[0].probs)
        assert (run.content_free is not None) == bool(opts.get("calibrate"))
        token, sentence = levels(run.probs, run.content_free, s.config)
        np.testing.assert_array_equal(run.sentence, sentence)
        assert not np.array_equal(s.final, base.final)
    cal = selectit.score(records, backends=[FakeBackend()], calibrate=True).runs[0]
    assert cal.content_free.shape == (4, 5)  # the default's 4 prompts x 5 labels
    with pytest.raises(ConfigError, match="--rating"):
        selectit.score(records, backends=[FakeBackend()], rating="mean")
    with pytest.raises(ConfigError, match="--prompt-weights"):
        selectit.score(records, backends=[FakeBackend()], prompt_weights="x")


def test_calibrated_file_scoring_matches_the_api_chunk_by_chunk(alpaca_records, tmp_path):
    """A file scored in chunks carries the content-free inputs in every chunk; the store runs them
    once and the scores equal those of the in-memory API."""
    import json

    from conftest import score_file
    from selectit.rundir import read_run

    data = tmp_path / "data.json"
    data.write_text(json.dumps(alpaca_records[:10]))
    score_file(data, tmp_path / "run", backend="fake", calibrate=True, rating="expected", chunk_size=3)
    cfg, rows = read_run(tmp_path / "run")
    api = selectit.score(alpaca_records[:10], backends=[FakeBackend()], calibrate=True, rating="expected")
    np.testing.assert_allclose([r["score"] for r in rows], api.final, rtol=1e-12)
    np.testing.assert_allclose(cfg["models"][0]["content_free_probs"], api.runs[0].content_free)


def test_likelihood_weight_adds_the_response_losses_term(alpaca_records, tmp_path):
    """--likelihood-weight w: sentence = rating sentence + w * (blank - 2 * given), the losses being the
    backend's own response losses in the two contexts; the label probabilities are unchanged; a file
    scored in chunks equals the API, writes the terms to scores.jsonl and reuses stored losses."""
    import json

    from conftest import score_file
    from selectit.formats import from_dicts
    from selectit.measures import losses as likelihood
    from selectit.methods import configure
    from selectit.rundir import read_run

    records = alpaca_records[:10]
    base = selectit.score(records, backends=[FakeBackend()], rating="expected", likelihood_weight=0)
    s = selectit.score(records, backends=[FakeBackend()], rating="expected", likelihood_weight=0.5,
                       likelihood_term="per-token")
    run = s.runs[0]
    np.testing.assert_array_equal(run.probs, base.runs[0].probs)
    recs = from_dicts(records)
    fake = FakeBackend()
    given = fake.response_losses([(likelihood.instruction_context(r), r.response) for r in recs], end=True)
    blank = fake.response_losses([(likelihood.blank_context(r), r.response) for r in recs], end=True)
    # the end-of-text token is scored after the response (a truncated answer is not ready to stop)
    assert not np.allclose(given, fake.response_losses([(likelihood.instruction_context(r), r.response)
                                                         for r in recs]))
    np.testing.assert_allclose(run.response_loss, given, rtol=1e-12)
    np.testing.assert_allclose(run.blank_loss, blank, rtol=1e-12)
    np.testing.assert_allclose(s.final, base.final + 0.5 * (blank - 2 * given), rtol=1e-12)
    assert not np.allclose(given, blank)  # the instruction changes the response's loss
    # the default term: the information the instruction gives, (blank - given) x characters / 200
    info = selectit.score(records, backends=[FakeBackend()], rating="expected", likelihood_weight=0.5)
    chars = np.array([len(r.response) for r in recs])
    np.testing.assert_allclose(info.final, base.final + 0.5 * (blank - given) * chars / 200, rtol=1e-12)

    data = tmp_path / "data.json"
    data.write_text(json.dumps(records))
    config = dict(backend="fake", rating="expected", likelihood_weight=0.5, likelihood_term="per-token", chunk_size=3)
    score_file(data, tmp_path / "run", **config)
    _, rows = read_run(tmp_path / "run")
    np.testing.assert_allclose([r["score"] for r in rows], s.final, rtol=1e-12)
    np.testing.assert_allclose([r["response_loss"]["fake"] for r in rows], given, rtol=1e-12)
    np.testing.assert_allclose([r["blank_loss"]["fake"] for r in rows], blank, rtol=1e-12)
    np.testing.assert_allclose([r["likelihood"]["fake"] for r in rows], blank - 2 * given, rtol=1e-12)
    first = (tmp_path / "run" / "scores.jsonl").read_bytes()

    calls = []

    class Counting(FakeBackend):
        def response_losses(self, pairs, max_length=None, **kw):
            calls.append(len(pairs))
            return super().response_losses(pairs, max_length, **kw)

    again = selectit.score(records, backends=[Counting()], rating="expected", likelihood_weight=0.5,
                           likelihood_term="per-token", store=str(tmp_path / "run" / "store.sqlite"))
    assert calls == [] and np.array_equal(again.final, s.final)  # every loss came from the store
    score_file(data, tmp_path / "run", **config)
    assert (tmp_path / "run" / "scores.jsonl").read_bytes() == first
    with pytest.raises(ConfigError, match="--likelihood-weight must be >= 0"):
        configure({"likelihood_weight": -1})


def test_a_backend_missing_part_of_the_protocol_is_refused_before_scoring(alpaca_records):
    class NoLosses:  # a backend without response_losses
        def __init__(self):
            self.fake = FakeBackend()
            self.name, self.num_parameters, self.max_length = "x", 1, 1 << 20
            self.template, self.fingerprint = "plain", {"backend": "x"}
            self.encode, self.decode = self.fake.encode, self.fake.decode

        def label_probs(self, *a, **k):
            raise AssertionError("scored before the check")

    with pytest.raises(ConfigError, match="does not implement .*response_losses"):
        selectit.score(alpaca_records[:3], backends=[NoLosses()], likelihood_weight=1.0)


def test_an_option_a_backend_cannot_honour_is_refused_with_its_flag_as_typed():
    from selectit.backends import LoadOptions, check_options
    from selectit.config import spelled

    with pytest.raises(ConfigError, match=r"^the fake backend cannot honour --dtype float16 \(needs --backend hf or "
                       r"vllm\); drop it"):
        check_options("fake", LoadOptions(dtype="float16"))
    with pytest.raises(ConfigError, match=r"cannot honour --no-prefix-cache, --trust-remote-code \(needs --backend hf "
                       r"or vllm\)"):
        check_options("llamacpp", LoadOptions(prefix_cache=False, trust_remote_code=True))
    check_options("llamacpp", LoadOptions(max_length=512))  # honoured: no error
    assert spelled("tensor_parallel_size", 2) == "--tensor-parallel-size 2"
    assert spelled("keep_duplicates", True) == "--keep-duplicates"
