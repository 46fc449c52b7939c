"""The Ray runner: the input's chunks become a Ray Data dataset (one row per chunk), mapped by a pool
of stateful actors (``map_batches`` with a callable class, ``workers`` of them, a GPU each when the
cluster has GPUs and the backend uses one). Each actor loads the model once and runs
:func:`selectit.runners.shard.measure_shard`, the local runner's shard function, on the chunks it is given.

The store: each actor writes its batches to its own SQLite file next to the store (no two writers
on one file; in ``<store>.parts/``), and reads what is stored from the store and from every part
file. The driver merges the parts into the store, one transaction each, then deletes them (a part
left by a killed driver is merged by the next run). An actor that dies is restarted by Ray and its
chunk retried; the retried chunk finds the batches the dead actor committed, so at most the batch
in flight is lost.

The input file and the store must be reachable at the same path from every worker: on one node
they are; on a multi-node cluster put them on a shared filesystem.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from selectit.backends import wants_gpu
from selectit.config import RunConfig
from selectit.errors import USER_ERRORS, ConfigError, optional_import
from selectit.formats import Source
from selectit.measures import Measure, ModelInfo
from selectit.runners.shard import load_model, measure_shard, model_info
from selectit.store import TABLES, ScoreStore

PARTS = ".parts"
DEFAULT_WORKERS = 2


def _ray():
    return optional_import("ray", "--runner ray needs Ray", "ray")


def parts_dir(store: Path) -> Path:
    return store.with_name(store.name + PARTS)


class SplitStore:
    """Reads from the store and every part file; writes to this actor's own part file."""

    def __init__(self, store: Path):
        self.store, self.parts = store, parts_dir(store)
        self.parts.mkdir(parents=True, exist_ok=True)
        self.own = ScoreStore(self.parts / f"{uuid.uuid4().hex}.sqlite")
        self.path = self.own.path

    def _read(self, lookup, keys) -> dict:
        keys, found = list(keys), {}
        for path in [self.store, *sorted(self.parts.glob("*.sqlite"))]:
            if path.exists():
                db = self.own if path == self.own.path else ScoreStore(path)
                try:
                    found.update(lookup(db, [k for k in keys if k not in found]))
                finally:
                    if db is not self.own:
                        db.close()
        return found

    def load(self, model, keys):
        return self._read(lambda db, todo: db.load(model, todo), keys)

    def load_failures(self, model, keys):
        return self._read(lambda db, todo: db.load_failures(model, todo), keys)

    def load_losses(self, model, kind, records):
        return self._read(lambda db, todo: db.load_losses(model, kind, todo), records)

    def load_vectors(self, model, kind, records, dtype):
        return self._read(lambda db, todo: db.load_vectors(model, kind, todo, dtype), records)

    def load_views(self, model, records):
        return self._read(lambda db, todo: db.load_views(model, todo), records)

    def put(self, model, rows) -> None:
        self.own.put(model, rows)

    def put_views(self, model, rows) -> None:
        self.own.put_views(model, rows)

    def put_vectors(self, model, kind, rows) -> None:
        self.own.put_vectors(model, kind, rows)

    def put_failures(self, model, rows) -> None:
        self.own.put_failures(model, rows)

    def put_losses(self, model, kind, rows) -> None:
        self.own.put_losses(model, kind, rows)

    def close(self) -> None:
        self.own.close()


def merge_parts(store: Path) -> int:
    """Move every part file's rows into the store, one transaction per part; returns rows merged."""
    parts = parts_dir(store)
    if not parts.is_dir():
        return 0
    merged = 0
    db = ScoreStore(store)
    try:
        for part in sorted(parts.glob("*.sqlite")):
            ScoreStore(part).close()  # a part made before a table existed gets it (CREATE TABLE IF NOT EXISTS)
            db.db.execute("ATTACH DATABASE ? AS part", (str(part),))
            try:
                with db.db:
                    db.db.execute("BEGIN IMMEDIATE")
                    for table in TABLES:
                        merged += db.db.execute(f"INSERT OR REPLACE INTO {table} SELECT * FROM part.{table}").rowcount
            finally:
                db.db.execute("DETACH DATABASE part")
            for suffix in ("", "-wal", "-shm"):
                Path(str(part) + suffix).unlink(missing_ok=True)
        parts.rmdir()
    finally:
        db.close()
    return merged


