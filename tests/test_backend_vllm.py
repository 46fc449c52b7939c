"""The vllm backend on CPU, without vLLM: request building, output parsing, the backend driven by a
stand-in engine, parameter counting, and the missing-dependency error through the CLI.

The stand-ins mirror vLLM 0.33.0's classes, checked in its source (the ``vllm-0.33.0`` wheel from
PyPI): ``vllm/logprobs.py`` ``Logprob(logprob, rank=None, decoded_token=None)``, one position being a
``dict[int, Logprob]``; ``vllm/outputs.py`` ``RequestOutput.outputs: list[CompletionOutput]``,
``CompletionOutput.logprobs: list[dict[int, Logprob]]`` (one dict per generated token) and
``RequestOutput.num_cached_tokens``; ``vllm/sampling_params.py`` ``SamplingParams`` (a msgspec Struct
with ``logprob_token_ids``, at most ``MAX_LOGPROB_TOKEN_IDS = 128``); ``vllm/v1/sample/sampler.py``
``gather_specific_token_logprobs`` (the sampled token's logprob comes back alongside the requested
ids, from the full-vocabulary ``log_softmax``). The run on a GPU against the hf backend is
``bench/gpu_check.py``; it did not run here (no GPU).
"""

import math
import subprocess
import sys
from collections import namedtuple
from types import SimpleNamespace

import numpy as np
import pytest

import selectit
from selectit.backends import load_backend
from selectit.backends.vllm import (
    DEFAULT_TOPK, VLLMBackend, count_parameters, engine_kwargs, has_logprob_token_ids, loss_kwargs, parse_label_probs,
    parse_response_losses, sampling_kwargs, token_prompts,
)
from selectit.methods import configure
from selectit.errors import ConfigError

from conftest import DEMO

Logprob = namedtuple("Logprob", ["logprob", "rank", "decoded_token"], defaults=[None, None])


def request_output(position: dict[int, float] | None, cached: int = 0):
    """A RequestOutput with one generated token whose logprobs are ``position``."""
    steps = None if position is None else [{t: Logprob(lp) for t, lp in position.items()}]
    return SimpleNamespace(outputs=[SimpleNamespace(logprobs=steps, token_ids=[0])], num_cached_tokens=cached)


LABELS = [11, 12, 13]


def test_sampling_kwargs_ask_for_exactly_the_label_tokens_after_one_prefill():
    assert sampling_kwargs(LABELS, exact=True) == {
        "max_tokens": 1, "temperature": 0.0, "detokenize": False, "logprob_token_ids": [11, 12, 13]}
    assert sampling_kwargs(np.array(LABELS), exact=False, topk=50) == {
        "max_tokens": 1, "temperature": 0.0, "detokenize": False, "logprobs": 50}
    with pytest.raises(ConfigError, match="at most 128"):
        sampling_kwargs(list(range(129)), exact=True)


def test_prompts_are_token_ids_as_given():
    assert token_prompts([[1, 2, 3], (4, np.int64(5))]) == [
        {"prompt_token_ids": [1, 2, 3]}, {"prompt_token_ids": [4, 5]}]
    assert all(type(t) is int for t in token_prompts([[np.int64(7)]])[0]["prompt_token_ids"])


def test_engine_kwargs_turn_on_prefix_caching_and_map_tensor_parallelism():
    kw = engine_kwargs("/m", dtype="bfloat16", max_length=None, trust_remote_code=False, prefix_cache=True,
                       allow_pickle=False, tensor_parallel_size=4, topk=None)
    assert kw == {"model": "/m", "dtype": "bfloat16", "trust_remote_code": False, "enable_prefix_caching": True,
                  "tensor_parallel_size": 4, "load_format": "safetensors"}
    kw = engine_kwargs("/m", dtype="float32", max_length=2048, trust_remote_code=True, prefix_cache=False,
                       allow_pickle=True, tensor_parallel_size=1, topk=100)
    assert kw["max_model_len"] == 2048 and kw["max_logprobs"] == 100 and not kw["enable_prefix_caching"]
    assert "load_format" not in kw
    # the default --max-length over a short model's context is clamped to it (vLLM refuses more), as in hf
    assert engine_kwargs("/m", dtype="float32", max_length=2048, trust_remote_code=False, prefix_cache=True,
                         allow_pickle=False, tensor_parallel_size=1, topk=None, context=1024)["max_model_len"] == 1024
    assert engine_kwargs("/m", dtype="float32", max_length=2048, trust_remote_code=False, prefix_cache=True,
                         allow_pickle=False, tensor_parallel_size=1, topk=None, context=8192)["max_model_len"] == 2048
    with pytest.raises(ConfigError, match="tensor-parallel-size must be >= 1"):
        engine_kwargs("/m", dtype="float32", max_length=None, trust_remote_code=False, prefix_cache=True,
                      allow_pickle=False, tensor_parallel_size=0, topk=None)


