"""The shard function every runner calls: one loaded model, one chunk of records, into the store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from selectit.config import ScoringConfig
from selectit.records import Record
from selectit.likelihood import likelihood_losses
from selectit.scorer import Backend, ModelSetup, Progress, scaled, score_items, with_content_free, work_shares
from selectit.store import ScoreStore

Errors = dict[tuple[str, str], tuple[str, bool]]  # (prompt key, record key) -> (why it failed, truncated)


@dataclass
class ModelResult:
    """One model run over a whole input. Its label probabilities are in the store under ``key``;
    ``errors`` are the pairs that failed (not stored, so a rerun retries them)."""

    name: str
    num_parameters: int
    label_ids: list[int]
    key: str
    loss_key: str = ""  # where its response losses are (with a likelihood weight)
    template: str = ""  # the template it was scored with ('auto' resolved)
    tokens: int = 0
    seconds: float = 0.0
    errors: Errors = field(default_factory=dict)


def score_shard(backend: Backend, setup: ModelSetup, records: Sequence[Record], prompts: Sequence[str],
                config: ScoringConfig, store: ScoreStore, progress: Progress | None = None) -> tuple[int, Errors]:
    """Score one chunk into ``store``: (prompt tokens run, failed pairs). Batches already stored are
    skipped. With a likelihood weight, the records' response losses are stored too."""
    if not records:
        return 0, {}
    rating_share, loss_share = work_shares(len(prompts), config)
    shard = score_items(backend, setup, with_content_free(records, config), prompts, config, store,
                        scaled(progress, rating_share))
    if config.likelihood_weight > 0:
        likelihood_losses(backend, records, config, store, scaled(progress, loss_share))
    return shard.tokens, {shard.keys[k]: (msg, bool(shard.cut[k])) for k, msg in shard.errors.items()}