class ShardMeasurer:
    """A Ray Data actor: one model, loaded once; measures the chunks it is given into its part file."""

    def __init__(self, source: Source, spec: str | None, config: RunConfig, measures: list[Measure], store: str):
        self.source, self.config, self.measures = source, config, measures
        start = time.perf_counter()
        self.backend = load_model(config, spec)
        self.info = model_info(self.backend, spec, source, config, measures)
        self.info.load_seconds = time.perf_counter() - start
        self.store = SplitStore(Path(store))

    def __call__(self, batch: dict) -> dict:
        out = {"chunk": [], "records": [], "tokens": [], "stored": [], "info": []}
        for k in batch["chunk"]:
            records = self.source.chunk(int(k))
            outcome = measure_shard(self.backend, self.info, records, self.measures, self.store, self.config)
            out["chunk"].append(int(k))
            out["records"].append(len(records))
            out["tokens"].append(outcome.tokens)
            out["stored"].append(outcome.stored)
            out["info"].append(json.dumps(self.info.to_dict()))
        return {name: np.asarray(values) for name, values in out.items()}


def _raise_user_error(error: BaseException) -> None:
    """A user error (bad model, labels that are not one token...) raised inside an actor: re-raise it
    as itself, so the command line shows its one line instead of Ray's traceback."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, USER_ERRORS):
            raise error.with_traceback(None) from None
        error = getattr(error, "cause", None) or error.__cause__


def measure_model(source: Source, spec: str | None, config: RunConfig, measures: Sequence[Measure], store: Path, *,
                  progress: bool = True, desc: str = "model") -> ModelInfo:
    """Compute ``measures`` with ``spec`` over every chunk of ``source`` on Ray actors; merge their results
    into the store at ``store``. Joins the Ray cluster at ``--ray-address`` (or the one already started in
    this process; otherwise starts a local one)."""
    ray = _ray()
    start = time.perf_counter()
    ex = config.execution
    workers = ex.workers or DEFAULT_WORKERS
    store = Path(store).resolve()
    merge_parts(store)  # what a killed run left
    if not ray.is_initialized():
        ray.init(address=ex.ray_address, include_dashboard=False, logging_level=logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    cpus, gpus = ray.cluster_resources().get("CPU", 0), ray.cluster_resources().get("GPU", 0)
    use_gpu = gpus >= 1 and wants_gpu(config.model.backend, config.model.device)
    if (gpus if use_gpu else cpus) < workers:
        raise ConfigError(f"--workers {workers} needs {workers} {'GPUs' if use_gpu else 'CPUs'}; the Ray cluster "
                          f"has {gpus if use_gpu else cpus:g}")
    chunks = ray.data.from_items([{"chunk": k} for k in range(len(source.starts))])
    # Ray Data restarts a dead actor and retries its chunk by default (max_restarts / max_task_retries -1)
    measured = chunks.map_batches(
        ShardMeasurer, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
        num_gpus=1 if use_gpu else 0,
        fn_constructor_kwargs={"source": source, "spec": spec, "config": config, "measures": list(measures),
                               "store": str(store)},
    )
    info = None
    try:
        for row in measured.iter_rows():
            if info is None:
                info = ModelInfo.from_dict(json.loads(str(row["info"])))
                info.tokens = info.stored = 0
            info.tokens += int(row["tokens"])
            info.stored += int(row["stored"])
    except ray.exceptions.RayError as e:
        _raise_user_error(e)
        raise
    finally:
        merge_parts(store)
    info.seconds = time.perf_counter() - start - info.load_seconds
    return info