def test_has_logprob_token_ids_reads_struct_fields_or_the_signature():
    assert has_logprob_token_ids(SimpleNamespace(__struct_fields__=("n", "logprobs", "logprob_token_ids")))
    assert not has_logprob_token_ids(SimpleNamespace(__struct_fields__=("n", "logprobs")))

    class OldParams:  # vLLM before msgspec: a plain class
        def __init__(self, n=1, logprobs=None):
            pass

    assert not has_logprob_token_ids(OldParams)


def test_exact_answers_become_full_softmax_probabilities():
    # the sampled token (99) comes back too; it is ignored. -inf is probability 0.
    outputs = [request_output({99: -0.1, 11: math.log(0.5), 12: math.log(0.25), 13: -math.inf}),
               request_output({13: math.log(0.9), 11: math.log(0.01), 12: math.log(0.02)})]
    probs, bounded = parse_label_probs(outputs, LABELS, exact=True)
    assert probs.dtype == np.float64 and probs.shape == (2, 3)
    np.testing.assert_allclose(probs, [[0.5, 0.25, 0.0], [0.01, 0.02, 0.9]], rtol=1e-12)
    assert not bounded.any()
    assert probs[0].sum() < 1  # not renormalised over the labels


def test_exact_answers_missing_a_label_or_with_nan_are_errors_naming_the_row():
    with pytest.raises(ValueError, match=r"lacks label token\(s\) \[13\].*row 1"):
        parse_label_probs([request_output({11: -1.0, 12: -1.0, 13: -1.0}), request_output({11: -1.0, 12: -2.0})],
                          LABELS, exact=True)
    with pytest.raises(ValueError, match="NaN.*row 0"):
        parse_label_probs([request_output({11: float("nan"), 12: -1.0, 13: -1.0})], LABELS, exact=True)
    with pytest.raises(ValueError, match="no logprobs"):
        parse_label_probs([request_output(None)], LABELS, exact=True)
    with pytest.raises(ValueError, match="no completion"):
        parse_label_probs([SimpleNamespace(outputs=[])], LABELS, exact=True)


def test_top_k_answers_bound_missing_labels_from_above_and_flag_them():
    # top-4 answer: 0.4, 0.3, 0.2 and label 11 at 0.05; labels 12 and 13 are not in it.
    top4 = {1: math.log(0.4), 2: math.log(0.3), 3: math.log(0.2), 11: math.log(0.05)}
    probs, bounded = parse_label_probs([request_output(top4)], LABELS, exact=False, topk=4)
    # each missing label is at most the 4th largest (0.05) and at most the leftover mass (0.05)
    np.testing.assert_allclose(probs, [[0.05, 0.05, 0.05]])
    assert bounded.tolist() == [[False, True, True]]
    # the leftover mass is the tighter bound when the top-k holds almost everything
    top3 = {1: math.log(0.6), 2: math.log(0.3), 11: math.log(0.09)}
    probs, bounded = parse_label_probs([request_output(top3)], LABELS, exact=False, topk=3)
    np.testing.assert_allclose(probs, [[0.09, 0.01, 0.01]], rtol=1e-9)
    assert bounded.tolist() == [[False, True, True]]
    # every label present: exact values, nothing flagged
    full = {11: math.log(0.2), 12: math.log(0.3), 13: math.log(0.1)}
    probs, bounded = parse_label_probs([request_output(full)], LABELS, exact=False, topk=DEFAULT_TOPK)
    np.testing.assert_allclose(probs, [[0.2, 0.3, 0.1]])
    assert not bounded.any()


class StandInLLM:
    """Answers like ``vllm.LLM.generate`` from a fixed next-token distribution per prompt."""

    def __init__(self, vocab: int, exact: bool):
        self.vocab, self.exact, self.calls = vocab, exact, []

    def distribution(self, ids):
        rng = np.random.default_rng(sum(ids) * 7919 + len(ids))
        logits = rng.normal(0, 3, self.vocab)
        return logits - np.log(np.exp(logits).sum())

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((prompts, params))
        outs = []
        if params.get("prompt_logprobs") is not None:  # each prompt token's own logprob (+ the top-1)
            for p in prompts:
                ids = p["prompt_token_ids"]
                steps = [None] + [{int(ids[t]): Logprob(float(self.distribution(ids[:t])[ids[t]])),
                                   int(np.argmax(self.distribution(ids[:t]))): Logprob(0.0)} for t in range(1, len(ids))]
                for t in range(1, len(ids)):  # the actual token's entry wins if it is also the top-1
                    steps[t][int(ids[t])] = Logprob(float(self.distribution(ids[:t])[ids[t]]))
                outs.append(SimpleNamespace(prompt_logprobs=steps, outputs=[], num_cached_tokens=0))
            return outs
        for p in prompts:
            logp = self.distribution(p["prompt_token_ids"])
            keep = params["logprob_token_ids"] if self.exact else np.argsort(-logp)[: params["logprobs"]]
            outs.append(request_output({int(t): float(logp[t]) for t in keep}, cached=2))
        return outs


