"""The local runner: one process, one model at a time, the chunks in input order."""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from pathlib import Path

from selectit.backends import Backend
from selectit.config import RunConfig
from selectit.formats import Source
from selectit.measures import Measure, ModelInfo
from selectit.progress import progress_bar
from selectit.runners.shard import load_model, measure_shard, model_info
from selectit.store import ScoreStore


def measure_model(source: Source, spec: str | None, config: RunConfig, measures: Sequence[Measure],
                  store: Path | ScoreStore, *, progress: bool = True, desc: str = "model") -> ModelInfo:
    """Load ``spec`` once and compute ``measures`` over every chunk of ``source`` into ``store`` (a path, opened
    and closed here, or an open store such as the Python API's in-memory one, left open)."""
    start = time.perf_counter()
    backend = load_model(config, spec)
    load_seconds = time.perf_counter() - start
    db = store if isinstance(store, ScoreStore) else ScoreStore(store)
    try:
        info = measure_with(backend, spec, source, config, measures, db, progress=progress, desc=desc)
    finally:
        if db is not store:
            db.close()
    info.load_seconds = load_seconds
    del backend
    gc.collect()
    return info


def measure_with(backend: Backend, spec: str | None, source, config: RunConfig, measures: Sequence[Measure],
                 store: ScoreStore, *, progress: bool = True, desc: str = "model") -> ModelInfo:
    """Compute ``measures`` with an already loaded ``backend`` over every chunk of ``source`` into ``store``."""
    start = time.perf_counter()
    info = model_info(backend, spec, source, config, measures)
    bar = progress_bar(len(source), f"{desc} {backend.name}") if progress else None
    try:
        for records in source.chunks():
            outcome = measure_shard(backend, info, records, measures, store, config, bar.update if bar else None)
            info.tokens += outcome.tokens
            info.stored += outcome.stored
    finally:
        if bar:
            bar.close()
    info.seconds = time.perf_counter() - start
    return info
