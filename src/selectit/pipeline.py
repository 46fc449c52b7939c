"""The jobs behind the commands: score a file into a run directory, select from a run directory."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selectit import formats
from selectit.atomic import atomic_write
from selectit.baselines import score_method
from selectit.config import ScoringConfig
from selectit.errors import ConfigError
from selectit.likelihood import GIVEN, GIVEN_BLANK
from selectit.output import Totals, file_sha256, read_config, read_scores, write_chunks, write_run
from selectit.prompts import choose_prompts, labels_for_scale, read_prompts
from selectit.runners.shard import ModelResult
from selectit.scorer import CONTENT_FREE, Scores, combine, model_run, unique_names
from selectit.selection import select_fraction, select_threshold, select_top
from selectit.store import ScoreStore, prompt_key, record_key

STORE = "store.sqlite"
REJECTS = "rejects.jsonl"
SELECTION = "selection.json"  # the last selection made from this run: policy, output, input positions


def score_file(input_path: str | Path, out_dir: str | Path, config: ScoringConfig, *,
               schema: str | None = None, container: str | None = None, progress: bool = True,
               store: str | Path | None = None, skip_bad: bool = False, runner: str = "local",
               ray_address: str | None = None, workers: int | None = None) -> Scored:
    """Score every record of ``input_path``; write ``out_dir``/scores.jsonl and config.json.

    Streamed: the input is checked in one pass, scored chunk by chunk (``config.chunk_size``
    records; with ``runner`` 'local' or 'ray'), and scores.jsonl is written in a last pass that
    reads the input again and looks each record's label probabilities up in the score store
    (default ``out_dir``/store.sqlite). Memory holds one chunk, never the file. Every computed
    batch is stored at once, so running the same command again after a kill continues where it
    stopped. With ``skip_bad``, records that cannot be read are left out and listed with their
    reason in ``out_dir``/rejects.jsonl."""
    from selectit.runners import score_models

    start = time.perf_counter()
    source = formats.scan(input_path, schema=schema, container=container, skip_bad=skip_bad,
                          chunk_size=config.chunk_size)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_rejects(Path(out_dir) / REJECTS, source.rejects)
    store_path = Path(store or Path(out_dir) / STORE)
    if config.method != "selectit":
        if runner != "local":
            raise ConfigError(f"--method {config.method} runs locally only; drop --runner {runner}")
        return _score_baseline(source, out_dir, config, store_path, progress, start)
    labels = labels_for_scale(config.scale)
    prompts = choose_prompts(read_prompts(config.prompts_file), config.num_prompts, config.scale)
    models = score_models(source, config, prompts, labels, store_path, runner=runner, address=ray_address,
                          workers=workers, progress=progress)
    unique_names(models)

    def runner_figures(totals: Totals) -> None:
        for m, result in zip(totals.models, models):
            m["prompt_tokens"], m["seconds"] = result.tokens, round(result.seconds, 3)

    db = ScoreStore(store_path)
    try:
        _, totals = write_chunks(out_dir, _chunk_scores(source, models, config, prompts, labels, db), source,
                                 lambda: time.perf_counter() - start, runner_figures)
    finally:
        db.close()
    (Path(out_dir) / SELECTION).unlink(missing_ok=True)  # made from the old scores
    return Scored(source=source, models=models, totals=totals, prompts=prompts)


@dataclass
class Scored:
    """What score_file did: the input read, each model's run, the figures written to config.json."""

    source: formats.Source
    models: list[ModelResult]
    totals: Totals
    prompts: list[str]
    info: dict = dataclasses.field(default_factory=dict)  # what a baseline method reports (method_info)


def _score_baseline(source: formats.Source, out_dir: str | Path, config: ScoringConfig, store_path: Path,
                    progress: bool, start: float) -> Scored:
    """A method other than SelectIT (selectit.baselines) or one of its single levels: these hold the
    records in memory (they are for comparing selectors, not for 5M-record runs) and run locally."""
    db = ScoreStore(store_path)
    try:
        scores = score_method(list(source.records()), config, progress=progress, store=db)
    finally:
        db.close()
    write_run(out_dir, scores, source, seconds=time.perf_counter() - start)
    (Path(out_dir) / SELECTION).unlink(missing_ok=True)
    totals = Totals()
    totals.add(scores)
    return Scored(source=source, models=[], totals=totals, prompts=scores.prompts, info=scores.info)


