"""The vllm backend against the hf backend (float32, the reference) on the same records and model.

    python bench/gpu_check.py [--model PATH] [--records 200] [--dtype bfloat16] [--candidate vllm]

Needs a GPU and vLLM (``pip install 'selectit[vllm]'``) for ``--candidate vllm``; ``--candidate hf``
runs the same comparison with the hf backend in ``--dtype`` (on CPU too), which is how the bfloat16
tolerance below was calibrated. Without ``--model`` the embedded SmolLM2-135M-Instruct is exported
from its GGUF to a safetensors folder first (vLLM does not read it as GGUF; nothing is downloaded, so
this runs on a machine without internet). Each backend runs in its own subprocess (vLLM takes most of
the GPU's memory for its KV cache). Records: the first N of ../shared/data/alpaca_5000.json, or of
examples/alpaca_demo.json when that is not there.

Printed: max |d| of the label probabilities (n x P x S), of the token scores and of the final scores,
the Spearman rank correlation of the final scores, wall times, and PASS/FAIL against the tolerance
for the candidate's dtype (exit code 1 on FAIL):

* float32: both backends compute the same float32 arithmetic with different kernels (summation
  order, fused attention): label probabilities within 1e-3, final scores within 0.05, Spearman >= 0.999.
* bfloat16 / float16: 8 (bf16) or 11 (fp16) mantissa bits. vLLM computes the output head in the
  model's dtype, so a logit near 20 is rounded to a multiple of 0.125 (bf16): up to ~6% relative error
  in a probability from the rounding of its own logit alone, on top of the error carried through the
  layers (the hf backend keeps its head in float32). A label probability of 0.5 can thus move by
  ~0.03-0.06: tolerance 0.08 absolute. The token score takes the argmax label (SPEC 1.2), so a
  near-tie that flips moves a score by a whole step: the maximum is not a useful bound; the rank
  order is. Spearman >= 0.95 and mean |d final| <= 0.1.
  Calibration (2026-11-22, CPU, `--candidate hf --dtype bfloat16 --records 50 --device cpu`, the
  embedded model exported): the hf backend's own bfloat16 (float32 head) against its float32 gives
  max |d prob| 0.034, mean |d final| 0.028, max |d final| 0.25 (argmax flips), Spearman 0.994
  (0.985 on 200 records in bench/speed_200.txt). The bounds leave ~2-3x room for vLLM's bfloat16 head.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = [ROOT.parent / "shared" / "data" / "alpaca_5000.json", ROOT / "examples" / "alpaca_demo.json"]
TOLERANCE = {  # dtype of the candidate -> bounds against the float32 hf reference
    "float32": {"max_prob": 1e-3, "max_final": 0.05, "mean_final": 0.01, "spearman": 0.999},
    "bfloat16": {"max_prob": 0.08, "max_final": None, "mean_final": 0.1, "spearman": 0.95},
    "float16": {"max_prob": 0.08, "max_final": None, "mean_final": 0.1, "spearman": 0.95},
}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties), NaN pairs left out."""
    keep = np.isfinite(a) & np.isfinite(b)
    ra, rb = _ranks(a[keep]), _ranks(b[keep])
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=np.float64)
    for v in np.unique(x):  # average the ranks of ties
        tie = x == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def compare(ref: dict, cand: dict, dtype: str) -> dict:
    """Differences between two runs (arrays probs (n, P, S), token (n, P), final (n,)) and the verdict."""
    d = {
        "max_prob": float(np.nanmax(np.abs(cand["probs"] - ref["probs"]))),
        "max_token": float(np.nanmax(np.abs(cand["token"] - ref["token"]))),
        "max_final": float(np.nanmax(np.abs(cand["final"] - ref["final"]))),
        "mean_final": float(np.nanmean(np.abs(cand["final"] - ref["final"]))),
        "spearman": spearman(ref["final"], cand["final"]),
    }
    tol = TOLERANCE[dtype]
    failed = [k for k, bound in tol.items() if bound is not None and (
        d[k] < bound if k == "spearman" else d[k] > bound)]
    return {**d, "tolerance": tol, "failed": failed, "passed": not failed}


