"""The run directory: ``scores.jsonl`` (SPEC 3) and ``config.json`` (the resolved configuration).

scores.jsonl has one object per input record, in input order:
  id, score (final; null when no model put any probability on a rating label),
  token_scores {model: [P floats]}, sentence_scores {model: float}, label_mass {model: [P floats]},
  label_probs {model: [P x S raw probabilities]}, truncated {model: bool}; a baseline method adds
  its own columns (selectit.baselines: loss, perplexity, loss_alone, ifd, length).
Non-finite numbers are written as null (JSON has no NaN).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np

from selectit import __version__
from selectit.atomic import atomic_write
from selectit.errors import ConfigError
from selectit.formats import Dataset
from selectit.scorer import Scores

SCORES = "scores.jsonl"
CONFIG = "config.json"


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _nums(a: np.ndarray) -> list:
    return [_nums(v) for v in a] if np.ndim(a) > 1 else [_num(v) for v in a]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def score_rows(scores: Scores) -> list[dict]:
    """The scores.jsonl objects, in input order."""
    rows = []
    failed: dict[int, dict] = {}  # record -> {model: {prompt index: error}}
    for r in scores.runs:
        for (i, j), msg in r.errors.items():
            failed.setdefault(i, {}).setdefault(r.name, {})[str(j)] = msg
    for i, rid in enumerate(scores.ids):
        rows.append({
            "id": rid,
            "score": _num(scores.final[i]),
            "token_scores": {r.name: _nums(r.token[i]) for r in scores.runs},
            "sentence_scores": {r.name: _num(r.sentence[i]) for r in scores.runs},
            "label_mass": {r.name: _nums(r.label_mass[i]) for r in scores.runs},
            "label_probs": {r.name: _nums(r.probs[i]) for r in scores.runs},
            "truncated": {r.name: bool(r.truncated[i]) for r in scores.runs},
        })
        rows[-1].update({name: _num(values[i]) for name, values in scores.extra.items()})
        if i in failed:  # prompt index -> why the model failed; those prompts count as having no score
            rows[-1]["errors"] = failed[i]
    return rows


def resolved_config(scores: Scores, dataset: Dataset | None, seconds: float) -> dict:
    models = []
    for run, weight in zip(scores.runs, scores.weights):
        mass = run.label_mass[np.isfinite(run.label_mass)]
        models.append({
            "name": run.name, "num_parameters": run.num_parameters, "weight": float(weight),
            "label_ids": run.label_ids, "prompt_tokens": run.tokens, "seconds": round(run.seconds, 3),
            "truncated_records": int(run.truncated.sum()),
            "mean_label_mass": float(mass.mean()) if mass.size else None,
            "failed_prompts": len(run.errors),
        })
    out = {
        "selectit_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(seconds, 3),
        "config": scores.config.to_dict(),
        "prompts": scores.prompts,
        "labels": scores.labels,
        "models": models,
        "unscored_records": int((~np.isfinite(scores.final)).sum()),
    }
    if scores.info:
        out["method_info"] = scores.info
    if dataset is not None:
        out["input"] = {
            "path": str(dataset.path.resolve()), "sha256": file_sha256(dataset.path),
            "format": dataset.schema, "container": dataset.container, "records": len(dataset),
            "rejected": len(dataset.rejects), "skip_bad": bool(dataset.rejects),
        }
    return out


def write_run(out_dir: str | Path, scores: Scores, dataset: Dataset | None = None, seconds: float = 0.0) -> Path:
    """Write scores.jsonl and config.json into ``out_dir`` (created if needed); each file atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = score_rows(scores)
    atomic_write(out / SCORES, lambda f: f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    cfg = resolved_config(scores, dataset, seconds)
    atomic_write(out / CONFIG, lambda f: json.dump(cfg, f, indent=2, ensure_ascii=False))
    return out


def read_run(out_dir: str | Path) -> tuple[dict, list[dict]]:
    """(config.json, scores.jsonl rows) of a scored run directory."""
    out = Path(out_dir)
    if not (out / SCORES).is_file() or not (out / CONFIG).is_file():
        raise ConfigError(f"{out} is not a scored run directory (no {SCORES} / {CONFIG}); run `selectit score` first")
    cfg = json.loads((out / CONFIG).read_text(encoding="utf-8"))
    with (out / SCORES).open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return cfg, rows
