"""SelectIT (Liu et al., NeurIPS 2024) with our measured default: token, sentence and model level.

Token level: each rating prompt's label distribution becomes a score (``--rating expected``: the
expected rating; ``argmax``: the paper's margin formula), optionally calibrated on content-free inputs.
Sentence level: mean / (1 + alpha std) over the P prompts (optionally weighted by label mass), plus
``--likelihood-weight`` x the model's likelihood evidence for the response. Model level: weighted by
parameter count. The math is selectit.reflection's; this module only wires measurements to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from selectit import reflection
from selectit.config import RunConfig
from selectit.measures import ContentFree, Losses, Measure, Ratings
from selectit.measures.losses import END_LOSS, GIVEN, GIVEN_BLANK
from selectit.measures.reading import ReadLengths
from selectit.methods.base import RATING_COLUMNS, ChunkData, Method, ModelData, model_run
from selectit.results import MODEL, Column, Figure, ModelRun, Schema, Scores


class SelectIT(Method):
    name = "selectit"
    summary = "token, sentence and model level, with the measured default (chat template, expected rating, " \
              "likelihood term)"
    cite = "Liu et al., NeurIPS 2024"
    normalisation = "paper"  # reflection.MODES: how a label distribution is renormalised

    def needs(self, config: RunConfig, prompts: Sequence[str]) -> list[Measure]:
        ratings, content_free = _rating_measures(config, prompts)
        params = config.method
        return [ratings, *([content_free] if params.calibrate else []),
                *((*LIKELIHOOD, READ) if params.likelihood_weight > 0 else []),
                *([STOPPING] if _information(params) else [])]

    def score(self, data: ChunkData) -> Scores:
        runs = [self.model_run(m, data) for m in data.models]
        weights = self.weights(runs, data.config)
        final = reflection.model_scores(np.stack([r.sentence for r in runs], axis=1), weights)  # (n,)
        return Scores(config=data.config, prompts=data.prompts, labels=data.labels, runs=runs, weights=weights,
                      final=self.final(runs, weights, final), ids=data.ids, schema=schema(data.config))

    def final(self, runs: list[ModelRun], weights: np.ndarray, full: np.ndarray) -> np.ndarray:
        """The score selection ranks, from the levels: (n,). The full method: the model level."""
        return full

    def model_run(self, model: ModelData, data: ChunkData) -> ModelRun:
        """The token and sentence levels of one model."""
        rating, free = _rating_measures(data.config, data.prompts)
        ratings = model.values[rating]
        params = data.config.method
        content_free = model.values[free] if params.calibrate else None
        losses = tuple(model.values[m] for m in LIKELIHOOD) if params.likelihood_weight > 0 else None
        read = model.values[READ] if losses is not None else None  # (n,) response characters the losses read
        lik = likelihood_term(losses, read, params.likelihood_term) if losses is not None else None
        token, sentence = self.levels(ratings.probs, content_free, data.config, lik)
        columns = {"token": token, "sentence": sentence, "label_mass": reflection.label_mass(ratings.probs),
                   "probs": ratings.probs, "truncated": ratings.truncated.any(axis=1)}
        if losses is not None:
            columns.update(likelihood=lik, response_loss=losses[0], blank_loss=losses[1])
            if _information(params):
                columns.update(likelihood_chars=read, end_loss=model.values[STOPPING])
        return model_run(model.info, columns, constants={"content_free": content_free}, errors=ratings.errors)

    def levels(self, probs: np.ndarray, content_free: np.ndarray | None, config: RunConfig,
               likelihood: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Token and sentence level of one model: (token (n, P), sentence (n,)).

        probs: (n, P, S) raw label probabilities; content_free: (P, S), needed with calibrate;
        likelihood: (n,) reflection.likelihood_scores, needed with a likelihood weight > 0."""
        params = config.method
        dist = reflection.calibrate(probs, content_free) if params.calibrate else probs
        if params.rating == "expected":
            token = reflection.expected_scores(dist)
        else:
            token = reflection.token_scores(dist, mode=self.normalisation)
        weights = reflection.label_mass(probs) if params.prompt_weights == "mass" else None
        sentence = reflection.sentence_scores(token, alpha=params.alpha, weights=weights)
        if params.likelihood_weight > 0:
            if likelihood is None:
                raise ValueError("a likelihood weight needs the records' likelihood scores")
            sentence = reflection.with_likelihood(sentence, likelihood, params.likelihood_weight)
        return token, sentence

    def weights(self, runs: list[ModelRun], config: RunConfig) -> np.ndarray:
        """Model level weights (M,): the user's, else parameter counts."""
        if config.method.model_weights is not None:
            return reflection.model_weights(config.method.model_weights)
        return reflection.model_weights([r.num_parameters for r in runs])