def stand_in_backend(tiny_tokenizer, exact: bool, topk: int = DEFAULT_TOPK):
    llm = StandInLLM(len(tiny_tokenizer), exact)
    backend = VLLMBackend(llm, tiny_tokenizer, name="tiny", max_length=8192, num_parameters=1000, source="/m",
                          dtype="bfloat16", exact=exact, topk=topk, sampling_params=dict)
    return backend, llm


def test_backend_reads_the_stand_in_engine_exactly(tiny_tokenizer):
    backend, llm = stand_in_backend(tiny_tokenizer, exact=True)
    batch = [backend.encode("Rate this: 3"), backend.encode("Rate that one")]
    labels = [backend.encode("", d)[-1] for d in "12345"]
    probs = backend.label_probs(batch, labels)
    expected = np.exp([llm.distribution(ids)[labels] for ids in batch])
    np.testing.assert_allclose(probs, expected, rtol=1e-12)
    prompts, params = llm.calls[0]
    assert [p["prompt_token_ids"] for p in prompts] == batch and params["logprob_token_ids"] == labels
    assert backend.tokens_computed == sum(len(ids) - 2 for ids in batch)  # prefix-cache hits excluded
    assert backend.fingerprint["label_logprobs"] == "token_ids" and backend.labels_bounded == 0


def test_backend_with_top_k_counts_and_reports_bounded_labels(tiny_tokenizer, capsys):
    backend, llm = stand_in_backend(tiny_tokenizer, exact=False, topk=3)
    batch = [backend.encode(f"prompt {i}") for i in range(4)]
    labels = [backend.encode("", d)[-1] for d in "12345"]
    probs = backend.label_probs(batch, labels)
    exact = np.exp([llm.distribution(ids)[labels] for ids in batch])
    assert backend.labels_bounded > 0
    assert np.all(probs >= exact - 1e-12)  # an upper bound, never below the true value
    assert "top-3" in capsys.readouterr().err
    backend.label_probs(batch, labels)
    assert capsys.readouterr().err == ""  # reported once
    assert backend.fingerprint["label_logprobs"] == "top3-bound"


def test_scorer_runs_end_to_end_on_the_stand_in_engine(tiny_tokenizer, alpaca_records):
    backend, llm = stand_in_backend(tiny_tokenizer, exact=True)
    scores = selectit.score(alpaca_records[:4], backends=[backend], num_prompts=2, batch_size=16)
    assert scores.runs[0].probs.shape == (4, 2, 5) and np.isfinite(scores.final).all()
    # prompt-first: each rating call holds the requests of one rating prompt, all starting with it; the
    # default likelihood term adds one call per context (the response losses, from prompt log-probabilities)
    rating = [c for c in llm.calls if "prompt_logprobs" not in c[1]]
    assert len(rating) == 2 and len(llm.calls) == 4 and scores.runs[0].likelihood is not None
    for prompts, _ in rating:
        ids = [p["prompt_token_ids"] for p in prompts]
        assert len({tuple(x[:20]) for x in ids}) == 1


class NaNForOnePrompt(StandInLLM):
    """Answers NaN (as a broken kernel might) for the one prompt ``bad``."""

    def __init__(self, vocab, bad):
        super().__init__(vocab, exact=True)
        self.bad = list(bad)

    def generate(self, prompts, params, use_tqdm=True):
        outs = super().generate(prompts, params, use_tqdm)
        for p, o in zip(prompts, outs):
            if p["prompt_token_ids"] == self.bad:
                o.outputs[0].logprobs[0] = {t: Logprob(float("nan")) for t in o.outputs[0].logprobs[0]}
        return outs


