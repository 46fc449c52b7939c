"""The arms of ``bench/finetune_eval.py`` and their selection, through the command line only (issue 19):
the library's internals are being redesigned, `selectit score` and ``selectit.selection.policy`` stay.

Each arm is a list of `selectit score` flags (``ARMS``); adding an arm is one line. The runs go one after
another in a background thread (``Scorer``), each in its own subprocess with its own thread count, so
that on a 2-core machine the scoring uses one core while the fine-tuning uses the other: an arm's
fine-tune waits only for its own selection.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

# {seed}: the training seed (a new random subset per seed); {gemma}: the Gemma-3-270M GGUF file.
# None: the whole pool, nothing scored. The order is the default order of the runs: arms that need no
# scoring model first, so the fine-tuning has work while the model-based scorings run.
ARMS: dict[str, tuple[str, ...] | None] = {
    "full": None,
    "random": ("--method", "random", "--seed", "{seed}"),
    "length": ("--method", "length"),
    # The default's arms keep the 5 rating prompts they ran with (issue 27 made 4 the default: selectit-p4).
    "selectit": ("--num-prompts", "5"),
    # the default before issue 19
    "selectit-v1": ("--likelihood-term", "per-token", "--likelihood-weight", "1", "--num-prompts", "5"),
    "perplexity": ("--method", "perplexity"),
    "ifd": ("--method", "ifd"),
    "selectit-paper": ("--paper",),
    "selectit-2models": ("--model", "embedded", "--model", "{gemma}", "--num-prompts", "5"),
    # the default's scores, then a diversity-aware selection (SELECT below)
    "selectit-diversity": ("--num-prompts", "5"),
    # Named precision, so the arm keeps its meaning: `selectit` ran in float32 until --dtype auto became the
    # default (issue 17); this one is the default since then (bfloat16 where the hardware runs it natively).
    "selectit-auto": ("--dtype", "auto", "--num-prompts", "5"),
    # The learned proxy (issue 18): 10% of the pool (50 records) scored in full, the rest predicted from the
    # default feature rung. Its refusal bound is off: 10 held-out records cannot judge it (bench/proxy.py does).
    "selectit-proxy": ("--proxy", "--proxy-sample", "0.1", "--proxy-min-spearman", "-1", "--num-prompts", "5"),
    # Issue 27's frontier choice: the default with its first 4 rating prompts (the subset the development
    # seed chose), --dtype auto: the default since issue 27, its flags spelled out.
    "selectit-p4": ("--dtype", "auto", "--num-prompts", "4"),
}

# Arms whose selection is a `selectit select` step on their scores rather than the plain top fraction:
# the flags after `selectit select RUN --fraction F` (issue 16). D 0.1 on the 500-record pool with the
# default's SmolLM2 embeddings passes over 17 of the first 117 records walked (0.05: 1; 0.2: the walk
# cannot fill 20%).
SELECT: dict[str, tuple[str, ...]] = {"selectit-diversity": ("--diversity", "0.1")}


def arm_flags(arm: str, seed: int, gemma: Path | None) -> list[str]:
    """The `selectit score` flags of ``arm`` for ``seed``. Raises ValueError for the whole-pool arm or
    when the arm needs the Gemma file and none is given."""
    flags = ARMS[arm]
    if flags is None:
        raise ValueError(f"arm {arm} is the whole pool: nothing to score")
    if any("{gemma}" in f for f in flags) and gemma is None:
        raise ValueError(f"arm {arm} needs the Gemma GGUF file")
    return [f.format(seed=seed, gemma=gemma) for f in flags]


def run_name(arm: str, seed: int) -> str:
    """A random subset per seed gets its own run directory; a deterministic selection one for all seeds."""
    return f"{arm}-{seed}" if "{seed}" in "".join(ARMS[arm] or ()) else arm


def read_scores(run_dir: Path) -> np.ndarray:
    """The scores of a run's scores.jsonl, in input order, NaN where the score is null. (n,)"""
    rows = [json.loads(line) for line in (run_dir / "scores.jsonl").read_text(encoding="utf-8").splitlines()]
    return np.array([np.nan if r["score"] is None else r["score"] for r in rows], dtype=np.float64)


class Scorer:
    """Runs `selectit score` for each submitted arm, one run at a time, in a background thread.

    ``submit(name, flags)`` queues a run; ``future(name)`` is its selection: the selected pool positions
    (best first, ``selectit.selection.policy.select_fraction``); ``timings`` has each run's wall and
    CPU seconds (the subprocess's user + system time); ``close()`` cancels what has not started and
    stops the running subprocess."""

    def __init__(self, pool: Path, out: Path, n: int, fraction: float, threads: int = 1):
        self.pool, self.out, self.n, self.fraction = pool, out, n, fraction
        self.env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        self.timings: dict[str, dict] = {}
        self._futures: dict[str, Future] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="selectit-score")
        self._child: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def submit(self, name: str, flags: list[str]) -> None:
        if name not in self._futures:
            self._futures[name] = self._executor.submit(self._run, name, flags)

    def future(self, name: str) -> Future:
        return self._futures[name]

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            if self._child is not None and self._child.poll() is None:
                self._child.terminate()

    def _run(self, name: str, flags: list[str]) -> list[int]:
        from selectit.selection.policy import select_fraction

        run_dir = self.out / "runs" / name
        cmd = [sys.executable, "-m", "selectit", "score", str(self.pool), "--out", str(run_dir),
               "--store", str(self.out / "store.sqlite"), "--quiet", *flags]
        start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        with self._lock:
            self._child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                           env=self.env)
        _, stderr = self._child.communicate()
        if self._child.returncode != 0:
            raise RuntimeError(f"selectit score failed for {name} (exit {self._child.returncode}): "
                               f"{' '.join(cmd)}\n{stderr[-3000:]}")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        self.timings[name] = {"wall": round(time.perf_counter() - start, 1), "cpu": round(cpu, 1)}
        scores = read_scores(run_dir)
        if len(scores) != self.n:
            raise RuntimeError(f"{name}: scores.jsonl has {len(scores)} rows for {self.n} records")
        if name in SELECT:  # run_name(arm, seed) is the arm's name: its selection is deterministic
            chosen = self._select(run_dir, SELECT[name])
        else:
            chosen = select_fraction(scores, self.fraction).tolist()
        print(f"selected {name}: {len(chosen)} of {self.n} ({self.timings[name]})", flush=True)
        return chosen

    def _select(self, run_dir: Path, flags: tuple[str, ...]) -> list[int]:
        """`selectit select RUN --fraction F *flags`: the positions it chose, best first (selection.json)."""
        cmd = [sys.executable, "-m", "selectit", "select", str(run_dir), "--fraction", str(self.fraction),
               "--output", str(run_dir / "selected.json"), *flags]
        done = subprocess.run(cmd, capture_output=True, text=True, env=self.env)
        if done.returncode != 0:
            raise RuntimeError(f"selectit select failed (exit {done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
        print(done.stdout.strip(), flush=True)
        return json.loads((run_dir / "selection.json").read_text(encoding="utf-8"))["indices"]
