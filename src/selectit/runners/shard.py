"""The shard function every runner calls: one loaded model, one chunk of records, every measurement
asked for, into the store."""

from __future__ import annotations

from collections.abc import Sequence

from selectit.backends import HONOURS, Backend, LoadOptions, load_backend, precision
from selectit.config import RunConfig
from selectit.formats import Source
from selectit.measures import Measure, ModelInfo, Outcome, Progress, describe_model
from selectit.methods import get
from selectit.records import Record
from selectit.store import ScoreStore


def load_model(config: RunConfig, spec: str | None) -> Backend:
    """Load one model of ``config`` with its backend and options."""
    m = config.model
    method = get(config.method.method)
    dtype, why = precision.for_method(m.dtype, method.name, method.exact)
    if why is not None and "dtype" not in HONOURS[m.backend]:
        dtype = m.dtype  # llama.cpp runs the GGUF as shipped, the fake backend has no dtype
    backend = load_backend(m.backend, spec, LoadOptions(
        template=config.measure.template, dtype=dtype, device=m.device, max_length=config.measure.max_length,
        prefix_cache=config.execution.prefix_cache, trust_remote_code=m.trust_remote_code,
        allow_pickle=m.allow_pickle, tensor_parallel_size=m.tensor_parallel_size))
    if why is not None and hasattr(backend, "dtype_reason"):
        backend.dtype_reason = why
    return backend


def model_info(backend: Backend, spec: str | None, source: Source, config: RunConfig, measures: Sequence[Measure]
               ) -> ModelInfo:
    """describe_model for ``config``, rating labels resolved on the input's first record."""
    spec_ = config.measure
    return describe_model(backend, spec, next(source.records()), measures, labels=spec_.labels(),
                          layout=spec_.layout, overlong=spec_.overlong, max_length=spec_.max_length)


def measure_shard(backend: Backend, info: ModelInfo, records: Sequence[Record], measures: Sequence[Measure],
                  store: ScoreStore, config: RunConfig, progress: Progress | None = None) -> Outcome:
    """Compute every measurement of one chunk into ``store`` (what is stored already is not run again).
    ``progress`` gets records done, each measurement's share by its forward passes."""
    total = Outcome()
    if not records:
        return total
    passes = [m.passes() for m in measures]
    whole = sum(passes) or 1.0
    stored = []
    for m, share in zip(measures, passes):
        done = (lambda n, s=share / whole: progress(n * s)) if progress else None
        outcome = m.compute(backend, info, records, store, config.execution, done)
        total.tokens += outcome.tokens
        if share:
            stored.append(outcome.stored)
    total.stored = min(stored) if stored else 0
    return total