def export_embedded(folder: Path) -> Path:
    """The embedded SmolLM2-135M-Instruct as a float32 safetensors folder (dequantised from its GGUF)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selectit.backends.models import embedded_model

    if (folder / "config.json").is_file():
        return folder
    src = embedded_model()
    tokenizer = AutoTokenizer.from_pretrained(src.path, gguf_file=src.gguf_file)
    gguf = AutoModelForCausalLM.from_pretrained(src.path, gguf_file=src.gguf_file, dtype=torch.float32)
    config = gguf.config
    config.__dict__.pop("quantization_config", None)  # a plain float32 checkpoint, not a GGUF one
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf.state_dict())
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def score_one(args) -> None:
    """Child process: score the records with one backend, save probs/token/final and timings."""
    import selectit
    from selectit import formats
    from selectit.backends import load_backend

    records = formats.from_dicts(json.loads(Path(args.data).read_text())[: args.records])
    options = {"dtype": args.dtype, "device": args.device}
    if args.backend == "vllm":
        options["tensor_parallel_size"] = args.tensor_parallel_size
    start = time.perf_counter()
    backend = load_backend(args.backend, args.model, **options)
    loaded = time.perf_counter()
    scores = selectit.score(records, backends=[backend], num_prompts=args.num_prompts, batch_size=args.batch_size)
    done = time.perf_counter()
    run = scores.runs[0]
    np.savez(args.out, probs=run.probs, token=run.token, final=scores.final,
             seconds=[loaded - start, done - loaded], tokens=[run.tokens])


def child(backend: str, dtype: str, batch_size: int, out: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--_child", "--backend", backend, "--dtype", dtype, "--batch-size",
           str(batch_size), "--out", str(out), "--model", str(args.model), "--data", str(args.data), "--records",
           str(args.records), "--num-prompts", str(args.num_prompts), "--device", args.device,
           "--tensor-parallel-size", str(args.tensor_parallel_size)]
    subprocess.run(cmd, check=True)
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model folder or hub id (default: the embedded model, exported)")
    p.add_argument("--data", type=Path, default=next((d for d in DATA if d.is_file()), DATA[-1]))
    p.add_argument("--records", type=int, default=200)
    p.add_argument("--num-prompts", type=int, default=5)
    p.add_argument("--candidate", choices=("vllm", "hf"), default="vllm")
    p.add_argument("--dtype", choices=tuple(TOLERANCE), default="bfloat16", help="the candidate's dtype")
    p.add_argument("--batch-size", type=int, default=None, help="candidate's (default: 256 vllm, 8 hf)")
    p.add_argument("--device", default="auto", help="the hf backend's device")
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "selectit-gpu-check")
    p.add_argument("--json", type=Path, help="also write the result here")
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child:
        return score_one(args)
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.model = args.model or export_embedded(args.workdir / "SmolLM2-135M-Instruct")
    ref = child("hf", "float32", 8, args.workdir / "ref.npz", args)
    size = args.batch_size or (256 if args.candidate == "vllm" else 8)
    cand = child(args.candidate, args.dtype, size, args.workdir / "cand.npz", args)
    result = compare(ref, cand, args.dtype)
    n = len(ref["final"])
    print(f"model {args.model}; {n} records of {args.data} x {args.num_prompts} prompts; "
          f"reference hf float32, candidate {args.candidate} {args.dtype}")
    for name, r in (("reference", ref), ("candidate", cand)):
        load, score = r["seconds"]
        print(f"  {name}: load {load:.1f}s, score {score:.1f}s ({n / score:.1f} rec/s, {r['tokens'][0] / score:.0f} tok/s)")
    print(f"  max|d prob| {result['max_prob']:.2e}  max|d token| {result['max_token']:.2e}  "
          f"max|d final| {result['max_final']:.2e}  mean|d final| {result['mean_final']:.2e}  "
          f"spearman {result['spearman']:.4f}")
    print(f"  tolerance ({args.dtype}): {result['tolerance']}")
    print("PASS" if result["passed"] else f"FAIL: {', '.join(result['failed'])}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **result}, indent=2))
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
