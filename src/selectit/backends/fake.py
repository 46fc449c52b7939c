"""A deterministic fake backend for tests and docs: no model, instant, same answer every time.

Tokens are the UTF-8 bytes of the text (so every digit is one token). The label probabilities are a
hash of the whole prompt, with a label mass between 0.2 and 0.6, like a small real model. A token's
loss (for perplexity and IFD) depends on the token, the one before it and how much text precedes it, so
a context changes a response's loss, as with a real model. A token's "hidden state" (what pooled
embeddings average) is a fixed random vector of the token and the one before it, so texts that share
most of their byte pairs get close embeddings, as near-duplicate texts do with a real model.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence

import numpy as np

from selectit.backends.base import LoadOptions, as_options, clamp_length, first_scored, response_ids
from selectit.backends.pooling import Spans, positions, token_spans
from selectit.backends.models import EMBEDDED_ALIASES
from selectit.errors import ConfigError
from selectit.prompts import chat_parts

END = 0  # the end-of-text token: a 0 byte
HIDDEN = 64  # the size of the fake hidden states
LAYERS = 4  # the fake model's depth, for early_exit
_STATES: list[np.ndarray] = []  # (256 * 256, HIDDEN) float32: one vector per byte pair, made once


class FakeBackend:
    def __init__(self, *, name: str = "fake", num_parameters: int = 1_000_000, max_length: int = 1 << 20,
                 template: str = "plain"):
        self.name = name
        self.num_parameters = num_parameters
        self.max_length = max_length
        self.template = template = "plain" if template == "auto" else template  # emulates chat; has no template
        self.fingerprint = {"backend": "fake", "name": name, "template": template}
        self.tokens_computed = 0
        self.layers = LAYERS  # the layers a pass runs (early_exit lowers it)

    @classmethod
    def load(cls, spec: str | None, options: LoadOptions | None = None, **fields) -> FakeBackend:
        """A fake model named ``spec`` (default "fake"): no file is read."""
        o = as_options(options, fields)
        return cls(name="fake" if spec in EMBEDDED_ALIASES else spec, template=o.template, max_length=o.max_length or 1 << 20)

    def encode(self, text: str, suffix: str = "") -> list[int]:
        if self.template == "chat":
            user, reply = chat_parts(text)
            text = f"<user>{user}</user><assistant>{reply}"
        return list((text + suffix).encode("utf-8"))

    def encode_plain(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    def end_token(self) -> int:
        return END

    def label_probs(self, batch: Sequence[Sequence[int]], label_ids: Sequence[int], shared: int = 0) -> np.ndarray:
        out = np.empty((len(batch), len(label_ids)))
        self.tokens_computed += sum(len(ids) for ids in batch)
        for i, ids in enumerate(batch):
            digest = hashlib.sha256(bytes(ids) + self.name.encode()).digest()
            raw = np.frombuffer(digest[: len(label_ids)], dtype=np.uint8).astype(np.float64) + 1.0
            mass = 0.2 + 0.4 * digest[-1] / 255
            out[i] = raw / raw.sum() * mass
        return out

    def pooled_label_probs(self, batch: Sequence[Sequence[int]], label_ids: Sequence[int], shared: int,
                           spans: Sequence[Spans | None]) -> tuple[np.ndarray, np.ndarray]:
        """label_probs, and each row's fake hidden states mean-pooled over its token ``spans`` (None: NaN)."""
        pooled = np.stack([_pool(list(ids), s) if s is not None else np.full(HIDDEN, np.nan, dtype=np.float32)
                           for ids, s in zip(batch, spans)]) if batch else np.zeros((0, HIDDEN), dtype=np.float32)
        return self.label_probs(batch, label_ids, shared), pooled

    def pooled_losses(self, pairs: Sequence[tuple[str, str]], spans: Sequence[Spans], max_length: int | None = None,
                      *, end: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """response_losses, and each row's fake hidden states mean-pooled over the tokens of its character
        ``spans`` of context + response (see HFBackend.pooled_losses)."""
        return self.response_losses(pairs, max_length, end=end), self._pooled(pairs, spans, max_length, end)

    def _pooled(self, pairs, spans, max_length, end) -> np.ndarray:
        """(B, HIDDEN) each row's fake hidden states mean-pooled over the tokens of its character spans."""
        limit = clamp_length(max_length, self.max_length)
        pooled = np.empty((len(pairs), HIDDEN), dtype=np.float32)
        for i, ((context, response), s) in enumerate(zip(pairs, spans)):
            ids, _ = response_ids(self.encode_plain, context, response, limit, END if end else None)
            pooled[i] = _pool(ids, token_spans(self.encode_plain, context + response, ids, s))
        return pooled

    def response_losses(self, pairs: Sequence[tuple[str, str]], max_length: int | None = None, *,
                        end: bool = False) -> np.ndarray:
        """(B,) mean loss over the response bytes of each (context, response), then a 0 byte as the end
        token with ``end`` (when it fits); see HFBackend."""
        return self._losses(pairs, max_length, end)[0]

    def losses_and_ends(self, pairs: Sequence[tuple[str, str]], max_length: int | None = None,
                        spans: Sequence[Spans] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """response_losses with the end token, each row's last scored loss and (with ``spans``) the pooled
        states: see HFBackend.losses_and_ends."""
        means, last = self._losses(pairs, max_length, True)
        return means, last, None if spans is None else self._pooled(pairs, spans, max_length, True)

    @contextlib.contextmanager
    def early_exit(self, layers: int):
        """Inside the block a loss is read after ``layers`` of the fake model's LAYERS: each token's loss
        grows by 0.1 per layer left out (all layers: unchanged); see HFBackend.early_exit."""
        if not 0 < layers <= LAYERS:
            raise ConfigError(f"--proxy-layers must be in 1..{LAYERS} for {self.name}, got {layers}")
        self.layers = layers
        try:
            yield
        finally:
            self.layers = LAYERS

    def _losses(self, pairs, max_length, end) -> tuple[np.ndarray, np.ndarray]:
        """(means (B,), last scored losses (B,)), NaN for a row with none."""
        limit = clamp_length(max_length, self.max_length)
        out, last = np.full(len(pairs), np.nan), np.full(len(pairs), np.nan)
        for i, (context, response) in enumerate(pairs):
            ids, start = response_ids(self.encode_plain, context, response, limit, END if end else None)
            self.tokens_computed += len(ids)
            start = first_scored(start)
            lens = 0.1 * (LAYERS - self.layers)  # an early exit's extra loss per token
            losses = [_token_loss(ids[t - 1], ids[t], t) + lens for t in range(start, len(ids))]
            if losses:
                out[i], last[i] = np.mean(losses), losses[-1]
        return out, last

    def record_states(self, texts: Sequence[str], layers: int, max_length: int | None = None) -> np.ndarray:
        """(B, HIDDEN) float32: each text's fake hidden states mean-pooled over all its tokens (``layers``
        mixes in a per-depth offset, so depths differ; see HFBackend.record_states)."""
        limit = clamp_length(max_length, self.max_length)
        out = np.empty((len(texts), HIDDEN), dtype=np.float32)
        for i, text in enumerate(texts):
            ids = self.encode_plain(text)[:limit] or [END]
            self.tokens_computed += len(ids) if layers else 0
            out[i] = _pool(ids, [(0, len(ids))]) + np.float32(0.01 * layers)
        return out


def _token_loss(previous: int, token: int, position: int) -> float:
    """A positive loss in nats, lower the more text precedes the token."""
    h = hashlib.sha256(bytes([previous, token])).digest()[0] / 255
    return 0.5 + 4.0 * h / np.log(2.0 + position / 16)


def _pool(ids: list[int], spans: Spans) -> np.ndarray:
    """(HIDDEN,) float32: the mean of the fake hidden states of ``ids`` at the positions in ``spans``."""
    if not _STATES:
        _STATES.append(np.random.default_rng(0).standard_normal((256 * 256, HIDDEN), dtype=np.float32))
    at = positions(spans)
    if not len(at):
        return np.full(HIDDEN, np.nan, dtype=np.float32)
    tokens = np.asarray(ids, dtype=np.int64)
    before = np.concatenate([[0], tokens[:-1]])
    return _STATES[0][before[at] * 256 + tokens[at]].mean(axis=0)
