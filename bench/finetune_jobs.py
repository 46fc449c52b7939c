"""The fine-tune-and-evaluate jobs of ``bench/finetune_eval.py``, run in worker processes (issue 19).

Each worker process loads the model once (``init``), then runs jobs (``run``): fine-tune a copy of the
model on one arm's records with one seed, evaluate it, and return the result row. Workers are separate
processes with one torch thread each: on this 2-core CPU two single-threaded processes (or one, next to
the `selectit score` runs) use both cores fully, where one process with two threads gains ~1.6x at best
and much less when the machine is shared (OpenMP threads wait for each other).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np

import health
import ifeval_prompts
import sft

_STATE: dict = {}  # this worker's settings, model, tokenizer, pool and eval sets (set by ``init``)


def init(args, model_path: Path, pool_path: Path | None, sets: dict, prompts: list, health_prompts=()) -> None:
    """Worker start: one torch thread, the model and tokenizer loaded once, the pool read once (None: the
    jobs bring their records, ``run(..., records=...)``). ``health_prompts``: (instruction, input) pairs
    whose greedy answers are checked by ``bench/health.py``."""
    import torch

    torch.set_num_threads(args.threads)
    with Clock() as loaded:
        model, tokenizer = load_model(model_path)
    records = json.loads(pool_path.read_text(encoding="utf-8")) if pool_path is not None else None
    _STATE.update(args=args, model=model, tokenizer=tokenizer, records=records, sets=sets, prompts=prompts,
                  health=list(health_prompts), load_seconds=loaded.seconds)


def run(arm: str, seed: int, positions: list[int] | None, records: list[dict] | None = None,
        name: str | None = None) -> dict:
    """One job: fine-tune on the pool records at ``positions`` (or on ``records``, given) with ``seed`` and
    evaluate; both None evaluates the model as loaded (the "base" row). Writes OUT/generations/NAME-SEED.jsonl
    (NAME: ``name``, default the arm) and returns the result row (metrics, per-item reference losses,
    training statistics, composition, wall and CPU seconds)."""
    args, base, tokenizer = _STATE["args"], _STATE["model"], _STATE["tokenizer"]
    row = {"arm": arm, "seed": seed, "seconds": {"load": _STATE["load_seconds"]}}
    model = base
    if positions is not None and records is None:
        records = [_STATE["records"][i] for i in positions]
    if records is not None:
        chosen = records
        with Clock() as trained:
            model, train = train_arm(base, tokenizer, chosen, seed, args)
        row.update(selected=len(chosen), **train, composition=composition(chosen))
        row["seconds"]["train"] = trained.seconds
    with Clock() as evaluated:
        metrics, answers, parts = evaluate(model, tokenizer, _STATE["sets"], _STATE["prompts"], args)
        per_item = metrics.pop("per_item")
        if _STATE["health"]:
            with Clock() as clock:
                healthy = sft.generate(model, tokenizer, [sft.alpaca_prompt(q, i) for q, i in _STATE["health"]],
                                       max_new_tokens=args.max_new_tokens)
                metrics["health"] = health.shares(healthy)
            parts["health"] = clock.seconds
    row.update(eval=metrics, per_item=per_item)
    row["seconds"].update(eval=evaluated.seconds, eval_parts=parts)
    write_answers(args.out / "generations" / f"{name or arm}-{seed}.jsonl", _STATE["prompts"], answers)
    if _STATE["health"]:
        write_health(args.out / "generations" / f"{name or arm}-{seed}.health.jsonl", _STATE["health"], healthy)
    return row


def composition(records: list[dict]) -> dict:
    """What a selection is made of, by the report's rules (the instruction is Alpaca's instruction plus its
    input, as selectit reads it): mean instruction and response words, share of calculation records, and
    the task-type mix (first word of the instruction, questions grouped) as {type: share}, commonest first."""
    from collections import Counter

    from selectit.report.stats import involves_calculation, task_type, word_counts

    instructions = [r["instruction"] + (f"\n{r['input']}" if r.get("input", "").strip() else "") for r in records]
    responses = [r["output"] for r in records]
    types = Counter(task_type(i) for i in instructions)
    return {"instruction_words": float(word_counts(instructions).mean()),
            "response_words": float(word_counts(responses).mean()),
            "calculation": float(np.mean([involves_calculation(i, o) for i, o in zip(instructions, responses)])),
            "task_types": {t: c / len(records) for t, c in types.most_common()}}


def load_model(path: Path):
    """(model, tokenizer) from a GGUF file, dequantised to float32, as a plain model of the same class:
    a model loaded from GGUF keeps a "quantizer" that peft and save_pretrained refuse."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    model.tie_weights()
    return model.eval(), tokenizer


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def evaluate(model, tokenizer, sets: dict, prompts: list, args) -> tuple[dict, list[str], dict]:
    """Reference-answer losses of each set (float32) and the constraint prompts' accuracy; returns
    (metrics, the greedy answers, {part: {"wall", "cpu"}} seconds). ``metrics["per_item"]``: {set: each
    answer's loss, in the set's order, rounded to 1e-5}, for paired comparisons across arms."""
    metrics, seconds, per_item = {}, {}, {}
    for name, items in sets.items():
        with Clock() as clock:
            examples = [sft.encode(tokenizer, sft.alpaca_prompt(q, i), a, args.max_length) for q, i, a in items]
            losses = sft.answer_losses(model, examples, pad_id(tokenizer))
            metrics[name] = float(np.nanmean(losses))
            per_item[name] = [None if np.isnan(x) else round(float(x), 5) for x in losses]
        seconds[name] = clock.seconds
    metrics["per_item"] = per_item
    answers = []
    if prompts:
        with Clock() as clock:
            answers = sft.generate(model, tokenizer, [sft.alpaca_prompt(p.instruction, p.input) for p in prompts],
                                   max_new_tokens=args.max_new_tokens)
            acc = ifeval_prompts.accuracy(prompts, answers)
        metrics.update(ifeval_strict=acc["strict"], ifeval_loose=acc["loose"], ifeval_per_kind=acc["per_kind"])
        seconds["generate"] = clock.seconds
    return metrics, answers, seconds