def test_a_nan_answer_fails_its_row_alone_through_the_scorer(tiny_tokenizer, alpaca_records):
    from selectit import formats
    from selectit.prompts import choose_prompts, rating_text, read_prompts

    records = alpaca_records[:4]
    backend, _ = stand_in_backend(tiny_tokenizer, exact=True)
    good = selectit.score(records, backends=[backend], num_prompts=2, batch_size=16).runs[0]
    prompt = choose_prompts(read_prompts(None), 2, 5)[1]
    backend.llm = NaNForOnePrompt(len(tiny_tokenizer), backend.encode(rating_text(prompt, formats.from_dicts(records)[2])))
    run = selectit.score(records, backends=[backend], num_prompts=2, batch_size=16).runs[0]
    assert list(run.errors) == [(2, 1)] and "NaN" in run.errors[(2, 1)]
    assert np.isnan(run.probs[2, 1]).all()
    rest = np.ones((4, 2), dtype=bool)
    rest[2, 1] = False
    np.testing.assert_array_equal(run.probs[rest], good.probs[rest])


def fake_vllm(monkeypatch, *, token_ids=True, fail=None):
    """A ``vllm`` module with stand-ins for ``LLM`` (records its keyword arguments) and
    ``SamplingParams`` (a msgspec Struct in vLLM 0.33: its fields are in ``__struct_fields__``)."""
    created = []

    class SamplingParams:
        __struct_fields__ = ("max_tokens", "temperature", "logprobs", "detokenize") + (
            ("logprob_token_ids",) if token_ids else ())

    class LLM:
        def __init__(self, **kwargs):
            if fail is not None:
                raise fail
            created.append(kwargs)
            self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=kwargs.get("max_model_len",
                                                                                                     2048)))

    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    return created


def test_load_builds_the_engine_with_prefix_caching_and_tensor_parallelism(monkeypatch, tiny_model_dir, tiny_model):
    created = fake_vllm(monkeypatch)
    backend = load_backend("vllm", str(tiny_model_dir), dtype="bfloat16", tensor_parallel_size=2, max_length=512)
    assert created == [{"model": str(tiny_model_dir), "dtype": "bfloat16", "trust_remote_code": False,
                        "enable_prefix_caching": True, "tensor_parallel_size": 2, "max_model_len": 512,
                        "load_format": "safetensors"}]
    assert backend.exact and backend.max_length == 512
    assert backend.num_parameters == sum(p.numel() for p in tiny_model.parameters())
    assert backend.fingerprint["label_logprobs"] == "token_ids" and backend.fingerprint["dtype"] == "bfloat16"
    assert backend.encode("Rate: 1") == load_backend("hf", str(tiny_model_dir)).encode("Rate: 1")


def test_load_on_a_vllm_without_logprob_token_ids_asks_for_top_k(monkeypatch, tiny_model_dir):
    created = fake_vllm(monkeypatch, token_ids=False)
    backend = load_backend("vllm", str(tiny_model_dir), prefix_cache=False)
    assert not backend.exact and created[0]["max_logprobs"] == DEFAULT_TOPK
    assert created[0]["enable_prefix_caching"] is False
    assert backend.fingerprint["label_logprobs"] == f"top{DEFAULT_TOPK}-bound"


def test_load_errors_are_one_line_user_errors(monkeypatch, tiny_model_dir, tmp_path):
    fake_vllm(monkeypatch, fail=ValueError("World size (4) is larger than the number of available GPUs (1).\nmore"))
    with pytest.raises(ConfigError, match=r"with vLLM: World size \(4\) .*GPUs \(1\)\.$"):
        load_backend("vllm", str(tiny_model_dir), tensor_parallel_size=4)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(ConfigError, match="not GGUF files"):
        load_backend("vllm", str(gguf))
    with pytest.raises(ConfigError, match="CUDA_VISIBLE_DEVICES"):
        load_backend("vllm", str(tiny_model_dir), device="cpu")
    with pytest.raises(ConfigError, match="--dtype must be one of"):
        load_backend("vllm", str(tiny_model_dir), dtype="int8")


def test_count_parameters_reads_safetensors_headers(tiny_model_dir, tiny_model):
    assert count_parameters(tiny_model_dir) == sum(p.numel() for p in tiny_model.parameters())


def test_count_parameters_without_safetensors_is_a_user_error(tmp_path):
    with pytest.raises(ConfigError, match="no .safetensors"):
        count_parameters(tmp_path)


def test_tensor_parallelism_needs_the_vllm_backend():
    with pytest.raises(ConfigError, match="needs --backend vllm"):
        load_backend("hf", None, tensor_parallel_size=2)
    with pytest.raises(ConfigError, match="tensor-parallel-size must be >= 1"):
        configure({"tensor_parallel_size": 0})


NO_VLLM = "import sys; sys.modules['vllm'] = None; from selectit.cli import main; sys.argv[0] = 'selectit'; main()"


