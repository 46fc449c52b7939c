"""selectit: pick the best instruction-tuning data with the model's own uncertainty (SelectIT).

Python API, mirroring the command line::

    import selectit
    scores = selectit.score([{"instruction": "...", "input": "", "output": "..."}, ...])
    best = selectit.select(scores, fraction=0.2)   # input positions, best first
"""

from __future__ import annotations

__version__ = "0.1.0"

from collections.abc import Iterable  # noqa: E402

import numpy as np  # noqa: E402

from selectit.config import ScoringConfig  # noqa: E402
from selectit.errors import ConfigError, DataError  # noqa: E402
from selectit.records import Record  # noqa: E402


def score(records: Iterable[dict | Record], config: ScoringConfig | None = None, *, backends=None,
          progress: bool = False, store=None, **options):
    """Score records (dicts in alpaca, sharegpt or messages form, or Records).

    options: any :class:`ScoringConfig` field (models, num_prompts, alpha, mode, template, ...), used
    when ``config`` is not given. store: a :class:`selectit.store.ScoreStore` (or a path) to resume
    from and add to. Returns :class:`selectit.scorer.Scores`; ``.final`` is (n,).
    """
    from selectit import formats
    from selectit.baselines import score_method

    items = list(records)
    if items and not all(isinstance(r, Record) for r in items):
        items = formats.from_dicts(items)
    if config is None:
        if "models" in options:
            options["models"] = tuple(options["models"])
        config = ScoringConfig(**options)
    elif options:
        raise TypeError("pass either config or keyword options, not both")
    if store is not None and not hasattr(store, "put"):
        from selectit.store import ScoreStore

        store = ScoreStore(store)
    return score_method(items, config, backends=backends, progress=progress, store=store)


def select(scores, *, fraction: float | None = None, top: int | None = None,
           threshold: float | None = None) -> np.ndarray:
    """Input positions of the selected records, best first. ``scores``: a Scores or an (n,) array."""
    from selectit.pipeline import choose

    final = scores.final if hasattr(scores, "final") else np.asarray(scores, dtype=np.float64)
    return choose(final, fraction=fraction, top=top, threshold=threshold)


__all__ = ["ConfigError", "DataError", "Record", "ScoringConfig", "score", "select", "__version__"]
