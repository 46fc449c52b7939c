"""A deterministic fake backend for tests and docs: no model, instant, same answer every time.

Tokens are the UTF-8 bytes of the text (so every digit is one token). The label probabilities are a
hash of the whole prompt, with a label mass between 0.2 and 0.6, like a small real model. A token's
loss (for perplexity and IFD) depends on the token, the one before it and how much text precedes it, so
a context changes a response's loss, as with a real model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from selectit.backends.base import LoadOptions, as_options, clamp_length, first_scored, response_ids
from selectit.models import EMBEDDED_ALIASES
from selectit.prompts import chat_parts

END = 0  # the end-of-text token: a 0 byte


class FakeBackend:
    def __init__(self, *, name: str = "fake", num_parameters: int = 1_000_000, max_length: int = 1 << 20,
                 template: str = "plain"):
        self.name = name
        self.num_parameters = num_parameters
        self.max_length = max_length
        self.template = template = "plain" if template == "auto" else template  # emulates chat; has no template
        self.fingerprint = {"backend": "fake", "name": name, "template": template}
        self.tokens_computed = 0

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

    def response_losses(self, pairs: Sequence[tuple[str, str]], max_length: int | None = None, *,
                        end: bool = False) -> np.ndarray:
        """(B,) mean loss over the response bytes of each (context, response), then a 0 byte as the end
        token with ``end`` (when it fits); see HFBackend."""
        limit = clamp_length(max_length, self.max_length)
        out = np.empty(len(pairs))
        for i, (context, response) in enumerate(pairs):
            ids, start = response_ids(self.encode_plain, context, response, limit, END if end else None)
            self.tokens_computed += len(ids)
            start = first_scored(start)
            losses = [_token_loss(ids[t - 1], ids[t], t) for t in range(start, len(ids))]
            out[i] = np.mean(losses) if losses else np.nan
        return out


def _token_loss(previous: int, token: int, position: int) -> float:
    """A positive loss in nats, lower the more text precedes the token."""
    h = hashlib.sha256(bytes([previous, token])).digest()[0] / 255
    return 0.5 + 4.0 * h / np.log(2.0 + position / 16)
