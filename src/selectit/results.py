"""What a method computes for a set of records: one score each, and the columns behind it.

Shapes: n records, P rating prompts, S rating labels, M models. Produced by selectit.methods (a chunk at
a time, or a whole in-memory list through the Python API), written to scores.jsonl by selectit.rundir.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ModelRun:
    """One model's rating results for n records."""

    name: str
    num_parameters: int
    label_ids: list[int]
    probs: np.ndarray  # (n, P, S) raw label probabilities
    label_mass: np.ndarray  # (n, P)
    token: np.ndarray  # (n, P) token-level scores
    sentence: np.ndarray  # (n,) sentence-level scores
    truncated: np.ndarray  # (n,) bool: some prompt of this record was truncated
    content_free: np.ndarray | None  # (P, S) mean label probabilities on content-free inputs (calibrate)
    tokens: int = 0  # prompt tokens processed
    seconds: float = 0.0
    errors: dict = field(default_factory=dict)  # (record, prompt) -> why the model failed on it
    losses: tuple[np.ndarray, np.ndarray] | None = None  # (given (n,), blank (n,)) with a likelihood weight
    likelihood: np.ndarray | None = None  # (n,) reflection.likelihood_scores of those losses
    template: str = ""  # the template it was scored with ('auto' resolved)
    read: np.ndarray | None = None  # (n,) response characters the information term counted (issue 29)


@dataclass
class Scores:
    """Everything scoring produced for n records. ``final`` (n,) is what selection ranks, input order."""

    config: object  # the selectit.config.RunConfig it was made with
    prompts: list[str]
    labels: list[str]
    runs: list[ModelRun]  # one per model, for the methods that rate (empty for the others)
    weights: np.ndarray  # (M,) model-level weights
    final: np.ndarray  # (n,)
    ids: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # column -> (n,) values a method adds to scores.jsonl
    info: dict = field(default_factory=dict)  # what the method reports in config.json ("method_info")

    def __len__(self) -> int:
        return len(self.final)


def concat(parts: list[Scores]) -> Scores:
    """One Scores from consecutive parts (chunks) of the same run, in order."""
    first = parts[0]
    if len(parts) == 1:
        return first
    runs = []
    for m, run in enumerate(first.runs):
        same = [p.runs[m] for p in parts]
        offsets = np.cumsum([0] + [len(p) for p in parts[:-1]])
        errors = {(i + int(o), j): msg for o, r in zip(offsets, same) for (i, j), msg in r.errors.items()}
        losses = None if run.losses is None else tuple(np.concatenate([r.losses[k] for r in same]) for k in range(2))
        runs.append(ModelRun(
            name=run.name, num_parameters=run.num_parameters, label_ids=run.label_ids,
            probs=np.concatenate([r.probs for r in same]), label_mass=np.concatenate([r.label_mass for r in same]),
            token=np.concatenate([r.token for r in same]), sentence=np.concatenate([r.sentence for r in same]),
            truncated=np.concatenate([r.truncated for r in same]), content_free=run.content_free,
            tokens=sum(r.tokens for r in same), seconds=sum(r.seconds for r in same), errors=errors, losses=losses,
            likelihood=None if run.likelihood is None else np.concatenate([r.likelihood for r in same]),
            template=run.template, read=None if run.read is None else np.concatenate([r.read for r in same])))
    extra = {k: np.concatenate([p.extra[k] for p in parts]) for k in first.extra}
    return Scores(config=first.config, prompts=first.prompts, labels=first.labels, runs=runs, weights=first.weights,
                  final=np.concatenate([p.final for p in parts]), ids=[i for p in parts for i in p.ids], extra=extra,
                  info=first.info)
