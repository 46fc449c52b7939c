"""What every measurement shares: the model as a run saw it, the missing-measurement error, the base class.

A measurement is what a model computes for a record (label probabilities under each rating prompt, a
response loss in some context, ...). It is computed once per content and configuration into the score
store (``compute``, chunk by chunk, on any runner) and read back as arrays (``load``), by whichever
method asks for it; reading needs no model, only the store keys in :class:`ModelInfo`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from selectit.errors import ConfigError
from selectit.records import Record
from selectit.store import ScoreStore, record_key

EMBEDDING_DTYPE = np.float16  # record embeddings are stored as float16 (selectit.measures.embeddings)

Progress = Callable[[float], None]


class MissingMeasurement(ConfigError):
    """A method needs a measurement that is not in the store (rescoring without the model)."""


@dataclass
class ModelInfo:
    """One model as a run measured it: what outputs and config.json show, and the store keys of its
    measurements (``keys``: measurement family -> key), so they can be read without loading the model."""

    spec: str | None  # what --model said (None: the embedded model)
    name: str
    num_parameters: int
    template: str  # the template it was scored with ('auto' resolved)
    max_length: int
    label_ids: list[int] | None = None  # None when no rating was measured
    keys: dict[str, str] = field(default_factory=dict)
    tokens: int = 0  # tokens run through the model (this run)
    seconds: float = 0.0  # time measuring (this run), model load excluded
    load_seconds: float = 0.0
    stored: int = 0  # records whose measurements were all in the store already
    dtype: str = ""  # what the model ran in (--dtype auto resolved), where the backend has one
    dtype_reason: str = ""  # why (selectit.backends.precision)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelInfo:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Outcome:
    """What computing a measurement on a chunk did: tokens run, records found stored."""

    tokens: int = 0
    stored: int = 0


class Measure(ABC):
    """One kind of measurement. Subclasses are frozen dataclasses (equal when they measure the same)."""

    family: str  # the ModelInfo.keys entry its store key is under
    needs_labels: bool = False  # needs the rating-label token ids (resolved when the model is loaded)

    @abstractmethod
    def describe(self) -> str:
        """What it is, in words, for messages."""

    @abstractmethod
    def passes(self) -> float:
        """Forward passes per record (progress bars split a record's work by these)."""

    @abstractmethod
    def compute(self, backend, info: ModelInfo, records: Sequence[Record], store: ScoreStore, execution,
                progress: Progress | None = None) -> Outcome:
        """Compute what ``store`` lacks for ``records`` with the loaded ``backend`` and store it,
        batch by batch (a killed run resumes)."""

    @abstractmethod
    def load(self, info: ModelInfo, records: Sequence[Record], store: ScoreStore):
        """The measurement's arrays for ``records`` (see the subclass), from ``store`` alone; raises
        MissingMeasurement when it is not (all) there."""

    def key(self, info: ModelInfo) -> str:
        if self.family not in info.keys:
            raise MissingMeasurement(f"model {info.name} has no {self.describe()} in this run")
        return info.keys[self.family]


def stored_vectors(store: ScoreStore, key: str, kind: str, records: Sequence[Record], dtype, what: str,
                   width: int = 0) -> np.ndarray:
    """(n, H) the stored vectors of ``kind`` under ``key`` for ``records``, in order ((0, ``width``) for
    none); raises MissingMeasurement naming ``what`` and the first record without one."""
    keys = [record_key(r) for r in records]
    found = store.load_vectors(key, kind, keys, dtype)
    missing = next((i for i, k in enumerate(keys) if k not in found), None)
    if missing is not None:
        raise MissingMeasurement(f"the score store {store.path} has no {what} for record {records[missing].id!r}")
    return np.stack([found[k] for k in keys]) if keys else np.zeros((0, width), dtype=dtype)
