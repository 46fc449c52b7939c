"""One batch of rating rows through a backend, safely: out of memory, the batch is split in halves and
retried, never skipped; any other failure, the rows are retried one by one and a row that still fails
gets NaN and its error, for that row alone (used by selectit.measures.ratings and .record_once)."""

from __future__ import annotations

import numpy as np

from selectit.errors import ConfigError


def label_probs(backend, rows: list[list[int]], ids: list[int], shared: int, spans: list | None = None
                ) -> tuple[np.ndarray, dict[int, str], np.ndarray | None]:
    """backend.label_probs for one batch: (probs (B, S), {row: error}, None); with ``spans`` (per row,
    token spans or None), backend.pooled_label_probs: the third item is then (B, H) float32.

    Out of memory: the batch is split in halves and retried, never skipped. Any other failure: the
    rows are retried one by one, and a row that still fails gets NaN and its error, for that row alone
    (the published scripts skipped it, shifting every later score onto the wrong record).
    """
    try:
        if spans is None:
            return backend.label_probs(rows, ids, shared), {}, None
        probs, vectors = backend.pooled_label_probs(rows, ids, shared, spans)
        return probs, {}, vectors
    except MemoryError:
        if len(rows) == 1:
            raise ConfigError(
                f"one prompt of {len(rows[0])} tokens does not fit in memory; lower --max-length, "
                "use --dtype bfloat16, or a smaller model"
            ) from None
        half = len(rows) // 2
        a, ea, va = label_probs(backend, rows[:half], ids, shared, spans and spans[:half])
        b, eb, vb = label_probs(backend, rows[half:], ids, shared, spans and spans[half:])
        return (np.concatenate([a, b]), {**ea, **{half + r: m for r, m in eb.items()}},
                None if va is None else np.concatenate([va, vb]))
    except Exception as e:  # noqa: BLE001 - any backend failure is isolated to its rows
        if len(rows) > 1:
            out, errors, parts = np.empty((len(rows), len(ids))), {}, []
            for r, row in enumerate(rows):
                out[r : r + 1], err, v = label_probs(backend, [row], ids, shared, spans and spans[r : r + 1])
                parts.append(v)
                if err:
                    errors[r] = err[0]
            return out, errors, None if spans is None else _stack(parts)
        vectors = None if spans is None else np.full((1, 0), np.nan, dtype=np.float32)  # its width is unknown
        return np.full((1, len(ids)), np.nan), {0: f"{type(e).__name__}: {e}"}, vectors


def _stack(parts: list[np.ndarray]) -> np.ndarray:
    """Rows (1, H) of pooled vectors, a failed row's (1, 0) widened with NaN: (B, H)."""
    width = max(v.shape[1] for v in parts)
    return np.concatenate([v if v.shape[1] == width else np.full((1, width), np.nan, dtype=np.float32)
                           for v in parts])
