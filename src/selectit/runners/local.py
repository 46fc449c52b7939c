"""The local runner: one process, one model at a time, the chunks in input order."""

from __future__ import annotations

import gc
import time
from pathlib import Path

from selectit.config import ScoringConfig
from selectit.formats import Source
from selectit.runners.shard import ModelResult, score_shard
from selectit.scorer import _progress_bar, load_model, setup_model
from selectit.store import ScoreStore


def score_model(source: Source, spec: str | None, config: ScoringConfig, prompts: list[str], labels: list[str],
                store: Path, *, progress: bool = True, desc: str = "model") -> ModelResult:
    """Load ``spec`` once and run it over every chunk of ``source`` into the store at ``store``."""
    start = time.perf_counter()
    backend = load_model(config, spec)
    setup = setup_model(backend, next(source.records()), prompts, labels, config)
    result = ModelResult(name=backend.name, num_parameters=int(backend.num_parameters), label_ids=setup.label_ids,
                         key=setup.key, loss_key=setup.loss_key, template=setup.template)
    bar = _progress_bar(len(source), f"{desc} {backend.name}") if progress else None
    db = ScoreStore(store)
    try:
        for records in source.chunks():
            tokens, errors = score_shard(backend, setup, records, prompts, config, db, bar.update if bar else None)
            result.tokens += tokens
            result.errors.update(errors)
    finally:
        db.close()
        if bar:
            bar.close()
    del backend
    gc.collect()
    result.seconds = time.perf_counter() - start
    return result
