"""The run directory: every file name in it, how each is written and read, and its integrity checks.

    DIR/scores.jsonl    one object per input record, in input order (see :func:`score_rows`)
    DIR/config.json     the resolved configuration, prompts, models (with their store keys), figures
    DIR/selected.<ext>  the last selection, in the input's own format (written by selectit.jobs)
    DIR/selection.json  the last selection's policy, output file, input positions and steps (selectit.selection.steps)
    DIR/rejects.jsonl   records left out with --skip-bad, with why
    DIR/report.html     the report (selectit.report)
    DIR/store.sqlite    the score store (selectit.store), unless --store puts it elsewhere
    DIR/.lock           held while a command writes the directory (a second writer is refused)

scores.jsonl columns: id, score (final; null when no score), then the columns the method declares
(selectit.results.Column; e.g. selectit.methods.selectit: token_scores {model: [P floats]},
sentence_scores, label_mass, label_probs, truncated, ...; selectit.methods.ifd: loss, loss_alone, ifd),
then errors {model: {prompt index: why}} where a model failed. A model-level column is {model: value}
over the models that have it ({} where none has: every row has the rating columns, token_scores ...).
Non-finite numbers are written as null (JSON has no NaN).
"""

from __future__ import annotations

import dataclasses
from array import array
import hashlib
import json
import math
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selectit import formats
from selectit.version import __version__
from selectit.atomic import atomic_write
from selectit.errors import ConfigError
from selectit.results import MODEL, Scores

SCORES = "scores.jsonl"
CONFIG = "config.json"
SELECTION = "selection.json"
REJECTS = "rejects.jsonl"
REPORT = "report.html"
STORE = "store.sqlite"
LOCK = ".lock"


def store_path(out_dir: str | Path, store: str | Path | None) -> Path:
    """The run's score store: ``--store`` where given, else OUT/store.sqlite."""
    return Path(store or Path(out_dir) / STORE)


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _nums(a: np.ndarray) -> list:
    return [_nums(v) for v in a] if np.ndim(a) > 1 else [_num(v) for v in a]


# ---------------------------------------------------------------- writing scores

WRITE = {"float": lambda v: _nums(v) if np.ndim(v) else _num(v),  # nested lists of (n, ...) columns
         "int": lambda v: int(v) if math.isfinite(v) else None,
         "bool": bool,
         "text": lambda v: v}  # how a value of each Column kind is written


def score_rows(scores: Scores) -> list[dict]:
    """The scores.jsonl objects of ``scores``, in input order: id, score, the declared columns
    (``scores.schema``), errors where a model failed."""
    failed: dict[int, dict] = {}  # record -> {model: {prompt index: error}}
    for r in scores.runs:
        for (i, j), msg in r.errors.items():
            failed.setdefault(i, {}).setdefault(r.name, {})[str(j)] = msg
    rows = [{"id": rid, "score": _num(scores.final[i])} for i, rid in enumerate(scores.ids)]
    for c in scores.schema.columns:
        write = WRITE[c.kind]
        for i, row in enumerate(rows):
            row[c.field] = ({r.name: write(r.columns[c.name][i]) for r in scores.runs if c.name in r.columns}
                            if c.level == MODEL else write(scores.columns[c.name][i]))
    for i, why in failed.items():  # prompt index -> why the model failed; those prompts count as having no score
        rows[i]["errors"] = why
    return rows


@dataclass
class Totals:
    """What config.json reports about the scores, summed chunk by chunk (memory: per model, not per
    record): each model's figures (``scores.schema.figures``), the records without a score and why."""

    unscored: int = 0
    unscored_why: dict[str, int] = field(default_factory=dict)  # why records got no score -> how many
    records: int = 0
    _figures: list[dict] = field(default_factory=list)  # per model: name -> (how, value so far)

    def add(self, scores: Scores) -> None:
        if not self._figures:
            self._figures = [{} for _ in scores.runs]
        for m, acc in enumerate(self._figures):
            for f in scores.schema.figures:
                value = f.of(scores, m)
                if f.name not in acc:
                    acc[f.name] = (f.how, value)
                elif f.how != "first":
                    before = acc[f.name][1]
                    acc[f.name] = (f.how, tuple(map(sum, zip(before, value))) if f.how == "mean" else before + value)
        missing = np.flatnonzero(~np.isfinite(scores.final))
        self.unscored += len(missing)
        for i in missing if scores.schema.unscored is not None else []:
            why = scores.schema.unscored(scores, int(i))
            self.unscored_why[why] = self.unscored_why.get(why, 0) + 1
        self.records += len(scores.final)

    @property
    def models(self) -> list[dict]:
        """Each model's figures, by name."""
        return [{name: (value[0] / value[1] if value[1] else None) if how == "mean" else value
                 for name, (how, value) in acc.items()} for acc in self._figures]


