"""A deterministic fake backend for tests and docs: no model, instant, same answer every time.

Tokens are the UTF-8 bytes of the text (so every digit is one token). The label probabilities are a
hash of the whole prompt, with a label mass between 0.2 and 0.6, like a small real model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from selectit.prompts import chat_parts


class FakeBackend:
    def __init__(self, *, name: str = "fake", num_parameters: int = 1_000_000, max_length: int = 1 << 20,
                 template: str = "plain"):
        self.name = name
        self.num_parameters = num_parameters
        self.max_length = max_length
        self.template = template
        self.fingerprint = {"backend": "fake", "name": name, "template": template}

    def encode(self, text: str, suffix: str = "") -> list[int]:
        if self.template == "chat":
            user, reply = chat_parts(text)
            text = f"<user>{user}</user><assistant>{reply}"
        return list((text + suffix).encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    def label_probs(self, batch: Sequence[Sequence[int]], label_ids: Sequence[int], shared: int = 0) -> np.ndarray:
        out = np.empty((len(batch), len(label_ids)))
        for i, ids in enumerate(batch):
            digest = hashlib.sha256(bytes(ids) + self.name.encode()).digest()
            raw = np.frombuffer(digest[: len(label_ids)], dtype=np.uint8).astype(np.float64) + 1.0
            mass = 0.2 + 0.4 * digest[-1] / 255
            out[i] = raw / raw.sum() * mass
        return out
