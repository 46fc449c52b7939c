"""Shared fixtures: a tiny random model with a byte-level tokenizer built here (fast), the embedded
SmolLM2-135M (real weights, loaded once per session), and real Alpaca records."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import settings

# The same examples on every run, so CI never goes red by chance; raise max_examples locally to explore.
settings.register_profile("selectit", derandomize=True)
settings.load_profile("selectit")

# --dtype auto (the default) picks bfloat16 on a CPU with AVX512-BF16/AMX: the suite's exact comparisons
# are of float32 runs on every machine (inherited by the CLI subprocesses); tests/test_precision.py
# checks the detection itself.
os.environ["SELECTIT_BF16"] = "0"

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "alpaca_demo.json"

CORPUS = [
    "Rate the response on a scale of 1 to 5. The answer is: 1 2 3 4 5",
    "Instruction: Give three tips for staying healthy.\nResponse: Eat well, sleep, exercise.",
    "The quick brown fox jumps over the lazy dog. 12345 67890",
    "What is the capital of France? Paris is the capital of France.",
]


def build_byte_level_tokenizer():
    """A GPT-2-style byte-level BPE tokenizer, trained here on a few sentences."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<bos>", "<eos>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


def build_metaspace_tokenizer():
    """A SentencePiece-style (Metaspace, like LLaMA-2) BPE tokenizer that adds a BOS, trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def build_tiny_model(vocab_size: int, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_byte_level_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    return build_tiny_model(len(tiny_tokenizer))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_model, tiny_tokenizer):
    """The tiny model saved as a local folder (safetensors), to load it by path like a user would."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def embedded_backend():
    from selectit.backends.hf import HFBackend

    return HFBackend.load(None, template="plain")  # the published template; tests build a chat one from it


@pytest.fixture(scope="session")
def alpaca_records():
    return json.loads(DEMO.read_text())


def score_file(path, out, *, progress=False, **options):
    """Score a file as `selectit score` does, options by configuration field name."""
    from selectit.jobs import score_file as job
    from selectit.methods import configure

    config, method = configure(options)
    return job(path, out, config, method, progress=progress)


def rate(backend, records, **options):
    """One loaded model's ratings (ModelRun) of records, through the API."""
    import selectit

    return selectit.score(records, backends=[backend], **options).runs[0]


@pytest.fixture
def bench_data(tmp_path):
    """A ../shared/data stand-in for the fine-tune benchmarks' toy runs (CI clones need not have
    ../shared): 100 demo records as alpaca_5000.json, and eight other demo records as held-out "seed
    tasks" in the seed-task format (eight: one constraint prompt per kind)."""
    demo = json.loads(DEMO.read_text(encoding="utf-8"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "alpaca_5000.json").write_text(json.dumps(demo[:100]))
    (data / "alpaca_seed_tasks.jsonl").write_text("\n".join(json.dumps(
        {"id": f"seed_task_{i}", "instruction": r["instruction"],
         "instances": [{"input": r["input"], "output": r["output"]}]}) for i, r in enumerate(demo[150:158])))
    return data