# scores.jsonl: the rating columns; with a likelihood weight what was added and the losses it came from;
# with the information term the response characters the losses read (its length unless --max-length cut
# it) and the end token's loss after the response (what `select --drop-junk` reads).
LIKELIHOOD_COLUMNS = (Column("likelihood", MODEL), Column("response_loss", MODEL), Column("blank_loss", MODEL))
READ_COLUMNS = (Column("likelihood_chars", MODEL, "int"), Column("end_loss", MODEL))


def unscored_reason(scores: Scores, i: int) -> str:
    """Why record ``i`` has no score, in words."""
    runs = scores.runs
    if any("likelihood" in r.columns and not np.isfinite(r.likelihood[i]) for r in runs):
        return "no response token fits in --max-length for the likelihood term"
    if any(any(k == i for k, _ in r.errors) for r in runs):
        return "the model failed on its prompts"
    if any(not (np.nan_to_num(r.label_mass[i]) > 0).any() for r in runs):
        return "zero label mass"
    return "no rating prompt gave a score"


def _mass(scores: Scores, m: int) -> tuple[float, int]:
    mass = scores.runs[m].label_mass
    finite = mass[np.isfinite(mass)]
    return float(finite.sum()), finite.size


def _content_free(scores: Scores, m: int) -> list | None:
    free = scores.runs[m].content_free
    return None if free is None else free.tolist()


FIGURES = (  # config.json, per model
    Figure("weight", lambda s, m: float(s.weights[m]), "first"),
    Figure("truncated_records", lambda s, m: int(s.runs[m].truncated.sum())),
    Figure("mean_label_mass", _mass, "mean"),
    Figure("failed_prompts", lambda s, m: len(s.runs[m].errors)),
    Figure("content_free_probs", _content_free, "first"))


def schema(config: RunConfig) -> Schema:
    """What SelectIT's Scores hold under ``config``."""
    params = config.method
    likelihood = LIKELIHOOD_COLUMNS if params.likelihood_weight > 0 else ()
    read = READ_COLUMNS if _information(params) else ()
    return Schema(RATING_COLUMNS.columns + likelihood + read, FIGURES, unscored_reason)


LIKELIHOOD = (Losses(GIVEN), Losses(GIVEN_BLANK))  # the likelihood term's losses: (given, blank)
READ = ReadLengths()  # what they read of each response (the whole response unless --max-length cut it)
STOPPING = Losses(END_LOSS)  # the end-of-text token's loss after the response (selectit.selection.junk)


def likelihood_term(losses: tuple[np.ndarray, np.ndarray], read: np.ndarray, term: str) -> np.ndarray:
    """(n,) the likelihood term before its weight: reflection.information_scores ('information': per
    character the losses read, ``read`` (n,)) or reflection.likelihood_scores ('per-token') of the
    (given, blank) losses."""
    if term == "information":
        return reflection.information_scores(*losses, np.asarray(read, dtype=np.float64))
    return reflection.likelihood_scores(*losses)


def _information(params) -> bool:
    """Whether the method adds the information term (and so measures the end token's loss with it)."""
    return params.likelihood_weight > 0 and params.likelihood_term == "information"


def _rating_measures(config: RunConfig, prompts: Sequence[str]) -> tuple[Ratings, ContentFree]:
    spec = config.measure
    return Ratings(tuple(prompts), spec.layout, spec.overlong), ContentFree(tuple(prompts), spec.layout, spec.overlong)
