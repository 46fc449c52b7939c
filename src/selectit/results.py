"""What a method computes for a set of records: one score each, and named columns behind it.

A method returns ``final`` (n,) and a small typed table: record-level columns (``Scores.columns``, one
value per record) and model-level ones (``ModelRun.columns``, one value per record and model), each an
array (n, ...) in input order, declared by a :class:`Column` (its level and how scores.jsonl writes it)
in ``Scores.schema``. The method also declares the figures config.json reports per model
(:class:`Figure`) and why a record got no score. Everything downstream is one generic loop over those
declarations: :func:`concat` (chunks), selectit.proxy.job.scatter (the proxy), selectit.rundir.score_rows
(scores.jsonl) and selectit.rundir.Totals (config.json).

Produced by selectit.methods (a chunk at a time, or a whole in-memory list through the Python API),
written to scores.jsonl by selectit.rundir.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RECORD, MODEL = "record", "model"  # a column's level: row[key] = value, or row[key] = {model: value}
KINDS = ("float", "int", "bool", "text")  # how a value is written: null when not finite (float, int)


@dataclass(frozen=True)
class Column:
    """One column of scores.jsonl: ``name`` in the table, ``level`` (RECORD or MODEL), ``kind`` (KINDS),
    ``key`` in scores.jsonl when it is not ``name``."""

    name: str
    level: str = RECORD
    kind: str = "float"
    key: str = ""

    def __post_init__(self) -> None:
        if self.level not in (RECORD, MODEL) or self.kind not in KINDS:
            raise ValueError(f"column {self.name!r}: level must be {RECORD} or {MODEL} and kind one of "
                             f"{', '.join(KINDS)}, got {self.level!r}, {self.kind!r}")

    @property
    def field(self) -> str:
        """Its key in a scores.jsonl row."""
        return self.key or self.name


@dataclass(frozen=True)
class Figure:
    """One per-model figure of config.json's "models", over every chunk: ``of(scores, m)`` of each
    chunk's Scores and model index m, combined by ``how``: "sum"; "mean" (``of`` gives (total, count):
    the totals' ratio, None while the count is 0); "first" (the first chunk's value)."""

    name: str
    of: Callable[[Scores, int], Any]
    how: str = "sum"


@dataclass(frozen=True)
class Schema:
    """What a method's Scores hold, declared: its columns in scores.jsonl order, its per-model figures,
    and ``unscored(scores, i)``: why record i has no score, in words (None: config.json gives no reasons)."""

    columns: tuple[Column, ...] = ()
    figures: tuple[Figure, ...] = ()
    unscored: Callable[[Scores, int], str] | None = None

    def __add__(self, more: tuple[Column, ...]) -> Schema:
        return dataclasses.replace(self, columns=(*self.columns, *more))


@dataclass
class ModelRun:
    """One model's results for n records: who it is, and its columns (name -> (n, ...)). A column reads
    as an attribute too (``run.label_mass``), as does a per-model constant."""

    name: str
    num_parameters: int
    label_ids: list[int]
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)  # the same for every record, e.g. content_free (P, S)
    template: str = ""  # the template it was scored with ('auto' resolved)
    tokens: int = 0  # prompt tokens processed
    seconds: float = 0.0
    errors: dict = field(default_factory=dict)  # (record, prompt) -> why the model failed on it

    def __getattr__(self, name: str):
        for table in ("columns", "constants"):
            values = self.__dict__.get(table, {})
            if name in values:
                return values[name]
        raise AttributeError(f"{type(self).__name__} has no column {name!r}")


@dataclass
class Scores:
    """Everything scoring produced for n records. ``final`` (n,) is what selection ranks, input order."""

    config: object  # the selectit.config.RunConfig it was made with
    prompts: list[str]
    labels: list[str]
    runs: list[ModelRun]  # one per model (empty for a method that uses none)
    weights: np.ndarray  # (M,) model-level weights
    final: np.ndarray  # (n,)
    ids: list = field(default_factory=list)
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # record-level columns, name -> (n, ...)
    schema: Schema = field(default_factory=Schema)
    info: dict = field(default_factory=dict)  # what the method reports in config.json ("method_info")

    def __len__(self) -> int:
        return len(self.final)


def concat(parts: list[Scores]) -> Scores:
    """One Scores from consecutive parts (chunks) of the same run, in order."""
    first = parts[0]
    if len(parts) == 1:
        return first
    offsets = np.cumsum([0] + [len(p) for p in parts[:-1]])
    runs = []
    for m, run in enumerate(first.runs):
        same = [p.runs[m] for p in parts]
        errors = {(i + int(o), j): msg for o, r in zip(offsets, same) for (i, j), msg in r.errors.items()}
        runs.append(dataclasses.replace(
            run, columns=_stack([r.columns for r in same]), errors=errors,
            tokens=sum(r.tokens for r in same), seconds=sum(r.seconds for r in same)))
    return dataclasses.replace(first, runs=runs, final=np.concatenate([p.final for p in parts]),
                               ids=[i for p in parts for i in p.ids], columns=_stack([p.columns for p in parts]))


def _stack(tables: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}
