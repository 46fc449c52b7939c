"""The backend protocol (what every backend implements in full) and the helpers they share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from selectit.config import DTYPES
from selectit.errors import ConfigError
from selectit.plan import common_prefix_len
from selectit.truncation import MAX_CHARS_PER_TOKEN


@dataclass(frozen=True, kw_only=True)
class LoadOptions:
    """What :func:`selectit.backends.load_backend` passes to a backend's ``load``. A backend that cannot
    honour a value other than the default refuses it (see ``Backend.HONOURS``)."""

    template: str = "auto"
    dtype: str = "auto"  # selectit.backends.precision: bfloat16 where native, else float32
    device: str = "auto"
    max_length: int | None = None
    prefix_cache: bool = True
    trust_remote_code: bool = False
    allow_pickle: bool = False
    tensor_parallel_size: int = 1

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.tensor_parallel_size < 1:
            raise ConfigError(f"--tensor-parallel-size must be >= 1, got {self.tensor_parallel_size}")


class Backend(Protocol):
    """What scoring needs from a model; hf, llamacpp, vllm and fake implement all of it.

    name: shown in outputs (scores.jsonl keys by it).
    num_parameters: the model's parameter count, for the model-level weights.
    max_length: the longest sequence (in tokens) it accepts (``--max-length`` already applied).
    template: the rating template it encodes with ('plain' or 'chat'; 'auto' resolved).
    fingerprint: what determines the model's outputs (identity, dtype, template); keys the score store.
    tokens_computed: tokens run through the model so far (a shared prefix computed once counts once).
    """

    name: str
    num_parameters: int
    max_length: int
    template: str
    fingerprint: dict
    tokens_computed: int

    def encode(self, text: str, suffix: str = "") -> list[int]:
        """Token ids of the rating ``text`` as the model reads it (template applied, BOS as the
        tokenizer adds it), with ``suffix`` appended after the template (used to resolve labels)."""
        ...

    def encode_plain(self, text: str) -> list[int]:
        """Token ids of ``text`` as plain text (BOS as the model adds it): what response losses read."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        ...

    def end_token(self) -> int:
        """The id of the end-of-text token (what a fine-tuned response ends with)."""
        ...

    def label_probs(self, batch: Sequence[Sequence[int]], label_ids: Sequence[int], shared: int = 0) -> np.ndarray:
        """Next-token probabilities of ``label_ids`` after each prompt (full softmax over the
        vocabulary, not renormalised). batch: n token-id lists, all starting with the same ``shared``
        tokens (a hint a backend may use to compute them once). Returns (n, S) float64.
        Raises MemoryError when the batch does not fit; the caller splits it and retries."""
        ...

    def response_losses(self, pairs: Sequence[tuple[str, str]], max_length: int | None = None, *,
                        end: bool = False) -> np.ndarray:
        """(B,) mean next-token loss (nats, float64) of the target tokens of each (context, target),
        as :func:`response_ids` defines them; NaN where no target token is scored."""
        ...

    # Optional, where the model's hidden states can be read (selectit.backends.EMBEDS: hf, fake), for
    # record embeddings from a pass that runs anyway (selectit.measures.embeddings):
    #   pooled_losses(pairs, spans, max_length=None, *, end=False) -> (losses (B,), pooled (B, H) float32):
    #       response_losses, and each row's last hidden state mean-pooled over the tokens of its
    #       character spans of context + target (selectit.backends.pooling.token_spans);
    #   pooled_label_probs(batch, label_ids, shared, spans) -> (probs (B, S), pooled (B, H) float32):
    #       label_probs, and each row's last hidden state mean-pooled over its token spans (None: NaN).
    #   record_states(texts, layers, max_length=None) -> (B, H) float32: each text's tokens mean-pooled
    #       after its first ``layers`` layers (0: the input token embeddings), for --proxy's features.
    # Optional, in every backend here (hf, llamacpp, vllm, fake), so the end token's loss rides the
    # likelihood term's pass (selectit.measures.losses.text_losses; without it, a pass of its own):
    #   losses_and_ends(pairs, max_length=None, spans=None) -> (losses (B,), last (B,), pooled or None):
    #       response_losses with end=True, each row's last scored token's loss, and with spans (hf, fake
    #       only) the pooled states as pooled_losses gives them.


class EndsWithoutStates:
    """``losses_and_ends`` for a backend that reads no hidden states (llamacpp, vllm): from its own
    ``_losses(pairs, max_length, end) -> (means (B,), last (B,))`` with the end token; ``spans`` refused."""

    def losses_and_ends(self, pairs: Sequence[tuple[str, str]], max_length: int | None = None,
                        spans=None) -> tuple[np.ndarray, np.ndarray, None]:
        """The mean losses (B,) as response_losses(end=True) gives them, each row's last scored token's
        loss (B,) (the end token's where it fits) and no pooled states; see the hf backend's."""
        if spans is not None:
            raise ValueError(f"the {type(self).__name__} backend gives no hidden states to pool")
        means, last = self._losses(pairs, max_length, True)
        return means, last, None


def as_options(options: LoadOptions | None, fields: dict) -> LoadOptions:
    """``options``, or LoadOptions from keyword ``fields`` (not both): what every ``load`` accepts."""
    if options is not None and fields:
        raise TypeError("pass either options or keyword fields, not both")
    return options if options is not None else LoadOptions(**fields)


MEMBERS = ("name", "num_parameters", "max_length", "template", "fingerprint", "tokens_computed", "encode",
           "encode_plain", "decode", "end_token", "label_probs", "response_losses")  # what Backend declares


def clamp_length(asked: int | None, limit: int) -> int:
    """The length to use: ``asked`` (``--max-length``) where given, never over the model's ``limit``."""
    return min(asked or limit, limit)


def bounded(text: str, max_length: int) -> str:
    """``text`` cut to the characters ``max_length`` tokens can possibly cover (MAX_CHARS_PER_TOKEN
    each), so tokenizing a multi-megabyte record costs no more than its first max_length tokens."""
    return text[: max_length * MAX_CHARS_PER_TOKEN]


def response_ids(encode: Callable[[str], list[int]], context: str, response: str, max_length: int,
                 end: int | None = None) -> tuple[list[int], int]:
    """Token ids of ``context + response`` (then ``end``, if given and the whole response fits), cut
    to ``max_length``, and where the response starts: the definition every backend's response losses
    share (``encode``: the backend's plain-text tokenizer). Text beyond what max_length tokens can
    cover is not tokenized (:func:`bounded`); a response cut that way gets no end token.

    The start is the length of the longest common prefix of the ids of ``context`` alone and of the
    whole text, so a token that merges across the boundary counts as the response's."""
    text = context + response
    if len(text) > max_length * MAX_CHARS_PER_TOKEN:
        text, end = bounded(text, max_length), None
        context = bounded(context, max_length)
    ids = list(encode(text))
    if end is not None and len(ids) < max_length:
        ids.append(end)
    ids = ids[:max_length]
    return ids, common_prefix_len([ids, encode(context)])


def first_scored(start: int) -> int:
    """The first response position whose loss is scored: the response's first token has nothing to be
    predicted from when nothing precedes it (no BOS, no context)."""
    return max(start, 1)
