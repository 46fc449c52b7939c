"""The jobs behind the commands: score a file into a run directory, select from a run directory."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selectit import formats
from selectit.atomic import atomic_write
from selectit.baselines import score_method
from selectit.config import ScoringConfig
from selectit.errors import ConfigError
from selectit.output import file_sha256, read_run, write_run
from selectit.scorer import Scores
from selectit.selection import select_fraction, select_threshold, select_top
from selectit.store import ScoreStore

STORE = "store.sqlite"
REJECTS = "rejects.jsonl"


def score_file(input_path: str | Path, out_dir: str | Path, config: ScoringConfig, *,
               schema: str | None = None, progress: bool = True, store: str | Path | None = None,
               skip_bad: bool = False) -> tuple[formats.Dataset, Scores]:
    """Read ``input_path``, score every record, write ``out_dir``/scores.jsonl and config.json.

    Label probabilities go to the score store (default ``out_dir``/store.sqlite) batch by batch, so
    running the same command again after a kill continues where it stopped. With ``skip_bad``, records
    that cannot be read are left out and listed with their reason in ``out_dir``/rejects.jsonl."""
    start = time.perf_counter()
    dataset = formats.read(input_path, schema=schema, skip_bad=skip_bad)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_rejects(Path(out_dir) / REJECTS, dataset.rejects)
    db = ScoreStore(store or Path(out_dir) / STORE)
    try:
        scores = score_method(dataset.records, config, progress=progress, store=db)
    finally:
        db.close()
    write_run(out_dir, scores, dataset, seconds=time.perf_counter() - start)
    return dataset, scores


@dataclass
class Selection:
    indices: np.ndarray  # positions in the input, best first
    scores: np.ndarray  # (n,) final scores of every record
    output: Path
    total: int


def write_rejects(path: Path, rejects: list[formats.Reject]) -> None:
    """One JSON object per left-out record: where, reason, text (its first 200 characters)."""
    if not rejects:
        path.unlink(missing_ok=True)
        return
    atomic_write(path, lambda f: f.writelines(json.dumps(dataclasses.asdict(r), ensure_ascii=False) + "\n"
                                              for r in rejects))


def choose(scores: np.ndarray, *, fraction: float | None = None, top: int | None = None,
           threshold: float | None = None) -> np.ndarray:
    """Apply exactly one policy; returns input positions, best first."""
    given = [x is not None for x in (fraction, top, threshold)]
    if sum(given) != 1:
        raise ConfigError("give exactly one of --fraction, --top, --threshold")
    try:
        if fraction is not None:
            return select_fraction(scores, fraction)
        if top is not None:
            return select_top(scores, top)
        return select_threshold(scores, threshold)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def select_run(run_dir: str | Path, *, fraction: float | None = None, top: int | None = None,
               threshold: float | None = None, output: str | Path | None = None,
               keep_order: bool = False) -> Selection:
    """Pick records from a scored run and write them in the input's own format, unchanged.

    Written best first, or in input order with ``keep_order``. Default output: DIR/selected<ext>.
    """
    cfg, rows = read_run(run_dir)
    scores = np.array([np.nan if r["score"] is None else r["score"] for r in rows], dtype=np.float64)
    chosen = choose(scores, fraction=fraction, top=top, threshold=threshold)
    info = cfg.get("input")
    if info is None:
        raise ConfigError(f"{run_dir}/config.json does not name its input file; cannot write the selection")
    src = Path(info["path"])
    if not src.is_file():
        raise ConfigError(f"the scored input {src} is gone; cannot write the selection")
    if file_sha256(src) != info["sha256"]:
        raise ConfigError(f"the scored input {src} changed since scoring; score it again")
    dataset = formats.read(src, schema=info["format"], container=info["container"],
                           skip_bad=info.get("skip_bad", False))
    if [r.id for r in dataset.records] != [row["id"] for row in rows]:
        raise ConfigError(f"{run_dir}/scores.jsonl does not match the records of {src}; score it again")
    if keep_order:
        chosen = np.sort(chosen)
    out = Path(output) if output else Path(run_dir) / f"selected{_suffix(src, dataset.container)}"
    formats.write(dataset, chosen.tolist(), out)
    return Selection(indices=chosen, scores=scores, output=out, total=len(rows))


def _suffix(src: Path, container: str) -> str:
    return src.suffix if src.suffix.lower() in (".json", ".jsonl", ".ndjson") else f".{container}"
