"""The run directory: ``scores.jsonl`` (SPEC 3) and ``config.json`` (the resolved configuration).

scores.jsonl has one object per input record, in input order:
  id, score (final; null when no model put any probability on a rating label),
  token_scores {model: [P floats]}, sentence_scores {model: float}, label_mass {model: [P floats]},
  label_probs {model: [P x S raw probabilities]}, truncated {model: bool}; with a likelihood weight
  also likelihood, response_loss and blank_loss {model: float} (selectit.reflection.likelihood_scores,
  already included in sentence_scores); a baseline method adds
  its own columns (selectit.baselines: loss, perplexity, loss_alone, ifd, length).
Non-finite numbers are written as null (JSON has no NaN).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
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
    """SHA-256 of a file; of a folder (a datasets folder): of its files' relative paths and bytes."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            h.update(str(file.relative_to(path)).encode("utf-8") + b"\0")
        with file.open("rb") as f:
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
        if any(r.likelihood is not None for r in scores.runs):  # --likelihood-weight: what was added
            rows[-1]["likelihood"] = {r.name: _num(r.likelihood[i]) for r in scores.runs}
            rows[-1]["response_loss"] = {r.name: _num(r.losses[0][i]) for r in scores.runs}
            rows[-1]["blank_loss"] = {r.name: _num(r.losses[1][i]) for r in scores.runs}
        rows[-1].update({name: _num(values[i]) for name, values in scores.extra.items()})
        if i in failed:  # prompt index -> why the model failed; those prompts count as having no score
            rows[-1]["errors"] = failed[i]
    return rows


@dataclass
class Totals:
    """What config.json reports about the scores, summed chunk by chunk (memory: per model, not per record).
    tokens / seconds: per model, as the runner measured them (default: summed from the chunks)."""

    models: list[dict] = field(default_factory=list)
    unscored: int = 0
    _mass: list[list[float]] = field(default_factory=list)

    def add(self, scores: Scores) -> None:
        if not self.models:
            self.models = [{"name": r.name, "num_parameters": r.num_parameters, "weight": float(w),
                            "template": r.template, "label_ids": r.label_ids, "prompt_tokens": 0, "seconds": 0.0,
                            "truncated_records": 0, "mean_label_mass": None, "failed_prompts": 0,
                            "content_free_probs": None if r.content_free is None else r.content_free.tolist()}
                           for r, w in zip(scores.runs, scores.weights)]
            self._mass = [[0.0, 0] for _ in scores.runs]
        for m, mass, run in zip(self.models, self._mass, scores.runs):
            m["prompt_tokens"] += run.tokens
            m["seconds"] = round(m["seconds"] + run.seconds, 3)
            m["truncated_records"] += int(run.truncated.sum())
            m["failed_prompts"] += len(run.errors)
            finite = run.label_mass[np.isfinite(run.label_mass)]
            mass[0] += float(finite.sum())
            mass[1] += finite.size
            m["mean_label_mass"] = mass[0] / mass[1] if mass[1] else None
        self.unscored += int((~np.isfinite(scores.final)).sum())


def resolved_config(scores: Scores, dataset, seconds: float, totals: Totals | None = None) -> dict:
    """config.json. ``scores``: all of them, or (with ``totals``) any chunk, for the prompts and config;
    ``dataset``: a formats.Dataset or formats.Source."""
    if totals is None:
        totals = Totals()
        totals.add(scores)
    out = {
        "selectit_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(seconds, 3),
        "config": scores.config.to_dict(),
        "prompts": scores.prompts,
        "labels": scores.labels,
        "models": totals.models,
        "unscored_records": totals.unscored,
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
    return write_chunks(out_dir, [scores], dataset, lambda: seconds)[0]


def write_chunks(out_dir: str | Path, chunks: Iterable[Scores], dataset=None, seconds: Callable[[], float] = float,
                 adjust: Callable[[Totals], None] | None = None) -> tuple[Path, Totals]:
    """Write scores.jsonl from scores computed chunk by chunk (in input order), streamed, then
    config.json; each file atomically. ``adjust`` may correct the totals before config.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    totals, first = Totals(), []

    def write(f):
        for scores in chunks:
            if not first:
                first.append(scores)
            totals.add(scores)
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in score_rows(scores))

    atomic_write(out / SCORES, write)
    if adjust:
        adjust(totals)
    cfg = resolved_config(first[0], dataset, seconds(), totals)
    atomic_write(out / CONFIG, lambda f: json.dump(cfg, f, indent=2, ensure_ascii=False))
    return out, totals


def read_scores(out_dir: str | Path) -> Iterator[dict]:
    """The scores.jsonl rows of a run directory, one at a time."""
    with (Path(out_dir) / SCORES).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def read_run(out_dir: str | Path) -> tuple[dict, list[dict]]:
    """(config.json, scores.jsonl rows) of a scored run directory."""
    out = Path(out_dir)
    if not (out / SCORES).is_file() or not (out / CONFIG).is_file():
        raise ConfigError(f"{out} is not a scored run directory (no {SCORES} / {CONFIG}); run `selectit score` first")
    cfg = json.loads((out / CONFIG).read_text(encoding="utf-8"))
    return cfg, list(read_scores(out))


def read_config(out_dir: str | Path) -> dict:
    """config.json of a scored run directory."""
    out = Path(out_dir)
    if not (out / SCORES).is_file() or not (out / CONFIG).is_file():
        raise ConfigError(f"{out} is not a scored run directory (no {SCORES} / {CONFIG}); run `selectit score` first")
    return json.loads((out / CONFIG).read_text(encoding="utf-8"))
