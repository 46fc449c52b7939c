"""Runners: where the chunks of a file are measured. Each model is run over every chunk of the input
(see formats.Source) by :func:`selectit.runners.shard.measure_shard`, locally or on Ray workers, and its
measurements land in the score store; scores.jsonl is then written from the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from selectit.config import RunConfig
from selectit.formats import Source
from selectit.measures import Measure, ModelInfo
from selectit.store import ScoreStore


def measure_models(source: Source, config: RunConfig, measures: Sequence[Measure], store: Path | ScoreStore, *,
                   progress: bool = True) -> list[ModelInfo]:
    """Compute ``measures`` for every chunk of ``source`` with every model of ``config``, one model after
    the other, on ``config.execution.runner``. ``store``: a path, or (local runner only) an open store."""
    models, ex = config.model.models, config.execution
    infos = []
    for m, spec in enumerate(models):
        desc = f"model {m + 1}/{len(models)}"
        if ex.runner == "ray":
            from selectit.runners.ray import measure_model

            infos.append(measure_model(source, spec, config, measures, store, progress=progress, desc=desc))
        else:
            from selectit.runners.local import measure_model

            infos.append(measure_model(source, spec, config, measures, store, progress=progress, desc=desc))
    return infos


__all__ = ["measure_models"]
