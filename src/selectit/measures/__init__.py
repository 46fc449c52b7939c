"""Measurements: what a model computes for a record, computed once per content and configuration into
the score store and read back by any method (see :mod:`selectit.measures.base`).

- :class:`Ratings`: rating-label probabilities per (prompt, record); :class:`ContentFree`: the same on
  content-free inputs (calibration);
- :class:`Losses`: a text's mean token loss in some context (the likelihood term, perplexity, IFD, r-IFD);
- :class:`Embeddings`: a record's pooled last hidden state, from one of those passes (``--diversity``);
- :class:`MinHashes`: MinHash signatures of a record's words, no model (``--dedup-threshold``).

A new measurement is one class here (a store key family, ``compute`` and ``load``), and its family in
:func:`describe_model`.
"""

from __future__ import annotations

from collections.abc import Sequence

from selectit.backends.base import clamp_length
from selectit.measures.base import Measure, MissingMeasurement, ModelInfo, Outcome, Progress
from selectit.measures.embeddings import Embeddings, embedding_measure
from selectit.measures.losses import Losses, loss_key
from selectit.measures.minhash import MinHashes
from selectit.measures.ratings import CONTENT_FREE, ContentFree, RatingArrays, Ratings, label_ids, ratings_key
from selectit.records import Record


def describe_model(backend, spec: str | None, probe: Record, measures: Sequence[Measure], *, labels: Sequence[str],
                   layout: str, overlong: str, max_length: int | None) -> ModelInfo:
    """The :class:`ModelInfo` of a loaded model for ``measures``: its limits, and the store keys of its
    measurement families. Rating labels are resolved (on ``probe``, a real record) only when a measure
    needs them, so a model whose digits are not single tokens can still give losses."""
    limit = clamp_length(max_length, backend.max_length)
    info = ModelInfo(spec=spec, name=backend.name, num_parameters=int(backend.num_parameters),
                     template=backend.template, max_length=limit,
                     keys={"losses": loss_key(backend, max_length)},
                     dtype=str(backend.fingerprint.get("dtype", "")).removeprefix("torch."),
                     dtype_reason=getattr(backend, "dtype_reason", ""))
    rating = next((m for m in measures if m.needs_labels), None)
    if rating is not None:
        info.label_ids = label_ids(backend, probe, rating.prompts[0], labels, layout)
        info.keys["ratings"] = ratings_key(backend, layout=layout, max_length=limit, overlong=overlong,
                                           ids=info.label_ids)
    return info


__all__ = ["CONTENT_FREE", "ContentFree", "Embeddings", "Losses", "Measure", "MinHashes", "MissingMeasurement",
           "ModelInfo", "Outcome", "Progress", "RatingArrays", "Ratings", "describe_model", "embedding_measure"]
