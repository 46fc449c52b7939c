"""Record embeddings (issue 16): the scoring model's last hidden state, mean-pooled over the record's own
tokens, read off a forward pass the run makes anyway, stored as float16 (2 bytes per hidden unit:
1,152 bytes a record for SmolLM2-135M). ``--diversity`` selects with them (selectit.selection.diversity).

Which pass, and so which tokens (only the record's own tokens are pooled, never a template's words):

- ``ALPACA``, riding on the response-loss pass (the default method's likelihood term; perplexity and
  IFD too): the model reads the Alpaca prompt with the instruction, then the response
  (selectit.measures.losses.instruction_context). Pooled: the tokens of the instruction, of the Alpaca
  input when there is one, and of the response; not the prompt's fixed words nor the end-of-text
  token. The model is causal, so these hidden states are the same whether the end token follows or
  not: the pass with it and the pass without it give one embedding (one store kind).
  The record-once layout's pass (selectit.measures.record_once) reads those same tokens: with it the
  embedding rides on that pass (still kind ``ALPACA``, under the ratings' store key).
- ``RATING``, riding on the first rating prompt's pass (``--paper`` and the other methods without a
  loss pass): the tokens of the instruction (with its input) and of the response inside the rating
  template (selectit.prompts.rating_spans); not the rating prompt, nor "Instruction:", "Response:"
  and the answer cue. Only with the prompt-first layout by default (record-first shares the record's
  tokens as a cached prefix, which would cost a pass of its own).

A boundary token that merges across the record's text and the template counts as the later part
(selectit.backends.pooling.token_spans); a record cut by ``--max-length`` pools the tokens left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from selectit.backends import EMBEDS
from selectit.config import EMBEDDINGS
from selectit.errors import ConfigError
from selectit.measures.base import EMBEDDING_DTYPE, Measure, ModelInfo, Outcome, stored_vectors
from selectit.measures.losses import CONDITIONED, Losses, text_losses
from selectit.measures.ratings import Ratings, score_items
from selectit.measures.record_once import LAYOUT
from selectit.records import Record
from selectit.store import ScoreStore, prompt_key

DTYPE = EMBEDDING_DTYPE
ALPACA = "embedding:alpaca"  # store kind of embeddings from the Alpaca-prompt (response-loss) pass
RATING = "embedding:rating:"  # + the first rating prompt's key: embeddings from that prompt's pass
MODES = EMBEDDINGS


@dataclass(frozen=True)
class Embeddings(Measure):
    """Pooled record embeddings per (model, record): (n, H) float16 (NaN rows: no token pooled). Computed
    by running its ``host`` measurement's pass with pooling: the host then finds its own values stored."""

    host: Measure  # Losses of a CONDITIONED kind, or Ratings

    def __post_init__(self) -> None:
        if not (isinstance(self.host, Ratings) or (isinstance(self.host, Losses) and self.host.pools())):
            raise ValueError(f"embeddings cannot ride on {self.host.describe()}")

    @property
    def family(self) -> str:  # the host's store key: same model configuration
        return self.host.family

    @property
    def needs_labels(self) -> bool:
        return self.host.needs_labels

    @property
    def prompts(self) -> tuple[str, ...]:  # describe_model resolves labels on the first prompt
        return getattr(self.host, "prompts", ())

    @property
    def kind(self) -> str:
        if isinstance(self.host, Ratings) and self.host.layout != LAYOUT:
            return RATING + prompt_key(self.host.prompts[0])
        return ALPACA  # the response-loss pass, or the record-once pass (the same tokens)

    def describe(self) -> str:
        where = "the response-loss pass" if self.kind == ALPACA else "the first rating prompt's pass"
        return f"record embeddings (pooled in {where})"

    def passes(self) -> float:
        return self.host.passes()

    def compute(self, backend, info, records, store, execution, progress=None) -> Outcome:
        if isinstance(self.host, Ratings):
            h = self.host
            return score_items(backend, info, records, h.prompts, h.layout, h.overlong, execution, store, progress,
                               embed=self.kind)
        return text_losses(backend, records, self.host.kind, execution.batch_size, info.max_length, store,
                           info.keys["losses"], progress, embed=self.kind)

    def load(self, info: ModelInfo, records: Sequence[Record], store: ScoreStore) -> np.ndarray:
        what = f"{self.describe()} of model {info.name}"
        return stored_vectors(store, self.key(info), self.kind, records, DTYPE, what)


def embedding_measure(needs: Sequence[Measure], *, mode: str, backend: str, layout: str) -> Embeddings | None:
    """The embedding measurement for a run that measures ``needs`` (``--embeddings mode``), or None.

    auto: where the backend gives hidden states (EMBEDS), riding on a pass ``needs`` already makes: the
    response-loss pass with the instruction, else the first rating prompt's (prompt-first layout);
    none otherwise. on: the same, else a response-loss pass of its own (an extra pass per record); an
    error on a backend without hidden states. off: none."""
    if mode not in MODES:
        raise ConfigError(f"--embeddings must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "off":
        return None
    host = next((m for m in needs if isinstance(m, Ratings) and m.layout == LAYOUT), None)  # its record pass
    host = host or next((m for m in needs if isinstance(m, Losses) and m.pools()), None)
    if host is None:
        host = next((m for m in needs if isinstance(m, Ratings) and (layout == "prompt-first" or mode == "on")), None)
    if backend not in EMBEDS:
        if mode == "on":
            raise ConfigError(f"--embeddings on needs --backend {' or '.join(EMBEDS)}: the {backend} backend gives "
                              "no hidden states")
        return None
    if host is None:
        return Embeddings(Losses(CONDITIONED)) if mode == "on" else None
    return Embeddings(host)
