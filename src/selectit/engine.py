"""The one engine: measure, then score with a method.

1. :func:`measure`: every measurement the method needs, for every record and model, into the store
   (chunk by chunk, on the configured runner; resumable; nothing stored is computed again).
2. :func:`score_chunks`: for each chunk, in input order, the measurements read back from the store and
   mapped by the method to scores (pure numpy). The same function serves ``score`` (after step 1),
   ``rescore`` (step 1 skipped: the models are described by the run's config.json) and the Python API.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from selectit.config import RunConfig
from selectit.measures import Embeddings, Measure, MissingMeasurement, ModelInfo, embedding_measure
from selectit.methods import ChunkData, Method, ModelData
from selectit.records import Record
from selectit.results import Scores
from selectit.store import ScoreStore


def measure(source, config: RunConfig, method: Method, prompts: Sequence[str], store: Path | ScoreStore, *,
            progress: bool = True, known: list[ModelInfo] | None = None) -> list[ModelInfo]:
    """Compute what ``method`` needs for every record of ``source`` with every model into ``store``;
    returns the models as measured (names made unique). No model is loaded for a method that needs none,
    nor when ``known`` (the models as an earlier run with the same model and measure configuration
    described them) finds every measurement in the store already."""
    from selectit.runners import measure_models

    needs = run_needs(config, method, prompts)
    if not needs:
        return []
    if known is not None and all_stored(source, needs, known, store):
        for info in known:
            info.tokens, info.seconds, info.load_seconds, info.stored = 0, 0.0, 0.0, len(source)
        return known
    infos = measure_models(source, config, needs, store, progress=progress)
    unique_names(infos)
    return infos


def run_needs(config: RunConfig, method: Method, prompts: Sequence[str], *, embeds: bool = True) -> list[Measure]:
    """What a run measures: the method's measurements, and the record embeddings ``--diversity`` selects
    with (``--embeddings``, selectit.measures.embeddings) first, so that the pass they ride on pools as it
    runs and the method's own measurement then finds its values stored. ``embeds``: the loaded backends
    can pool (an API user's own backend may not)."""
    own = method.needs(config, prompts)
    extra = embedding_measure(own, mode=config.measure.embeddings, backend=config.model.backend,
                              layout=config.measure.layout) if embeds else None
    return [extra, *own] if extra is not None else own


def embeddings_record(config: RunConfig, method: Method, prompts: Sequence[str], models: Sequence[ModelInfo]
                      ) -> dict | None:
    """Where a scored run's record embeddings are stored (config.json "embeddings"): their store key and
    kind under the first model, so selection and the report read them without replaying the method;
    None when the run made none."""
    found = next((m for m in run_needs(config, method, prompts) if isinstance(m, Embeddings)), None)
    if found is None or not models:
        return None
    return {"model": models[0].name, "key": found.key(models[0]), "kind": found.kind, "pooled": found.describe()}


def all_stored(source, needs: Sequence[Measure], models: Sequence[ModelInfo], store: Path) -> bool:
    """Whether ``store`` holds every measurement of every record for these models (the last chunk,
    the one a killed run most likely lacks, is checked first)."""
    if not store.exists():
        return False
    db = ScoreStore(store)
    try:
        last = [source.chunk(len(source.starts) - 1)] if source.starts else []
        for records in [*last, *source.chunks()]:  # then every chunk in one pass (a compressed file cannot seek)
            for info in models:
                for m in needs:
                    m.load(info, records, db)
        return True
    except MissingMeasurement:
        return False
    finally:
        db.close()


def score_chunks(chunks: Iterable[Sequence[Record]], config: RunConfig, method: Method, prompts: list[str],
                 models: list[ModelInfo], store: ScoreStore) -> Iterator[Scores]:
    """The method's scores of each chunk, in order, from the measurements in ``store`` (raises
    MissingMeasurement, naming it, when one is not there)."""
    needs = method.needs(config, prompts)
    labels = config.measure.labels()
    offset = 0
    for records in chunks:
        if not records:
            continue
        data = ChunkData(records=records, offset=offset, config=config, prompts=list(prompts), labels=labels,
                         models=[ModelData(info, {m: m.load(info, records, store) for m in needs}) for info in models])
        yield method.score(data)
        offset += len(records)


def unique_names(models: Sequence[ModelInfo]) -> None:
    """Give repeated model names a #2, #3 ... suffix (scores.jsonl keys columns by model name)."""
    seen: dict[str, int] = {}
    for m in models:
        seen[m.name] = seen.get(m.name, 0) + 1
        if seen[m.name] > 1:
            m.name = f"{m.name}#{seen[m.name]}"

