"""Runners: where the shards of a file are scored. Each model is run over every chunk of the input
(see formats.Source) by :func:`selectit.runners.shard.score_shard`, locally or on Ray workers, and
its label probabilities land in the score store; scores.jsonl is then written from the store.
"""

from __future__ import annotations

from pathlib import Path

from selectit.config import ScoringConfig
from selectit.errors import ConfigError
from selectit.formats import Source
from selectit.runners.shard import ModelResult

RUNNERS = ("local", "ray")


def score_models(source: Source, config: ScoringConfig, prompts: list[str], labels: list[str], store: Path, *,
                 runner: str = "local", address: str | None = None, workers: int | None = None,
                 progress: bool = True) -> list[ModelResult]:
    """Score every chunk of ``source`` with every model of ``config``, one model after the other."""
    if runner not in RUNNERS:
        raise ConfigError(f"--runner must be one of {', '.join(RUNNERS)}, got {runner!r}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if runner == "local" and (address is not None or workers is not None):
        raise ConfigError("--ray-address and --workers apply to --runner ray only")
    results = []
    for m, spec in enumerate(config.models):
        desc = f"model {m + 1}/{len(config.models)}"
        if runner == "ray":
            from selectit.runners.ray import score_model

            results.append(score_model(source, spec, config, prompts, labels, store, address=address,
                                       workers=workers or 2, progress=progress, desc=desc))
        else:
            from selectit.runners.local import score_model

            results.append(score_model(source, spec, config, prompts, labels, store, progress=progress, desc=desc))
    return results


__all__ = ["RUNNERS", "ModelResult", "score_models"]