def test_missing_vllm_is_one_line_through_the_cli(tmp_path):
    # vllm made unimportable in the child, so the test holds whether or not it is installed
    res = subprocess.run([sys.executable, "-c", NO_VLLM, "score", str(DEMO), "--out", str(tmp_path / "run"),
                          "--backend", "vllm", "--model", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert res.stderr.strip() == ("selectit: error: the vllm backend needs vLLM (and a GPU): "
                                  "pip install 'selectit[vllm]'")


def load_gpu_check():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_compares_runs_against_its_tolerance():
    gc = load_gpu_check()
    # ranks of [1, 2, 2, 3] are [0, 1.5, 1.5, 3]; against [3, 1, 2, 4]: Pearson of the ranks by hand
    a, b = np.array([1.0, 2, 2, 3]), np.array([3.0, 1, 2, 4])
    ra, rb = np.array([0, 1.5, 1.5, 3]), np.array([2.0, 0, 1, 3])
    assert gc.spearman(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1])
    rng = np.random.default_rng(0)
    ref = {"probs": rng.random((20, 2, 5)) / 5, "token": rng.random((20, 2)), "final": rng.random(20) * 4}
    close = {k: v + 1e-4 for k, v in ref.items()}
    assert gc.compare(ref, close, "float32")["passed"]
    far = {**close, "probs": ref["probs"] + 0.01}
    assert gc.compare(ref, far, "float32")["failed"] == ["max_prob"]
    assert gc.compare(ref, far, "bfloat16")["passed"]
    shuffled = {**ref, "final": ref["final"][::-1]}
    assert "spearman" in gc.compare(ref, shuffled, "bfloat16")["failed"]


def test_response_losses_read_the_prompt_logprobs_like_the_hf_backend(tiny_tokenizer, alpaca_records):
    """Same tokens and positions as every backend's definition (selectit.backends.base.response_ids);
    the loss is the mean of minus the prompt tokens' own log-probabilities from ``first`` on."""
    from selectit.backends.base import response_ids

    assert loss_kwargs() == {"max_tokens": 1, "temperature": 0.0, "detokenize": False, "prompt_logprobs": 1}
    backend, llm = stand_in_backend(tiny_tokenizer, exact=True)
    pairs = [("Instruction: add 2 and 2\nResponse:", " 4"), ("", "just text"), ("context", "")]
    for end in (None, tiny_tokenizer.eos_token_id):  # with --likelihood-weight, EOS follows the response
        losses = backend.response_losses(pairs, end=end is not None)
        for (c, r), got in zip(pairs[:2], losses):
            ids, start = response_ids(lambda t: tiny_tokenizer(t)["input_ids"], c, r, 8192, end)
            assert (ids[-1] == end) if end is not None else True
            want = -np.mean([llm.distribution(ids[:t])[ids[t]] for t in range(max(start, 1), len(ids))])
            assert got == pytest.approx(want, rel=1e-12)
        assert np.isnan(losses[2]) == (end is None)  # no response token (with end: the EOS is one)
    assert [len(c[0]) for c in llm.calls] == [2, 3]  # the empty response is sent only with its EOS
    means, last, pooled = backend.losses_and_ends(pairs[:2])  # the end loss rides the same requests
    assert pooled is None
    np.testing.assert_allclose(means, backend.response_losses(pairs[:2], end=True), rtol=1e-12)
    for (c, r), got in zip(pairs[:2], last):
        ids, _ = response_ids(lambda t: tiny_tokenizer(t)["input_ids"], c, r, 8192, tiny_tokenizer.eos_token_id)
        assert got == pytest.approx(-llm.distribution(ids[:-1])[ids[-1]], rel=1e-12)
    with pytest.raises(ValueError, match="no prompt logprobs"):
        parse_response_losses([SimpleNamespace(prompt_logprobs=None)], [([1, 2], 1)])
    with pytest.raises(ValueError, match="token 1"):
        parse_response_losses([SimpleNamespace(prompt_logprobs=[None, {9: Logprob(-1.0)}])], [([1, 2], 1)])


def test_likelihood_weight_runs_end_to_end_on_the_stand_in_engine(tiny_tokenizer, alpaca_records):
    backend, llm = stand_in_backend(tiny_tokenizer, exact=True)
    base = selectit.score(alpaca_records[:4], backends=[backend], num_prompts=2, likelihood_weight=0)
    scores = selectit.score(alpaca_records[:4], backends=[backend], num_prompts=2, likelihood_weight=1.0)
    lik = scores.runs[0].likelihood
    assert np.isfinite(lik).all()
    np.testing.assert_allclose(scores.final, base.final + lik, rtol=1e-12)