def train_arm(base, tokenizer, records: list[dict], seed: int, args):
    """A fine-tuned copy of ``base`` on ``records``, and its training statistics."""
    examples = [sft.encode(tokenizer, sft.alpaca_prompt(r["instruction"], r.get("input", "")), r["output"],
                           args.max_length) for r in records]
    model, stats = sft.finetune(copy.deepcopy(base), examples, seed=seed, epochs=args.epochs, lr=args.lr,
                                batch_size=args.batch_size, pad_id=pad_id(tokenizer), mode=args.train,
                                lora_r=args.lora_r, precision=args.precision)
    stats["records_cut"] = sum(len(e.ids) == args.max_length for e in examples)  # lost their end (and more)
    stats["train_tokens"] = stats["tokens_per_epoch"] * args.epochs
    stats["target_tokens"] = stats["target_tokens_per_epoch"] * args.epochs
    return model, stats


class Clock:
    """Wall and CPU seconds of a block (CPU: this worker process's). On a machine shared with other jobs
    the CPU time of a single-threaded worker is what the work costs on an idle core."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = {"wall": round(time.perf_counter() - self.wall, 1),
                        "cpu": round(time.process_time() - self.cpu, 1)}


def write_health(path: Path, prompts: list, answers: list[str]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for (instruction, input_), a in zip(prompts, answers):
            f.write(json.dumps({"instruction": instruction, "input": input_, "answer": a,
                                "problems": sorted(health.problems(a))}) + "\n")


def write_answers(path: Path, prompts: list, answers: list[str]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for p, a in zip(prompts, answers):
            f.write(json.dumps({"key": p.key, "kind": p.kind, "instruction": p.instruction, "input": p.input,
                                "answer": a, "strict_loose": ifeval_prompts.check(p, a)}) + "\n")
