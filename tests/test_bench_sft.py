"""bench/sft.py: the completion-only loss equals the Hugging Face model's own loss (value and gradient), on a
tiny random Gemma-3 (the architecture the benchmark fine-tunes: tied head, soft-capping, sliding window)
and a tiny Llama; tokenization, batching, training and generation on tiny models (no weights needed)."""

import importlib.util
import random
import sys

import numpy as np
import pytest

from conftest import ROOT, build_byte_level_tokenizer

torch = pytest.importorskip("torch")


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


sft = load("sft")


@pytest.fixture(scope="module")
def tok():
    return build_byte_level_tokenizer()


def tiny_gemma(vocab_size: int, seed: int = 0):
    """A random Gemma-3 text model: final logit soft-capping on (so the head path must apply it) and a
    sliding window shorter than the test sequences (so the window is exercised)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    config = Gemma3TextConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=8,
                              layer_types=["sliding_attention", "full_attention"], final_logit_softcapping=5.0,
                              max_position_embeddings=512, pad_token_id=2, bos_token_id=0, eos_token_id=1)
    return Gemma3ForCausalLM(config).eval()


def tiny_llama(vocab_size: int, seed: int = 0):
    from conftest import build_tiny_model

    return build_tiny_model(vocab_size, seed)


PAIRS = [("Give three tips for staying healthy.", "Eat well, sleep, exercise."),
         ("What is the capital of France?", "Paris is the capital of France."),
         ("Rate the response.", "The answer is: 4")]


def examples(tok, max_length=512):
    return [sft.encode(tok, sft.alpaca_prompt(q), a, max_length) for q, a in PAIRS]


def hf_loss(model, batch, pad_id):
    """The model's own loss with labels masked to the completion (Hugging Face shifts them)."""
    ids, mask, is_target = sft.collate(batch, pad_id)
    labels = torch.full_like(ids, -100)
    labels[:, 1:][is_target] = ids[:, 1:][is_target]
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss


@pytest.mark.parametrize("build", [tiny_gemma, tiny_llama])
def test_train_step_loss_and_gradient_equal_the_models_own(build, tok):
    batch = examples(tok)
    pad = tok.pad_token_id
    reference = build(len(tok))
    expected = hf_loss(reference, batch, pad)
    expected.backward()
    model = build(len(tok))  # same seed: same weights
    got = sft.train_step(model, *sft.collate(batch, pad))
    assert got == pytest.approx(expected.item(), rel=1e-5)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6, rtol=1e-4), name


@pytest.mark.parametrize("build", [tiny_gemma, tiny_llama])
def test_answer_losses_are_each_rows_own_loss(build, tok):
    model = build(len(tok))
    batch = examples(tok)
    got = sft.answer_losses(model, batch, tok.pad_token_id, batch_size=2)
    with torch.no_grad():
        expected = [hf_loss(model, [e], tok.pad_token_id).item() for e in batch]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_head_chunks_do_not_change_the_loss(tok, monkeypatch):
    batch = examples(tok)
    whole = sft.answer_losses(tiny_gemma(len(tok)), batch, tok.pad_token_id)
    monkeypatch.setattr(sft, "HEAD_CHUNK", 3)
    np.testing.assert_allclose(sft.answer_losses(tiny_gemma(len(tok)), batch, tok.pad_token_id), whole, rtol=1e-6)


def test_encode_targets_the_completion_and_its_end_token(tok):
    e = sft.encode(tok, "Q: hi\n", "Paris", max_length=512)
    assert e.ids[-1] == tok.eos_token_id
    assert tok.decode(e.ids[e.start : -1]) == "Paris"
    assert e.targets == len(tok("Paris", add_special_tokens=False).input_ids) + 1
    cut = sft.encode(tok, "Q: hi\n", "Paris is the capital of France.", max_length=e.start + 2)
    assert len(cut.ids) == e.start + 2 and cut.targets == 2  # the completion's end is cut first
    assert sft.encode(tok, "Q: hi\n", "Paris", max_length=3).targets == 0  # the prompt fills it


def test_alpaca_prompt_has_an_input_part_only_with_an_input():
    assert "### Input:" not in sft.alpaca_prompt("Say hi.")
    assert sft.alpaca_prompt("Translate.", "  ") == sft.alpaca_prompt("Translate.")
    text = sft.alpaca_prompt("Translate.", "Bonjour")
    assert text.endswith("### Instruction:\nTranslate.\n\n### Input:\nBonjour\n\n### Response:\n")


def test_length_grouped_batches_cover_every_index_once_and_depend_on_the_seed():
    lengths = [random.Random(1).randrange(5, 200) for _ in range(50)]
    a = sft.length_grouped_batches(lengths, 4, random.Random(0))
    assert sorted(i for b in a for i in b) == list(range(50))
    assert all(len(b) <= 4 for b in a)
    assert a == sft.length_grouped_batches(lengths, 4, random.Random(0))
    assert a != sft.length_grouped_batches(lengths, 4, random.Random(1))


def test_cosine_schedule_warms_up_then_decays_to_zero():
    factors = [sft.cosine_schedule(s, 10, 2) for s in range(10)]
    assert factors[:2] == [0.5, 1.0] and factors[2] == 1.0
    assert all(a >= b for a, b in zip(factors[2:], factors[3:])) and factors[-1] > 0
    assert sft.cosine_schedule(10, 10, 2) == pytest.approx(0.0)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_finetune_lowers_the_training_loss(mode, tok):
    if mode == "lora":
        pytest.importorskip("peft")
    base = tiny_gemma(len(tok))
    batch = examples(tok)
    before = sft.answer_losses(base, batch, tok.pad_token_id).mean()
    embedding = base.get_input_embeddings().weight.detach().clone()
    model, stats = sft.finetune(base, batch, seed=0, epochs=10, lr=1e-2 if mode == "full" else 5e-2,
                                batch_size=2, pad_id=tok.pad_token_id, mode=mode, lora_r=4)
    after = sft.answer_losses(model, batch, tok.pad_token_id).mean()
    # measured: 5.98 -> 5.54 (full), -> 5.82 (LoRA r 4); a 32-wide model with a frozen or
    # soft-capped head learns slowly, so the bound is loose
    assert after < before - 0.1
    assert stats["steps"] == 20 and stats["records_used"] == 3
    assert stats["target_tokens_per_epoch"] == sum(e.targets for e in batch)
    assert type(model).__name__ == "Gemma3ForCausalLM"  # LoRA merged back into a plain model
    if mode == "full":  # the tied embedding / output head is frozen
        assert torch.equal(model.get_input_embeddings().weight, embedding)


def test_generate_answers_in_input_order_whatever_the_padding(tok):
    model = tiny_llama(len(tok))
    prompts = [sft.alpaca_prompt(q) for q, _ in PAIRS]
    one_by_one = [sft.generate(model, tok, [p], max_new_tokens=6)[0] for p in prompts]
    batched = sft.generate(model, tok, prompts, max_new_tokens=6, batch_size=3)
    assert batched == one_by_one


def test_generate_cuts_a_new_alpaca_section(tok, monkeypatch):
    """An answer that goes on with "### Instruction:" is cut there."""
    class Echo:  # a "model" whose generation is fixed text
        def eval(self):
            return self

        def generate(self, input_ids, **kw):
            new = tok("Paris.\n### Instruction:\nmore", add_special_tokens=False).input_ids
            return torch.cat([input_ids, torch.tensor([new] * len(input_ids))], dim=1)

    assert sft.generate(Echo(), tok, ["Q"], max_new_tokens=4) == ["Paris."]
