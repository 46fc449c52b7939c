"""Supervised fine-tuning and evaluation of a causal LM on (prompt, completion) pairs, for
``bench/finetune_eval.py`` (issue 19).

Why a loop of our own instead of TRL's SFTTrainer: Gemma-3's output head has 262,144 rows (168M of its
268M parameters), so a model that computes logits at every position spends most of its time and memory
on positions whose loss is masked out. Here the transformer runs to hidden states, the positions whose
next token is a completion token are gathered, and the head runs only there, in chunks (a chunk's
(n, V) float32 logits are 1 MiB per position). The loss is the same number the Hugging Face model
computes with ``labels`` masked to the completion (``tests/test_bench_sft.py`` checks it).

Every text is put in the Alpaca prompt format (Taori et al. 2023), the usual plain format for tuning a
*base* model, the same for every arm, for training, reference losses and generation alike.

Shapes: B rows, T tokens (padded), H hidden size, V vocabulary, N completion positions in a batch.
"""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass

import numpy as np

PROMPT_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                "context. Write a response that appropriately completes the request.\n\n"
                "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
PROMPT_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately "
                   "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")
STOP = "\n### "  # a base model that does not stop goes on with a new "### Instruction:" section
HEAD_CHUNK = 512  # completion positions per head call: (512, 262144) float32 logits = 512 MiB


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """The Alpaca prompt (with its ``### Input:`` part when ``input`` is not blank)."""
    if input.strip():
        return PROMPT_INPUT.format(instruction=instruction.strip(), input=input.strip())
    return PROMPT_NO_INPUT.format(instruction=instruction.strip())


@dataclass(frozen=True)
class Example:
    """One tokenized pair: ``ids`` = prompt (with BOS) + completion + EOS, cut to the max length;
    tokens at positions >= ``start`` are the targets (the completion and its end token)."""

    ids: tuple[int, ...]
    start: int

    @property
    def targets(self) -> int:
        return len(self.ids) - self.start


def encode(tokenizer, prompt: str, completion: str, max_length: int) -> Example:
    """Prompt and completion tokenized apart (the boundary is where the loss starts), the completion
    followed by the tokenizer's end token so the model learns to stop; cut to ``max_length`` tokens
    (the completion's end goes first). ``targets`` is 0 when the prompt alone fills ``max_length``."""
    head = tokenizer(prompt).input_ids  # with the model's BOS, as at inference
    tail = tokenizer(completion, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    ids = (head + tail)[:max_length]
    return Example(tuple(ids), min(len(head), len(ids)))


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Indices in batches of ``batch_size``: shuffled, then sorted by length within groups of 8 batches
    (so rows of a batch have similar lengths and padding stays small), then the batches shuffled.
    A seed gives a new order; every index appears once."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    group = 8 * batch_size
    out = []
    for g in range(0, len(order), group):
        part = sorted(order[g : g + group], key=lambda i: lengths[i])
        out += [part[b : b + batch_size] for b in range(0, len(part), batch_size)]
    rng.shuffle(out)
    return out


def collate(examples: list[Example], pad_id: int):
    """Right-padded ``ids`` (B, T), attention ``mask`` (B, T) and ``is_target`` (B, T-1): True where the
    *next* token (position t + 1) is a completion token, i.e. where position t's logits are scored."""
    import torch

    T = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), T), dtype=torch.long)
    is_target = torch.zeros((len(examples), T - 1), dtype=torch.bool)
    for r, e in enumerate(examples):
        ids[r, : len(e.ids)] = torch.tensor(e.ids)
        mask[r, : len(e.ids)] = 1
        is_target[r, max(e.start - 1, 0) : len(e.ids) - 1] = True
    return ids, mask, is_target


def head_logits(model, hidden):
    """The output head on hidden states (N, H) -> (N, V) float32, with the model's final soft-capping
    (Gemma-2 style ``final_logit_softcapping``) where its config has one."""
    import torch

    logits = model.get_output_embeddings()(hidden).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def autocast(precision: str):
    """``float32``: nothing changes. ``bfloat16``: matrix products in bfloat16 (CPU autocast) with float32
    weights, optimizer state and loss reduction: mixed-precision training. On the AVX512-BF16 CPU of
    bench/README.md a Gemma-3-270M training step is 1.57x faster; the reference losses of a model
    differed by 0.001 nats from float32 (so evaluation stays in float32)."""
    import torch

    if precision == "float32":
        return contextlib.nullcontext()
    if precision == "bfloat16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    raise ValueError(f"precision must be float32 or bfloat16, got {precision!r}")


