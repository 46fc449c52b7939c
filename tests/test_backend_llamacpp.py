"""The llama.cpp backend on the embedded GGUF, as shipped (quantised Q4_1)."""

import numpy as np
import pytest

from selectit import formats
from selectit.methods import PAPER
from selectit.prompts import choose_prompts, rating_text, read_prompts
from conftest import rate

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def llamacpp_backend():
    from selectit.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend.load(None, max_length=2048, template="plain")  # the published template, as PAPER asks


def test_label_probs_match_a_fresh_evaluation(llamacpp_backend, alpaca_records):
    """Prefix reuse across prompts gives what a cold evaluation of each prompt gives."""
    b = llamacpp_backend
    records = formats.from_dicts(alpaca_records[:3])
    prompts = choose_prompts(read_prompts(), 3, 5)
    run = rate(b, records, num_prompts=3, **PAPER)  # the ratings only
    assert run.label_ids == [b.llm.tokenize(str(k).encode(), add_bos=False)[0] for k in range(1, 6)]
    assert b.num_parameters == 134_515_008
    for i, j in [(0, 0), (2, 1), (1, 2)]:
        b.llm.reset()  # nothing to reuse
        cold = b.label_probs([b.encode(rating_text(prompts[j], records[i]))], run.label_ids)[0]
        np.testing.assert_allclose(run.probs[i, j], cold, rtol=1e-4, atol=1e-6)
    assert 0.05 < run.label_mass.mean() < 0.95


def test_close_to_the_hf_backend(llamacpp_backend, embedded_backend, alpaca_records):
    """Same weights (HF dequantises the same GGUF); llama.cpp also quantises activations, so the
    probabilities differ a little; the rating each prompt favours mostly agrees."""
    records = formats.from_dicts(alpaca_records[:4])
    a = rate(llamacpp_backend, records, num_prompts=2, **PAPER)
    b = rate(embedded_backend, records, num_prompts=2, **PAPER)
    assert np.abs(a.label_mass - b.label_mass).max() < 0.2
    assert (a.probs.argmax(-1) == b.probs.argmax(-1)).mean() >= 0.75


def test_response_losses_match_the_hf_backend(llamacpp_backend, embedded_backend, alpaca_records):
    """Same definition as the hf backend (same GGUF weights; llama.cpp quantises activations, so close,
    not equal); the context shared by the two calls is reused without changing the losses."""
    from selectit.measures.losses import blank_context, instruction_context

    records = formats.from_dicts(alpaca_records[:4])
    pairs = [(ctx(r), r.response) for r in records for ctx in (instruction_context, blank_context)]
    a = llamacpp_backend.response_losses(pairs)
    b = embedded_backend.response_losses(pairs)
    np.testing.assert_allclose(a, b, rtol=0.05)
    ends = llamacpp_backend.response_losses(pairs, end=True)  # the same end-of-text token follows
    np.testing.assert_allclose(ends, embedded_backend.response_losses(pairs, end=True), rtol=0.05)
    assert not np.allclose(ends, a)
    llamacpp_backend.llm.reset()
    cold = np.array([llamacpp_backend.response_losses([p])[0] for p in pairs[::-1]])[::-1]
    np.testing.assert_allclose(a, cold, rtol=1e-4)
    assert np.isnan(llamacpp_backend.response_losses([("", "")])[0])


def test_losses_and_ends_give_the_end_tokens_own_loss(llamacpp_backend, alpaca_records):
    """The last token's loss of the likelihood pass is the end loss's own pass (the end token after the
    prompt and the response), and the means are response_losses' with the end token."""
    from selectit.measures.losses import instruction_context

    records = formats.from_dicts(alpaca_records[:3])
    pairs = [(instruction_context(r), r.response) for r in records]
    means, last, pooled = llamacpp_backend.losses_and_ends(pairs)
    assert pooled is None
    np.testing.assert_allclose(means, llamacpp_backend.response_losses(pairs, end=True), rtol=1e-6)
    own = llamacpp_backend.response_losses([(c + r, "") for c, r in pairs], end=True)
    np.testing.assert_allclose(last, own, rtol=1e-3)