def write_scores(out_dir: Path, chunks: Iterable[Scores]) -> Totals:
    """Write scores.jsonl from scores computed chunk by chunk (in input order), streamed, atomically."""
    totals = Totals()

    def write(f):
        for scores in chunks:
            totals.add(scores)
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in score_rows(scores))

    atomic_write(Path(out_dir) / SCORES, write)
    return totals


def write_config(out_dir: Path, data: dict) -> None:
    atomic_write(Path(out_dir) / CONFIG, lambda f: json.dump(data, f, indent=2, ensure_ascii=False))


def config_record(*, config: dict, prompts: list[str], labels: list[str], models: list[dict], totals: Totals,
                  source, seconds: float, method: str, extra: dict | None = None) -> dict:
    """config.json: the configuration by section, the prompts and labels, each model (ModelInfo with
    its weight and figures), the records without a score, the input (path, sha256, format)."""
    out = {
        "selectit_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(seconds, 3),
        "method": method,
        "config": config,
        "prompts": prompts,
        "labels": labels,
        "models": models,
        "unscored_records": totals.unscored,
        **({"unscored_why": totals.unscored_why} if totals.unscored_why else {}),
        **(extra or {}),
    }
    if source is not None:
        out["input"] = input_record(source)
    return out


def input_record(source) -> dict:
    return {"path": str(source.path.resolve()), "sha256": file_sha256(source.path), "format": source.schema,
            "container": source.container, "records": len(source), "rejected": len(source.rejects),
            "skip_bad": bool(source.rejects)}


def write_rejects(out_dir: Path, rejects: list[formats.Reject]) -> None:
    """One JSON object per left-out record: where, reason, text (its first 200 characters)."""
    path = Path(out_dir) / REJECTS
    if not rejects:
        path.unlink(missing_ok=True)
        return
    atomic_write(path, lambda f: f.writelines(json.dumps(dataclasses.asdict(r), ensure_ascii=False) + "\n"
                                              for r in rejects))


def write_selection_record(out_dir: Path, policy: dict, output: Path, indices: np.ndarray,
                           steps: dict | None = None) -> None:
    """selection.json: the policy, the output file, the input positions chosen, and what the selection
    steps did (``steps``: duplicates excluded, the largest duplicate clusters, the diversity walk)."""
    record = {"policy": {k: v for k, v in policy.items() if v is not None}, "output": str(output),
              "indices": np.asarray(indices).tolist(), **({"steps": steps} if steps is not None else {})}
    atomic_write(Path(out_dir) / SELECTION, lambda f: json.dump(record, f))


def forget_selection(out_dir: Path, previous: dict | None = None) -> list[Path]:
    """Remove the last selection's record (made from scores that are being replaced). ``previous``: the
    input the replaced scores were of (config.json's ``input`` before); when config.json now names
    another input, what was made from the old one in the directory goes too: its selection
    (``selected*``, e.g. selected.jsonl beside a new selected.json) and report.html. Returns those."""
    out = Path(out_dir)
    (out / SELECTION).unlink(missing_ok=True)
    if previous is None:
        return []
    try:
        now = read_config(out).get("input") or {}
    except ConfigError:
        return []
    if (now.get("path"), now.get("sha256")) == (previous.get("path"), previous.get("sha256")):
        return []
    stale = [p for p in out.iterdir() if p.name == REPORT or p.name == "selected" or p.name.startswith("selected.")]
    for path in stale:
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
    return sorted(stale)


def previous_input(out_dir: Path) -> dict | None:
    """The input a run directory's scores are of (config.json's ``input``), before they are replaced."""
    try:
        return read_config(out_dir).get("input") if (Path(out_dir) / CONFIG).is_file() else None
    except ConfigError:
        return None


# ---------------------------------------------------------------- reading