def completion_hidden(model, ids, mask, is_target):
    """Hidden states at the scored positions (N, H) and their target tokens (N,)."""
    hidden = model.get_decoder()(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
    return hidden[:, :-1][is_target], ids[:, 1:][is_target]


def train_step(model, ids, mask, is_target, precision: str = "float32") -> float:
    """Forward and backward of the mean completion-token loss of one batch; returns the loss.
    Two stages so that at most one chunk of logits exists at a time: the head and cross-entropy run
    chunk by chunk on a detached copy of the hidden states (each chunk's backward frees its logits and
    adds to the copy's gradient, and to the head's if it is trained), then the transformer's backward
    runs once from that gradient. The result is the gradient of the whole batch's mean loss."""
    import torch.nn.functional as F

    with autocast(precision):
        hidden, targets = completion_hidden(model, ids, mask, is_target)  # (N, H), (N,)
    n = len(targets)
    detached = hidden.detach().requires_grad_()
    total = 0.0
    for c in range(0, n, HEAD_CHUNK):
        with autocast(precision):
            logits = head_logits(model, detached[c : c + HEAD_CHUNK])  # (n, V) float32
        loss = F.cross_entropy(logits, targets[c : c + HEAD_CHUNK], reduction="sum") / n
        loss.backward()
        total += loss.item()
    hidden.backward(detached.grad)
    return total


def prepare(model, mode: str, lora_r: int = 16):
    """What to train: ``(trained, params, finish)``, where ``trained`` is the module the loop calls,
    ``params`` its trainable parameters and ``finish()`` returns the plain fine-tuned model.
    ``full``: every weight except the token embedding, which is also the (tied) output head: 168M of
    Gemma-3-270M's 268M parameters, one row per vocabulary entry, of which a few hundred examples touch a
    tiny part; freezing it saves the head's weight gradient and two thirds of the optimizer state.
    ``lora``: LoRA (peft) of rank ``lora_r`` (alpha 2r, no dropout) on every linear layer of every block,
    merged into the weights by ``finish()``."""
    if mode == "full":
        emb = model.get_input_embeddings().weight
        for p in model.parameters():
            p.requires_grad_(p is not emb)
        return model, [p for p in model.parameters() if p.requires_grad], lambda: model
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        peft = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0,
                                                target_modules="all-linear", task_type="CAUSAL_LM"))
        inner = peft.base_model.model  # the same class as ``model``, with LoRA layers inside
        return inner, [p for p in inner.parameters() if p.requires_grad], peft.merge_and_unload
    raise ValueError(f"train mode must be full or lora, got {mode!r}")


def cosine_schedule(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def finetune(model, examples: list[Example], *, seed: int, epochs: int, lr: float, batch_size: int,
             pad_id: int, mode: str = "full", lora_r: int = 16, precision: str = "float32"):
    """Fine-tune ``model`` (changed in place: pass a copy) on the examples that have targets; AdamW (no
    weight decay), 10% warm-up then cosine to 0, gradient norm clipped at 1. ``seed`` sets the data
    order (and LoRA's initialisation); ``precision``: see ``autocast``. Returns (the fine-tuned model
    in eval mode, statistics)."""
    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)
    usable = [e for e in examples if e.targets > 0]
    trained, params, finish = prepare(model, mode, lora_r)
    plan = [b for _ in range(epochs) for b in length_grouped_batches([len(e.ids) for e in usable], batch_size, rng)]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_schedule(s, len(plan), max(1, len(plan) // 10)))
    trained.train()
    losses = []
    for batch in plan:
        losses.append(train_step(trained, *collate([usable[i] for i in batch], pad_id), precision))
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    last_epoch = losses[-(len(plan) // max(epochs, 1)):]
    stats = {"steps": len(plan), "train_loss": float(np.mean(last_epoch)) if losses else float("nan"),  # last epoch
             "records_used": len(usable), "records_dropped": len(examples) - len(usable),
             "tokens_per_epoch": sum(len(e.ids) for e in usable),
             "target_tokens_per_epoch": sum(e.targets for e in usable)}
    return finish().eval(), stats


def answer_losses(model, examples: list[Example], pad_id: int, batch_size: int = 8,
                  precision: str = "float32") -> np.ndarray:
    """Mean completion-token loss (nats) of each example given its prompt; NaN for one without targets.
    (n,) in input order. Batches are length-sorted so padding stays small."""
    import torch

    out = np.full(len(examples), np.nan)
    order = sorted((i for i, e in enumerate(examples) if e.targets > 0), key=lambda i: len(examples[i].ids))
    model.eval()
    with torch.no_grad():
        for b in range(0, len(order), batch_size):
            rows = order[b : b + batch_size]
            ids, mask, is_target = collate([examples[i] for i in rows], pad_id)
            with autocast(precision):
                hidden, targets = completion_hidden(model, ids, mask, is_target)
            nll = torch.cat([_chunk_nll(model, hidden[c : c + HEAD_CHUNK], targets[c : c + HEAD_CHUNK], precision)
                             for c in range(0, len(targets), HEAD_CHUNK)])  # one chunk of logits at a time
            row_of = torch.arange(len(rows)).unsqueeze(1).expand_as(is_target)[is_target]  # (N,) row of each
            sums = torch.zeros(len(rows)).index_add_(0, row_of, nll)
            counts = torch.bincount(row_of, minlength=len(rows))
            out[rows] = (sums / counts).numpy()
    return out


def _chunk_nll(model, hidden, targets, precision: str):
    """Token losses (n,) of one chunk of hidden states (n, H); its (n, V) logits are freed on return."""
    import torch.nn.functional as F

    with autocast(precision):
        logits = head_logits(model, hidden)
    return F.cross_entropy(logits, targets, reduction="none")


def generate(model, tokenizer, prompts: list[str], *, max_new_tokens: int, batch_size: int = 16) -> list[str]:
    """Greedy answers (in input order): left-padded, length-sorted batches, at most ``max_new_tokens``
    new tokens, stopping at the end token; the text is cut at ``STOP`` (a model that goes on with a new
    Alpaca section has finished its answer) and stripped."""
    import torch

    encoded = [tokenizer(p).input_ids for p in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    answers = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    model.eval()
    with torch.no_grad():
        for b in range(0, len(order), batch_size):
            rows = order[b : b + batch_size]
            T = max(len(encoded[i]) for i in rows)
            ids = torch.tensor([[pad] * (T - len(encoded[i])) + encoded[i] for i in rows])
            mask = torch.tensor([[0] * (T - len(encoded[i])) + [1] * len(encoded[i]) for i in rows])
            new = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=pad)[:, T:]
            for r, i in enumerate(rows):
                answers[i] = tokenizer.decode(new[r], skip_special_tokens=True).split(STOP)[0].strip()
    return answers
