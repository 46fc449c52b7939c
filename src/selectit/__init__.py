"""selectit: pick the best instruction-tuning data with the model's own uncertainty (SelectIT).

Python API, mirroring the command line::

    import selectit
    records = [{"instruction": "Name a colour.", "input": "", "output": "Blue."}, ...]
    scores = selectit.score(records, backend="fake")   # any option of the command line, by field name
    best = selectit.select(scores, fraction=0.2)        # input positions, best first
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from selectit.config import RunConfig
from selectit.errors import ConfigError, DataError
from selectit.records import Record
from selectit.version import __version__


def score(records: Iterable[dict | Record] | str | os.PathLike, config: RunConfig | None = None, *,
          backends=None, progress: bool = False, store=None, **options):
    """Score records (dicts in alpaca, sharegpt or messages form, or Records; or a dataset's path, read as
    ``selectit score`` reads it) with one engine: the same measurements, store and methods as ``selectit score``.

    options: any configuration field by name (``method``, ``models``, ``num_prompts``, ``alpha``,
    ``likelihood_weight``, ``backend``, ...; see selectit.config), used when ``config`` is not given; a
    method's preset applies (``method="paper"``). backends: already loaded backends, one per model
    (``selectit.backends.hf.HFBackend(model, tokenizer, name=...)``, ``selectit.backends.fake.FakeBackend()``).
    store: a :class:`selectit.store.ScoreStore` or a path, to resume from and add to (default: in memory).
    Returns :class:`selectit.results.Scores`; ``.final`` is (n,).
    """
    from selectit import formats
    from selectit.jobs import score_records
    from selectit.methods import configure, get
    from selectit.store import ScoreStore

    if config is None:
        config, method = configure(options)
    elif options:
        raise TypeError("pass either config or keyword options, not both")
    else:
        method = get(config.method.method)
    if isinstance(records, (str, os.PathLike)):
        inp = config.input
        records = formats.scan(records, schema=inp.format, container=inp.container, skip_bad=inp.skip_bad).records()
    items = list(records)
    if items and not all(isinstance(r, (Record, dict)) for r in items):
        bad = next(r for r in items if not isinstance(r, (Record, dict)))
        raise DataError(f"records must be dicts (alpaca, sharegpt or messages) or Records, or pass a dataset's "
                        f"path instead; got a {type(bad).__name__}")
    if items and not all(isinstance(r, Record) for r in items):
        items = formats.from_dicts(items, schema=config.input.format)
    if store is not None and not isinstance(store, ScoreStore):
        store = ScoreStore(store)
    return score_records(items, config, method, backends=backends, store=store, progress=progress)


def select(scores, *, fraction: float | None = None, top: int | None = None,
           threshold: float | None = None) -> np.ndarray:
    """Input positions of the selected records, best first. ``scores``: a Scores or an (n,) array."""
    from selectit.selection.policy import choose

    final = scores.final if hasattr(scores, "final") else np.asarray(scores, dtype=np.float64)
    return choose(final, fraction=fraction, top=top, threshold=threshold)


__all__ = ["ConfigError", "DataError", "Record", "RunConfig", "score", "select", "__version__"]