def check_scored(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if not (out / SCORES).is_file() or not (out / CONFIG).is_file():
        if (out / STORE).is_file() or (out / LOCK).is_file():  # scoring began here and did not finish
            raise ConfigError(f"{out} has no {SCORES} yet: its scoring was interrupted (or is still running); rerun "
                              "the same `selectit score` command to resume (what was computed is stored)")
        raise ConfigError(f"{out} is not a scored run directory (no {SCORES} / {CONFIG}); run `selectit score` first")
    return out


def read_config(out_dir: str | Path) -> dict:
    """config.json of a scored run directory."""
    path = check_scored(out_dir) / CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is damaged ({e}); score the input again") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise ConfigError(f"{path} is not a selectit config.json; score the input again")
    return data


def read_scores(out_dir: str | Path) -> Iterator[dict]:
    """The scores.jsonl rows of a run directory, one at a time; a damaged line is a one-line error."""
    path = check_scored(out_dir) / SCORES
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise ConfigError(f"{path} line {number} is damaged (not JSON); score the input again") from None
            if not isinstance(row, dict) or "id" not in row or "score" not in row:
                raise ConfigError(f"{path} line {number} is not a scores row (no id/score); score the input again")
            yield row


def score_column(out_dir: str | Path) -> tuple[np.ndarray, bytes]:
    """(final scores (n,), NaN where null; the ids' digest, see :func:`ids_digest`), streamed: only the
    score column is held."""
    scores, h = array("d"), hashlib.sha256()
    for row in read_scores(out_dir):
        scores.append(np.nan if row["score"] is None else row["score"])
        h.update(json.dumps(row["id"]).encode("utf-8") + b"\n")
    return np.frombuffer(scores, dtype=np.float64), h.digest()


def model_columns(out_dir: str | Path, cfg: dict, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Per-model columns of scores.jsonl combined over the run's models by their weights (config.json):
    name -> (n,) float64, NaN where a model's value is null. Streamed: only these columns are held.
    A column the rows do not have is a ConfigError naming it."""
    models = [(m["name"], float(m.get("weight", 1.0))) for m in cfg.get("models") or []]
    names = list(names)
    values = {name: array("d") for name in names}
    for number, row in enumerate(read_scores(out_dir), 1):
        for name in names:
            column = row.get(name)
            if not isinstance(column, dict):
                raise ConfigError(f"{Path(out_dir) / SCORES} has no {name!r} column (row {number})")
            total = 0.0
            for model, weight in models:
                v = column.get(model)
                total += weight * (math.nan if v is None else float(v))
            values[name].append(total if models else math.nan)
    return {name: np.frombuffer(v, dtype=np.float64) for name, v in values.items()}


def read_run(out_dir: str | Path) -> tuple[dict, list[dict]]:
    """(config.json, scores.jsonl rows) of a scored run directory."""
    return read_config(out_dir), list(read_scores(out_dir))


def read_selection(out_dir: str | Path) -> dict | None:
    path = Path(out_dir) / SELECTION
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a damaged record of a past selection: as if there were none


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


def ids_digest(ids) -> bytes:
    """sha256 over the records' ids, one JSON value per line (how scores.jsonl and the input are matched)."""
    h = hashlib.sha256()
    for i in ids:
        h.update(json.dumps(i).encode("utf-8") + b"\n")
    return h.digest()


def scored_input(run_dir: str | Path, cfg: dict, count: int, digest: bytes, why: str) -> formats.Source:
    """The input a run scored, to be read again (streamed), after checking it is still the same file
    (sha256) and that its records' ids are those of scores.jsonl (``count`` rows, ids hashing to
    ``digest``, see :func:`ids_digest`); ``why`` ends the error message (what cannot be done without it)."""
    info = cfg.get("input")
    if info is None:
        raise ConfigError(f"{run_dir}/config.json does not name its input file; {why}")
    src = Path(info["path"])
    if not src.exists():
        raise ConfigError(f"the scored input {src} is gone; {why}")
    if file_sha256(src) != info["sha256"]:
        raise ConfigError(f"the scored input {src} changed since scoring; score it again")
    chunk = ((cfg.get("config") or {}).get("execution") or {}).get("chunk_size", 10_000)
    source = formats.scan(src, schema=info["format"], container=info["container"],
                          skip_bad=info.get("skip_bad", False), chunk_size=chunk)
    if len(source) != count or ids_digest(r.id for r in source.records()) != digest:
        raise ConfigError(f"{run_dir}/scores.jsonl does not match the records of {src}; score it again")
    return source


# ---------------------------------------------------------------- the directory itself

def prepare(out_dir: str | Path) -> Path:
    """The run directory ``out_dir``, created if needed; a one-line error when it cannot be."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory; give a directory for the run")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write the run directory {out}: {e.strerror or e}") from None
    return out


@contextmanager
def reading(out_dir: str | Path, what: str, advice: str):
    """Hold the run directory's lock while a command only reads it (``locked``), so it never reads scores
    another command is replacing; a directory this process cannot write is read without it (no lock can
    be taken there, and a run directory nobody may write is not being re-scored by this account)."""
    if os.access(out_dir, os.W_OK):
        with locked(out_dir, what, advice) as out:
            yield out
    else:
        yield Path(out_dir)


@contextmanager
def locked(out_dir: str | Path, what: str = "selectit", advice: str = "wait for it to finish or use another --out"):
    """Hold the run directory's lock while a command writes it; a second writer is refused with one line
    naming the holder (host, process, command, since when). The lock is released on exit, even on error;
    a holder that died leaves no lock behind (the operating system drops it). ``advice``: what the
    refused command should do."""
    from filelock import FileLock, Timeout

    out = prepare(out_dir)
    path = out / LOCK
    lock = FileLock(str(path) + ".flock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = path.read_text(encoding="utf-8", errors="replace").strip() if path.is_file() else "another process"
        raise ConfigError(f"{out} is in use by {holder}; {advice}") from None
    try:
        path.write_text(f"{what} (pid {os.getpid()} on {socket.gethostname()}, since "
                        f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv[:3])})", encoding="utf-8")
        yield out
    finally:
        path.unlink(missing_ok=True)
        lock.release()
