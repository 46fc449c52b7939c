"""Response losses: how likely the scoring model finds a record's response, in several contexts.

Used by the ``perplexity`` and ``ifd`` baselines (selectit.baselines) and by the likelihood term of
SelectIT's sentence level (``--likelihood-weight``, see :func:`selectit.reflection.likelihood_scores`).

A response loss is the mean next-token loss (nats per token) of the response's tokens, each predicted
from the context and the response tokens before it. Contexts ("kinds", as kept in the score store):

- ``CONDITIONED``: the Alpaca prompt (Taori et al. 2023) holding the instruction, as in the IFD
  authors' code (Cherry_LLM, PROMPT_DICT); a record's Alpaca ``input`` fills "### Input:".
- ``BLANK``: the same prompt with an empty instruction: what the model expects as an answer to
  nothing in particular. The gap BLANK - CONDITIONED is what the instruction adds (relevance).
- ``ALONE``: the response with no context at all (IFD's denominator); its first token is not scored
  when the tokenizer adds no BOS.

A kind ending in ``END`` scores the model's end-of-text token after the response too, as supervised
fine-tuning trains it: how ready the model is to stop there. The likelihood term uses those
(``GIVEN``, ``GIVEN_BLANK``): without the end token a truncated answer looks as fluent as a whole one
(bench/discrimination.py: truncation 0.65 without it, 0.87 with it). The baselines keep the published
definitions (no end token).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from selectit.errors import ConfigError
from selectit.records import Record
from selectit.store import ScoreStore, model_key, prompt_key, record_key

PROMPT_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately "
                   "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:")
PROMPT_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                "context. Write a response that appropriately completes the request.\n\n"
                "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:")
CONDITIONED = prompt_key(PROMPT_NO_INPUT + "\0" + PROMPT_INPUT)  # store kind: response given the instruction
BLANK = prompt_key(PROMPT_NO_INPUT.format(instruction=""))  # store kind: response given a blank instruction
ALONE = "response-alone"  # store kind: the response with no context
END = "+end"  # suffix of a store kind whose response is followed by the model's end-of-text token
GIVEN, GIVEN_BLANK = CONDITIONED + END, BLANK + END  # the likelihood term's kinds


def instruction_context(record: Record) -> str:
    """The Alpaca prompt for ``record``; the response follows it directly (no space, as in training)."""
    raw = record.raw if isinstance(record.raw, dict) else {}
    if isinstance(raw.get("instruction"), str) and isinstance(raw.get("input"), str) and raw["input"].strip():
        return PROMPT_INPUT.format(instruction=raw["instruction"], input=raw["input"])
    return PROMPT_NO_INPUT.format(instruction=record.instruction)


def blank_context(record: Record) -> str:
    """The Alpaca prompt with an empty instruction (the same for every record)."""
    return PROMPT_NO_INPUT.format(instruction="")


def alone_context(record: Record) -> str:
    return ""


CONTEXTS: dict[str, Callable[[Record], str]] = {CONDITIONED: instruction_context, BLANK: blank_context,
                                                 ALONE: alone_context}


def loss_limit(backend, max_length: int | None) -> int:
    """Longest sequence (context + response) in tokens: ``max_length`` capped by the model's context."""
    return min(max_length or backend.max_length, backend.max_length)


def loss_key(backend, max_length: int | None) -> str:
    """The store's model key for response losses of ``backend`` (see store.model_key)."""
    model = {k: v for k, v in backend.fingerprint.items() if k != "template"}  # losses read plain text
    return model_key({**model, "max_length": loss_limit(backend, max_length), "use": "response_losses"})


def has_losses(backend) -> bool:
    return hasattr(backend, "response_losses")


def response_losses(backend, records: Sequence[Record], kind: str, batch_size: int, max_length: int | None,
                    store: ScoreStore | None, progress: Callable[[float], object] | None = None,
                    key: str | None = None) -> np.ndarray:
    """(n,) mean response-token loss of each record in context ``kind`` (one of CONTEXTS, + END to
    score the end-of-text token after the response too).

    Distinct records are run once, sorted by length and batched (little padding); losses already in
    ``store`` (under the model's :func:`loss_key`, ``kind``) are reused and every computed batch is
    stored at once, so a killed run resumes. ``progress`` is called with records done."""
    context, end = CONTEXTS[kind.removesuffix(END)], kind.endswith(END)
    key = key or loss_key(backend, max_length)
    limit = loss_limit(backend, max_length)
    keys = [record_key(r) for r in records]
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    found = store.load_losses(key, kind, first) if store is not None else {}
    todo = sorted((i for k, i in first.items() if k not in found),
                  key=lambda i: len(records[i].instruction) + len(records[i].response))
    if progress:
        progress(len(records) - len(todo))  # stored, or a duplicate of another record
    for b in range(0, len(todo), batch_size):
        batch = todo[b : b + batch_size]
        losses = backend.response_losses([(context(records[i]), records[i].response) for i in batch], limit, end=end)
        found.update({keys[i]: float(v) for i, v in zip(batch, losses)})
        if store is not None:
            store.put_losses(key, kind, [(keys[i], float(v)) for i, v in zip(batch, losses)])
        if progress:
            progress(len(batch))
    return np.array([found[k] for k in keys], dtype=np.float64)


def likelihood_losses(backend, records: Sequence[Record], config, store: ScoreStore | None,
                      progress: Callable[[float], object] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(given (n,), blank (n,)): the response losses ``--likelihood-weight`` needs (kinds GIVEN and
    GIVEN_BLANK: the response and its end token), stored under the backend's :func:`loss_key`.
    ``progress`` gets records done (n in all)."""
    if not has_losses(backend):
        raise ConfigError(f"--likelihood-weight needs response losses; the {config.backend} backend has none: "
                          "use --backend hf, or --likelihood-weight 0")
    half = (lambda done: progress(done / 2)) if progress else None
    return tuple(response_losses(backend, records, kind, config.batch_size, config.max_length, store, half)
                 for kind in (GIVEN, GIVEN_BLANK))
