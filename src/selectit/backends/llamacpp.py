"""llama.cpp backend (``llama-cpp-python``): scores GGUF models in their quantised form on CPU.

One prompt at a time (the Python binding runs one sequence); consecutive prompts that share a prefix
reuse llama.cpp's KV cache for it, so the plan's grouping (all records of one rating prompt together)
computes each rating prompt once. Label probabilities come from the logits of the last position,
normalised over the whole vocabulary in float64.
Install: ``pip install selectit[llamacpp]`` (builds llama.cpp; a few minutes on 2 cores).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from selectit.backends.base import (EndsWithoutStates, LoadOptions, as_options, clamp_length, first_scored,
                                    response_ids)
from selectit.config import MAX_LENGTH
from selectit.errors import ConfigError, optional_import
from selectit.plan import common_prefix_len
from selectit.backends.models import resolve_model
from selectit.prompts import chat_parts, resolve_template


class LlamaCppBackend(EndsWithoutStates):
    def __init__(self, llm, *, name: str, path: str, template: str = "plain", max_length: int | None = None):
        self.llm = llm
        self.name = name
        self.template = template = resolve_template(template, bool(llm.metadata.get("tokenizer.chat_template")), name)
        self.num_parameters = int(llm._model.n_params())
        self.max_length = clamp_length(max_length, llm.n_ctx())
        self.fingerprint = {"backend": "llamacpp", "name": name, "path": path, "size": os.path.getsize(path),
                            "template": template}
        self.tokens_computed = 0

    @classmethod
    def load(cls, spec: str | None, options: LoadOptions | None = None, *, threads: int | None = None,
             **fields) -> LlamaCppBackend:
        """Load a .gguf file (or, spec None, the embedded model) as shipped; a context of ``max_length``
        tokens (default: selectit.config.MAX_LENGTH), never over the one the model was trained with."""
        o = as_options(options, fields)
        template, max_length = o.template, o.max_length or MAX_LENGTH
        Llama = optional_import("llama_cpp", "the llamacpp backend needs llama-cpp-python", "llamacpp").Llama
        source = resolve_model(spec)
        if not source.gguf_file:
            raise ConfigError(f"the llamacpp backend needs a .gguf file, got {spec!r}")
        path = os.path.join(source.path, source.gguf_file)

        def build(n_ctx: int):
            return Llama(model_path=path, n_ctx=n_ctx, n_batch=512, logits_all=False, verbose=False,
                         n_threads=threads or os.cpu_count())

        llm = build(max_length)
        trained = trained_context(llm.metadata)
        if trained is not None and trained < max_length:  # never over the model's context, as in hf (rare: reload)
            del llm
            llm = build(max_length := trained)
        return cls(llm, name=source.name, path=path, template=template, max_length=max_length)

    def encode(self, text: str, suffix: str = "") -> list[int]:
        if self.template == "chat":
            from jinja2 import Template

            user, reply = chat_parts(text)
            rendered = Template(self.llm.metadata["tokenizer.chat_template"]).render(
                messages=[{"role": "user", "content": user}], add_generation_prompt=True)
            return self.llm.tokenize((rendered + reply + suffix).encode("utf-8"), add_bos=False, special=True)
        return self.llm.tokenize((text + suffix).encode("utf-8"), add_bos=self._adds_bos(), special=False)

    def _adds_bos(self) -> bool:
        return self.llm.metadata.get("tokenizer.ggml.add_bos_token", "true") == "true"

    def decode(self, ids: Sequence[int]) -> str:
        return self.llm.detokenize(list(ids)).decode("utf-8", errors="replace")

    def end_token(self) -> int:
        return int(self.llm.token_eos())

    def _reuse(self, ids: Sequence[int]) -> int:
        """Keep the KV cache for the prefix ``ids`` shares with what was evaluated last; returns its length."""
        keep = common_prefix_len([list(self.llm.input_ids[: self.llm.n_tokens]), list(ids)])
        self.llm.n_tokens = keep
        return keep

    def label_probs(self, batch: Sequence[Sequence[int]], label_ids: Sequence[int], shared: int = 0) -> np.ndarray:
        out = np.empty((len(batch), len(label_ids)))
        n_vocab = self.llm.n_vocab()
        for r, ids in enumerate(batch):
            ids = list(ids)
            keep = self._reuse(ids[:-1])  # the last token is always run: its logits are what we read
            self.llm.eval(ids[keep:])
            self.tokens_computed += len(ids) - keep
            logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(n_vocab,)).astype(np.float64)
            logits -= logits.max()
            logp = logits - np.log(np.exp(logits).sum())
            out[r] = np.exp(logp[list(label_ids)])
        return out

    def response_losses(self, pairs: Sequence[tuple[str, str]], max_length: int | None = None, *,
                        end: bool = False) -> np.ndarray:
        """(B,) mean next-token loss (nats) over the response tokens of each (context, response), as
        :meth:`selectit.backends.hf.HFBackend.response_losses` defines it (plain text, BOS as the model
        adds it, the response's end cut over ``max_length``, NaN where no response token is scored;
        ``end``: the model's end-of-text token follows the response, when it fits).

        The context is evaluated like a rating prompt (its keys/values reused from the last call where
        they match, so a context shared by many records is computed once); the response is decoded with
        logits at every position, n_batch tokens at a time."""
        return self._losses(pairs, max_length, end)[0]

    def _losses(self, pairs, max_length, end) -> tuple[np.ndarray, np.ndarray]:
        """(mean losses (B,), last scored losses (B,)), NaN for a row with none."""
        llm = self.llm
        limit = clamp_length(max_length, self.max_length)
        n_vocab = llm.n_vocab()
        out, last = np.full(len(pairs), np.nan), np.full(len(pairs), np.nan)
        for r, (context, response) in enumerate(pairs):
            ids, start = response_ids(self.encode_plain, context, response, limit, self.end_token() if end else None)
            first = first_scored(start)  # the first scored token; position first - 1 predicts it
            if first >= len(ids):
                continue
            prefix, rest = ids[: first - 1], ids[first - 1 :]
            keep = self._reuse(prefix)
            llm._ctx.kv_cache_seq_rm(-1, keep, -1)
            if prefix[keep:]:
                llm.eval(prefix[keep:])
            nll = []
            for i in range(0, len(rest), llm.n_batch):
                chunk = rest[i : i + llm.n_batch]
                llm._batch.set_batch(batch=chunk, n_past=llm.n_tokens, logits_all=True)
                llm._ctx.decode(llm._batch)
                llm.input_ids[llm.n_tokens : llm.n_tokens + len(chunk)] = chunk
                llm.n_tokens += len(chunk)
                targets = ids[first + i : first + i + len(chunk)]  # the last position has no next token
                logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(len(chunk), n_vocab))[: len(targets)]
                logits = logits.astype(np.float64)
                top = logits.max(axis=1)
                lse = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
                nll.extend(lse - logits[np.arange(len(targets)), targets])
            self.tokens_computed += len(ids) - keep
            out[r], last[r] = float(np.mean(nll)), float(nll[-1])
        return out, last

    def encode_plain(self, text: str) -> list[int]:
        """Token ids of ``text`` as plain text (the tokenizer's BOS as the model adds it)."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=self._adds_bos(), special=False)


def trained_context(metadata: dict) -> int | None:
    """The context a GGUF model was trained with (``<architecture>.context_length``), None if unstated."""
    value = metadata.get(f"{metadata.get('general.architecture', '')}.context_length")
    return int(value) if value not in (None, "") else None
