"""What a method is: the measurements it needs, and a pure function from their arrays to one score each.

A method never runs a model: the engine (selectit.engine) computes what :meth:`Method.needs` asks for
into the store, on any runner, then hands the method each chunk's arrays (:class:`ChunkData`); so every
method streams, resumes and runs on Ray, and ``selectit rescore`` recomputes any method's scores from
stored measurements without a model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from selectit.config import DEFAULT_NUM_PROMPTS, RunConfig
from selectit.measures import Measure, ModelInfo
from selectit.records import Record
from selectit.results import MODEL, Column, ModelRun, Schema, Scores


@dataclass
class ModelData:
    """One model's measurements of a chunk's records: measure -> its arrays (see each Measure.load)."""

    info: ModelInfo
    values: dict[Measure, Any] = field(default_factory=dict)


@dataclass
class ChunkData:
    """What a method scores: n consecutive records of the input (the first at position ``offset``), the
    run's configuration and rating prompts/labels, and each model's measurements."""

    records: Sequence[Record]
    offset: int
    config: RunConfig
    prompts: list[str]
    labels: list[str]
    models: list[ModelData]

    @property
    def ids(self) -> list:
        return [r.id for r in self.records]


class Method(ABC):
    """One way to score records. Subclasses set the class attributes and implement needs and score."""

    name: str  # --method NAME
    summary: str  # one line: what the score is (help, README table)
    cite: str = ""  # where the method comes from
    models: str = "any"  # how many models it uses: "any", "one" or "none"
    preset: Mapping[str, Any] = {}  # configuration fields this method fixes (applied by selectit.config.build)
    exact: bool = False  # a published computation: --dtype auto runs it in float32 (selectit.backends.precision)
    num_prompts: int = DEFAULT_NUM_PROMPTS  # P where --num-prompts is not given (a method that rates)

    @abstractmethod
    def needs(self, config: RunConfig, prompts: Sequence[str]) -> list[Measure]:
        """The measurements to compute for every record and model (empty: no model is loaded)."""

    @abstractmethod
    def score(self, data: ChunkData) -> Scores:
        """Scores of the chunk's records, in order; ``final`` (n,) is what selection ranks (NaN: never
        selected). Pure: the same data gives the same scores."""

    def unscored_note(self, count: int, why: Mapping[str, int] | None = None) -> str:
        """What to tell the user about ``count`` records that got no score (``why``: reason -> how many)."""
        reasons = "; ".join(f"{n}: {reason}" for reason, n in why.items()) if why else "zero label mass"
        return f"warning: {count} record(s) got no score ({reasons}); they are never selected"


# The rating columns every scores.jsonl row has: {} for a method that rates nothing (selectit.report reads
# token_scores for the models that rated); selectit.methods.selectit fills them.
RATING_COLUMNS = Schema((Column("token", MODEL, key="token_scores"), Column("sentence", MODEL, key="sentence_scores"),
                         Column("label_mass", MODEL), Column("probs", MODEL, key="label_probs"),
                         Column("truncated", MODEL, "bool")))


def model_run(info: ModelInfo, columns: dict[str, np.ndarray], **more) -> ModelRun:
    """One model's results: who it is (``info``), its columns (name -> (n, ...)) and ``more`` fields."""
    return ModelRun(name=info.name, num_parameters=info.num_parameters, label_ids=info.label_ids,
                    template=info.template, columns=columns, **more)


def plain_scores(data: ChunkData, final: np.ndarray, columns: dict[str, np.ndarray] | None = None, *,
                 runs: Sequence[ModelRun] = (), weights: np.ndarray | None = None,
                 schema: Schema | None = None) -> Scores:
    """Scores of a method with its own columns: ``columns`` (name -> (n,)) are record-level floats
    (declared as such unless ``schema`` is given, after the rating columns); ``runs``: its models'
    results, with their model-level ``weights`` (M,)."""
    columns = dict(columns or {})
    return Scores(config=data.config, prompts=[], labels=[], runs=list(runs),
                  weights=np.zeros(0) if weights is None else weights, final=np.asarray(final, dtype=np.float64),
                  ids=data.ids, columns=columns,
                  schema=schema or RATING_COLUMNS + tuple(Column(name) for name in columns))
