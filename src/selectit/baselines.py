"""Selection methods: SelectIT, its single levels, and the baselines to compare it with (``--method``).

Every method gives each record one score; selection keeps the highest (selectit.selection), so the
CLI, scores.jsonl and the selection are the same for all of them. The method is recorded in config.json.

- ``selectit``: the full method (SPEC 1): token, sentence and model level.
- ``token``: the token-level score under the first rating prompt, first model (no sentence level, no
  model level): the method with one prompt and one model, as in the paper's ablation of the levels.
- ``sentence``: the sentence-level score of the first model (P prompts, no model level).
- ``model``: the model-level combination (parameter-count weights) of each model's first-prompt
  token score (models, no sentence level). With one model it equals ``token``.
- ``random``: uniform random scores from ``--seed`` (numpy's PCG64): the baseline to beat.
- ``length``: the response's length in characters (Zhao et al., "Long Is More for Alignment", ICML
  2024: the longest responses are a strong baseline). Characters, not tokens, so no model is loaded
  and the score does not depend on a tokenizer.
- ``perplexity``: score = -(mean token loss of the response given the instruction), i.e. the lowest
  perplexity ranks first. Perplexity filters are used both ways in the literature: low perplexity as
  a fluency/quality filter (CCNet, Wenzek et al. 2020), high perplexity as "hard" examples; we keep
  the low end, the quality-filter convention (the ``loss`` and ``perplexity`` columns are written too).
- ``ifd``: Instruction-Following Difficulty (Li et al., "From Quantity to Quality: Boosting LLM
  Performance with Self-Guided Data Selection for Instruction Tuning", NAACL 2024):
  IFD = loss(response | instruction) / loss(response alone), mean token losses of the scoring model.
  High IFD (the instruction helps little) ranks first. As the authors do, records with IFD > 1 (the
  instruction makes the response *less* likely) are dropped: their score is null, never selected.
  The instruction is given in the Alpaca prompt format their code uses (below); a record's Alpaca
  ``input`` fills the "### Input:" part.

The response losses of ``perplexity`` and ``ifd`` are kept in the score store (table ``losses``,
one row per model, context kind and record), so a rerun or the other method reuses them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from selectit import reflection
from selectit.backends import Backend, load_backend
from selectit.config import ScoringConfig
from selectit.errors import ConfigError
from selectit.records import Record
from selectit.likelihood import ALONE, CONDITIONED, has_losses, loss_key, response_losses
from selectit.scorer import Scores, score_records
from selectit.store import ScoreStore

METHODS = ("selectit", "token", "sentence", "model", "random", "length", "perplexity", "ifd")
LEVELS = ("selectit", "token", "sentence", "model")
LOSS_METHODS = ("perplexity", "ifd")


def score_method(records: Sequence[Record], config: ScoringConfig, *, backends: Sequence[Backend] | None = None,
                 progress: bool = True, store: ScoreStore | None = None) -> Scores:
    """Scores of ``config.method``; ``.final`` (n,) is what selection ranks by."""
    if not records:
        raise ConfigError("no records to score")
    method = config.method
    if method in LEVELS:
        scores = score_records(records, config, backends=backends, progress=progress, store=store)
        scores.final = level_scores(scores, method)
        return scores
    start = time.perf_counter()
    ids = [r.id for r in records]
    if method == "random":
        extra = {}
        final = np.random.default_rng(config.seed).random(len(records))
    elif method == "length":
        final = np.array([len(r.response) for r in records], dtype=np.float64)
        extra = {"length": final}
    else:
        final, extra = _loss_method(records, config, backends, progress, store)
    info = {"method": method, "seconds": round(time.perf_counter() - start, 3)}
    return Scores(config=config, prompts=[], labels=[], runs=[], weights=np.zeros(0), final=final, ids=ids,
                  extra=extra, info={**info, **extra.pop("_info", {})})


def level_scores(scores: Scores, method: str) -> np.ndarray:
    """(n,) scores of one SelectIT level (see the module docstring) from a full scoring run."""
    if method == "selectit":
        return scores.final
    if method == "token":
        return scores.runs[0].token[:, 0]
    if method == "sentence":
        return scores.runs[0].sentence
    first = np.stack([r.token[:, 0] for r in scores.runs], axis=1)  # (n, M)
    return reflection.model_scores(first, scores.weights)


def _loss_method(records, config, backends, progress, store) -> tuple[np.ndarray, dict]:
    if backends is None and len(config.models) != 1:
        raise ConfigError(f"--method {config.method} uses one model; got {len(config.models)}")
    backend = backends[0] if backends is not None else load_backend(
        config.backend, config.models[0], template=config.template, dtype=config.dtype, device=config.device,
        max_length=config.max_length, trust_remote_code=config.trust_remote_code,
        prefix_cache=config.prefix_cache, allow_pickle=config.allow_pickle,
    )
    if not has_losses(backend):
        raise ConfigError(f"--method {config.method} needs response losses; the {config.backend} backend has "
                          "none, use --backend hf")
    key = loss_key(backend, config.max_length)
    given = _losses(backend, records, CONDITIONED, config, key, store, progress)
    info = {"_info": {"model": backend.name, "num_parameters": int(backend.num_parameters),
                      "max_length": min(config.max_length or backend.max_length, backend.max_length)}}
    if config.method == "perplexity":
        return -given, {"loss": given, "perplexity": np.exp(given), **info}
    alone = _losses(backend, records, ALONE, config, key, store, progress)
    with np.errstate(divide="ignore", invalid="ignore"):
        ifd = given / alone  # (n,)
    final = np.where(ifd <= 1, ifd, np.nan)  # IFD > 1 (or undefined) is dropped, as Li et al. do
    info["_info"]["dropped_ifd_over_1"] = int((~np.isfinite(final)).sum())
    return final, {"loss": given, "loss_alone": alone, "ifd": ifd, **info}


def _losses(backend, records, kind, config, key, store, progress) -> np.ndarray:
    bar = _bar(len(records), f"{'alone' if kind == ALONE else 'given'} losses {backend.name}") if progress else None
    try:
        return response_losses(backend, records, kind, config.batch_size, config.max_length, store,
                               bar.update if bar else None, key=key)
    finally:
        if bar:
            bar.close()


def _bar(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="rec")