def _chunk_scores(source: formats.Source, models: list[ModelResult], config: ScoringConfig, prompts: list[str],
                  labels: list[str], db: ScoreStore) -> Iterator[Scores]:
    """The scores of each chunk of ``source``, in input order, from the label probabilities in ``db``."""
    pkeys = [prompt_key(p) for p in prompts]
    P, S = len(prompts), len(labels)
    content_free = [_content_free(db, m, pkeys, S) for m in models] if config.calibrate else [None] * len(models)
    for records in source.chunks():
        if not records:
            continue
        keys = [(pk, record_key(r)) for r in records for pk in pkeys]  # (n * P,), record-major
        rkeys = [rk for _, rk in keys[::P]]
        runs = []
        for m, cf in zip(models, content_free):
            stored = db.load(m.key, keys)
            grid, cut, errors = np.empty((len(records), P, S)), np.zeros((len(records), P), dtype=bool), {}
            for idx, key in enumerate(keys):
                i, j = divmod(idx, P)
                if key in stored:
                    grid[i, j], cut[i, j] = stored[key]
                elif key in m.errors:
                    grid[i, j] = np.nan
                    errors[(i, j)], cut[i, j] = m.errors[key]
                else:
                    raise ConfigError(f"the score store {db.path} lost the scores of record {records[i].id!r} "
                                      "while scoring (written to by another run?); run the command again")
            losses = _losses(db, m, rkeys, records) if config.likelihood_weight > 0 else None
            runs.append(model_run(m.name, m.num_parameters, m.label_ids, grid, cut.any(axis=1), errors, config,
                                  tokens=0, seconds=0.0, content_free=cf, losses=losses, template=m.template))
        weights, final = combine(runs, config)
        yield Scores(config=config, prompts=prompts, labels=labels, runs=runs, weights=weights, final=final,
                     ids=[r.id for r in records])


def _losses(db: ScoreStore, model: ModelResult, rkeys: list[str], records) -> tuple[np.ndarray, np.ndarray]:
    """(given (n,), blank (n,)) response losses of a chunk's records, from the store."""
    out = []
    for kind in (GIVEN, GIVEN_BLANK):
        stored = db.load_losses(model.loss_key, kind, rkeys)
        missing = [i for i, k in enumerate(rkeys) if k not in stored]
        if missing:
            raise ConfigError(f"the score store {db.path} lost the response losses of record "
                              f"{records[missing[0]].id!r} while scoring (written to by another run?); "
                              "run the command again")
        out.append(np.array([stored[k] for k in rkeys], dtype=np.float64))
    return out[0], out[1]


def _content_free(db: ScoreStore, model: ModelResult, pkeys: list[str], S: int) -> np.ndarray:
    """(P, S) mean label probabilities of the content-free inputs (scored with every chunk, for --calibrate)."""
    keys = [(pk, record_key(r)) for r in CONTENT_FREE for pk in pkeys]
    stored = db.load(model.key, keys)
    probs = np.array([stored[k][0] if k in stored else np.full(S, np.nan) for k in keys])  # (3 * P, S)
    return probs.reshape(len(CONTENT_FREE), len(pkeys), S).mean(axis=0)


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
    Streamed: only the score column is held ((n,) floats); the input is read once more to write
    the chosen records (checking that its ids are those of scores.jsonl). The choice is recorded in
    DIR/selection.json (the report shows it).
    """
    cfg = read_config(run_dir)
    scores, ids = array("d"), hashlib.sha256()
    for row in read_scores(run_dir):
        scores.append(np.nan if row["score"] is None else row["score"])
        ids.update(json.dumps(row["id"]).encode("utf-8") + b"\n")
    scores = np.frombuffer(scores, dtype=np.float64)
    chosen = choose(scores, fraction=fraction, top=top, threshold=threshold)
    source = scored_input(run_dir, cfg, len(scores), ids.digest(), "cannot write the selection")
    if keep_order:
        chosen = np.sort(chosen)
    out = Path(output) if output else Path(run_dir) / f"selected{_suffix(source.path, source.container)}"
    formats.write_selection(source, chosen, out)
    policy = {"fraction": fraction, "top": top, "threshold": threshold}
    record = {"policy": {k: v for k, v in policy.items() if v is not None}, "output": str(out),
              "indices": chosen.tolist()}
    atomic_write(Path(run_dir) / SELECTION, lambda f: json.dump(record, f))
    return Selection(indices=chosen, scores=scores, output=out, total=len(scores))


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
    source = formats.scan(src, schema=info["format"], container=info["container"],
                          skip_bad=info.get("skip_bad", False), chunk_size=cfg["config"].get("chunk_size", 10_000))
    if len(source) != count or ids_digest(r.id for r in source.records()) != digest:
        raise ConfigError(f"{run_dir}/scores.jsonl does not match the records of {src}; score it again")
    return source


def _suffix(src: Path, container: str) -> str:
    if container == "hf":
        return ""  # a datasets folder: DIR/selected
    return src.suffix if src.suffix.lower() in (".json", ".jsonl", ".ndjson", ".parquet", ".csv") else f".{container}"
