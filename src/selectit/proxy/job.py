"""The ``--proxy`` scoring job (issue 18): the full method on a seeded random sample, cheap features of
every record (selectit.measures.features), a regressor from features to the full score fitted and judged
on the sample (selectit.proxy.fit), and predicted scores for the other records, streamed chunk by chunk.

Everything measured goes to the score store like any measurement: a rerun (a larger sample, another
rung, after a kill) computes only what is missing. scores.jsonl gets a ``scored_by`` column, "full" or
"proxy"; a predicted record has no per-model columns (null).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from selectit import engine
from selectit.proxy import fit as proxy_fit
from selectit.backends import EMBEDS
from selectit.config import RunConfig
from selectit.errors import ConfigError
from selectit.formats import MemorySource
from selectit.measures import ModelInfo
from selectit.measures.features import features, rung_measures
from selectit.methods import Method
from selectit.records import Record
from selectit.results import MODEL, RECORD, Column, Scores, concat
from selectit.store import ScoreStore


class ProxyRefused(ConfigError):
    """The proxy's held-out Spearman is below --proxy-min-spearman: its ranking is not the full method's."""


@dataclass
class ProxyRun:
    """What the proxy job did: the models of the full method (sample) and of the features (every record),
    the fit, and its figures for config.json."""

    models: list[ModelInfo]
    feature_models: list[ModelInfo]
    positions: np.ndarray  # (m,) input positions scored in full
    fit: proxy_fit.ProxyFit | None  # None: the sample is the whole input
    figures: dict = field(default_factory=dict)


def measure(source, config: RunConfig, method: Method, prompts: Sequence[str], store, *, progress: bool = True,
            known: list[ModelInfo] | None = None) -> tuple[ProxyRun, MemorySource]:
    """Step 1 and 2: the full method's measurements on the sample, the features' on every record."""
    opts = config.proxy
    rung_check(config)
    proxy_fit.make_regressor(opts.proxy_regressor, opts.proxy_seed)  # a missing library fails before any work
    n = len(source)
    size = proxy_fit.sample_size(n, opts.proxy_sample)
    positions = proxy_fit.sample_positions(n, size, opts.proxy_seed)
    sample = MemorySource(_pick(source, positions), config.execution.chunk_size, getattr(source, "path", None))
    start = time.perf_counter()
    models = engine.measure(sample, config, method, prompts, store, progress=progress, known=known)
    full_seconds = time.perf_counter() - start
    feature_models: list[ModelInfo] = []
    start = time.perf_counter()
    wanted = rung_measures(opts.proxy_features, opts.proxy_layers)
    if wanted and size < n:
        from selectit.runners import measure_models

        feature_models = measure_models(source, config, wanted, store, progress=progress)
        engine.unique_names(feature_models)
    feature_seconds = time.perf_counter() - start
    run = ProxyRun(models=models, feature_models=feature_models, positions=positions, fit=None)
    run.figures = {"features": opts.proxy_features, **({"layers": opts.proxy_layers}
                                                       if opts.proxy_features.startswith("early") else {}),
                   "records": n, "full": size, "predicted": n - size,
                   "seconds": {"full_method": round(full_seconds, 3), "features": round(feature_seconds, 3)}}
    return run, sample


def rung_check(config: RunConfig) -> None:
    """A model rung needs a backend that gives hidden states."""
    rung = config.proxy.proxy_features
    if rung != "ngrams" and config.model.backend not in EMBEDS:
        raise ConfigError(f"--proxy-features {rung} needs --backend {' or '.join(EMBEDS)} (hidden states); "
                          f"the {config.model.backend} backend gives none: use --proxy-features ngrams")


def score_chunks(source, sample: MemorySource, run: ProxyRun, config: RunConfig, method: Method,
                 prompts: list[str], db: ScoreStore) -> Iterator[Scores]:
    """Step 3 and 4: fit on the sample (raises ProxyRefused under the bound), then each chunk of
    ``source`` in input order: the full scores where sampled, predicted ones elsewhere."""
    opts, term = config.proxy, config.method.likelihood_term
    full = concat(list(engine.score_chunks(sample.chunks(), config, method, prompts, run.models, db))) \
        if len(sample) else None
    if full is None:
        raise ConfigError("the input has no records to score")
    n = run.figures["records"]
    if len(sample) < n:
        start = time.perf_counter()
        X = features(opts.proxy_features, opts.proxy_layers, sample.items, run.feature_models, db, term)
        run.fit = proxy_fit.fit(X, full.final, regressor=opts.proxy_regressor, seed=opts.proxy_seed)
        run.figures.update(run.fit.figures())
        run.figures["seconds"]["fit"] = round(time.perf_counter() - start, 3)
        _check(run.fit, opts.proxy_min_spearman)
    where = {int(p): i for i, p in enumerate(run.positions)}  # input position -> row of ``full``
    offset, predict_seconds = 0, 0.0
    for records in source.chunks():
        at = np.arange(offset, offset + len(records))
        mine = np.array([where[p] for p in at if p in where], dtype=np.int64)
        inside = np.array([p in where for p in at], dtype=bool)
        final = np.full(len(records), np.nan)
        final[inside] = full.final[mine]
        if (~inside).any():
            start = time.perf_counter()
            others = [r for r, s in zip(records, inside) if not s]
            final[~inside] = run.fit.predict(features(opts.proxy_features, opts.proxy_layers, others,
                                                      run.feature_models, db, term))
            predict_seconds += time.perf_counter() - start
        yield scatter(full, mine, inside, final, [r.id for r in records])
        offset += len(records)
    run.figures["seconds"]["predict"] = round(predict_seconds, 3)


def _check(fit: proxy_fit.ProxyFit, bound: float) -> None:
    if not fit.spearman >= bound:  # NaN (a constant prediction) fails too
        rho = "undefined (constant scores)" if np.isnan(fit.spearman) else f"{fit.spearman:.3f}"
        raise ProxyRefused(
            f"the proxy's held-out Spearman is {rho}, below --proxy-min-spearman {bound:g} ({fit.held_out} held-out "
            f"records of the {fit.sample} scored in full; top-20% overlap {fit.top_overlap:.2f}): its ranking is not "
            "the full method's, so nothing was selected. Try richer features (--proxy-features hidden), a larger "
            "--proxy-sample, or accept it with a lower --proxy-min-spearman; what was measured is stored and reused")


FILL = {"float": np.nan, "int": np.nan, "bool": False, "text": None}  # a predicted record's value, by Column kind
SCORED_BY = Column("scored_by", RECORD, "text")


def scatter(full: Scores, rows: np.ndarray, inside: np.ndarray, final: np.ndarray, ids: list) -> Scores:
    """A chunk's Scores: rows ``rows`` of ``full`` (the sampled records) placed where ``inside`` (n,) is
    True, ``FILL`` elsewhere (the predicted records: null), ``final`` (n,) as given, and the ``scored_by``
    column."""
    kinds = {(c.level, c.name): c.kind for c in full.schema.columns}

    def put(values: np.ndarray, level: str, name: str) -> np.ndarray:
        fill = FILL[kinds.get((level, name), "float")]
        dtype = values.dtype if fill is False else object if fill is None else np.float64
        out = np.full((len(inside), *values.shape[1:]), fill, dtype=dtype)
        out[inside] = values[rows]
        return out

    back = {int(r): i for i, r in zip(np.flatnonzero(inside), rows)}
    runs = [dataclasses.replace(r, columns={k: put(v, MODEL, k) for k, v in r.columns.items()},
                                errors={(back[i], j): m for (i, j), m in r.errors.items() if i in back})
            for r in full.runs]
    columns = {k: put(v, RECORD, k) for k, v in full.columns.items()}
    columns[SCORED_BY.name] = np.where(inside, "full", "proxy").astype(object)
    return dataclasses.replace(full, runs=runs, final=final, ids=ids, columns=columns,
                               schema=full.schema + (SCORED_BY,))


def _pick(source, positions: np.ndarray) -> list[Record]:
    """The records at sorted ``positions``, in one streamed pass over ``source``."""
    wanted, out, offset = set(positions.tolist()), [], 0
    for records in source.chunks():
        out.extend(r for i, r in enumerate(records, offset) if i in wanted)
        offset += len(records)
    return out
