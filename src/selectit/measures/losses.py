"""Text losses: how likely the scoring model finds one part of a record given some context.

A loss is the mean next-token loss (nats per token) of the target's tokens, each predicted from the
context and the target tokens before it (selectit.backends.base.response_ids). Kinds (as kept in the
score store; each names a context and a target):

- ``CONDITIONED``: the response, after the Alpaca prompt (Taori et al. 2023) holding the instruction,
  as in the IFD authors' code (Cherry_LLM, PROMPT_DICT); a record's Alpaca ``input`` fills "### Input:".
- ``BLANK``: the response after the same prompt with an empty instruction: what the model expects as an
  answer to nothing in particular. BLANK - CONDITIONED is what the instruction adds (relevance).
- ``ALONE``: the response with no context at all (IFD's denominator); its first token is not scored
  when the tokenizer adds no BOS.
- ``REVERSED``: the instruction, after a prompt that shows the response and asks for the instruction
  that produced it (r-IFD's numerator: Li et al., "Selective Reflection-Tuning", ACL Findings 2024, the
  prompt of their selection code); ``INSTRUCTION_ALONE``: the instruction with no context.
- ``STOP``: nothing, after the Alpaca prompt with the instruction and the whole response: with ``END``
  (``END_LOSS``), the loss of the end-of-text token alone, how ready the model is to stop where the
  response stops. A response cut by a generation limit ends where no answer would (bench/junk_dev.py:
  clean against cut answers, AUROC 0.998 on SmolLM2-135M). Its tokens are GIVEN's, so GIVEN's pass
  stores it too where the backend gives its last token's loss (:func:`text_losses`); otherwise it is a
  pass of its own. NaN where the record does not fit in ``--max-length`` (no end token is read).

A kind ending in ``END`` scores the model's end-of-text token after the target too, as supervised
fine-tuning trains it: how ready the model is to stop there. The likelihood term uses those
(``GIVEN``, ``GIVEN_BLANK``): without the end token a truncated answer looks as fluent as a whole one
(bench/discrimination.py: truncation 0.65 without it, 0.87 with it). The baselines keep the published
definitions (no end token).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from selectit.backends.base import clamp_length
from selectit.errors import ConfigError
from selectit.measures.alpaca import (  # noqa: F401 - importers find the prompts here too
    PROMPT_INPUT, PROMPT_NO_INPUT, alpaca_parts, blank_context, instruction_context)
from selectit.measures import reading
from selectit.measures.base import Measure, MissingMeasurement, ModelInfo, Outcome, Progress
from selectit.records import Record
from selectit.store import ScoreStore, model_key, prompt_key, record_key
from selectit.truncation import MAX_CHARS_PER_TOKEN

REVERSE_ASK = ("Below is the response to an instruction, please guess the corresponding instruction for the "
               "given response.\n{response}\nGenerate the instruction for the above response.")
CONDITIONED = prompt_key(PROMPT_NO_INPUT + "\0" + PROMPT_INPUT)  # store kind: response given the instruction
BLANK = prompt_key(PROMPT_NO_INPUT.format(instruction=""))  # store kind: response given a blank instruction
ALONE = "response-alone"  # store kind: the response with no context
REVERSED = prompt_key(PROMPT_NO_INPUT.format(instruction=REVERSE_ASK))  # store kind: instruction given response
INSTRUCTION_ALONE = "instruction-alone"  # store kind: the instruction with no context
STOP = "response-stop"  # nothing after the prompt and the whole response: with END, the end token's loss
END = "+end"  # suffix of a store kind whose target is followed by the model's end-of-text token
GIVEN, GIVEN_BLANK = CONDITIONED + END, BLANK + END  # the likelihood term's kinds
END_LOSS = STOP + END  # the end-of-text token's loss after the response given the instruction
VIEWED = (GIVEN, GIVEN_BLANK)  # kinds a record cut by --max-length is read in as its view (selectit.measures.reading)


def row_key(record: Record, key: str, seen: dict[str, reading.View]) -> str:
    """The store key of a VIEWED loss of ``record`` (record key ``key``): a cut record's is its view's."""
    view = seen[key]
    return key if view.whole else reading.view_key(record, view)


def record_spans(record: Record, max_length: int | None = None) -> list[tuple[int, int]]:
    """Character spans of the record's own text in ``instruction_context(record) + record.response``:
    the instruction, the Alpaca input (when there is one) and the response; not the prompt's words.
    With ``max_length`` (tokens), cut to the characters that many tokens can cover (what
    ``response_ids`` tokenizes at most)."""
    parts = alpaca_parts(record)
    if parts is None:
        start = PROMPT_NO_INPUT.index("{instruction}")
        spans = [(start, start + len(record.instruction))]
    else:
        start = PROMPT_INPUT.index("{instruction}")
        middle = PROMPT_INPUT.index("{input}") - start - len("{instruction}")  # the words between the two
        second = start + len(parts[0]) + middle
        spans = [(start, start + len(parts[0])), (second, second + len(parts[1]))]
    context = len(instruction_context(record))
    spans = [*spans, (context, context + len(record.response))]
    if max_length is None:
        return spans
    limit = max_length * MAX_CHARS_PER_TOKEN
    return [(min(s, limit), min(e, limit)) for s, e in spans]


def reversed_context(record: Record) -> str:
    """The Alpaca prompt asking for the instruction of ``record``'s response; the instruction follows."""
    return PROMPT_NO_INPUT.format(instruction=REVERSE_ASK.format(response=record.response))


# kind (without END) -> record -> (context, target)
TEXTS: dict[str, Callable[[Record], tuple[str, str]]] = {
    CONDITIONED: lambda r: (instruction_context(r), r.response),
    BLANK: lambda r: (blank_context(r), r.response),
    ALONE: lambda r: ("", r.response),
    REVERSED: lambda r: (reversed_context(r), r.instruction),
    INSTRUCTION_ALONE: lambda r: ("", r.instruction),
    STOP: lambda r: (instruction_context(r) + r.response, ""),
}
NAMES = {CONDITIONED: "response given the instruction", BLANK: "response given a blank instruction",
         ALONE: "response alone", REVERSED: "instruction given the response", INSTRUCTION_ALONE: "instruction alone",
         STOP: "end-of-text token after the response given the instruction"}


def loss_key(backend, max_length: int | None) -> str:
    """The store's model key for text losses of ``backend`` (see store.model_key)."""
    model = {k: v for k, v in backend.fingerprint.items() if k != "template"}  # losses read plain text
    return model_key({**model, "max_length": clamp_length(max_length, backend.max_length), "use": "response_losses"})


@dataclass(frozen=True)
class Losses(Measure):
    """Mean target-token loss per (model, kind, record): (n,) float64, NaN where no token was scored."""

    kind: str
    family = "losses"

    def __post_init__(self) -> None:
        if self.kind.removesuffix(END) not in TEXTS:
            raise ValueError(f"unknown loss kind {self.kind!r}")

    def describe(self) -> str:
        if self.kind == END_LOSS:
            return f"losses of the {NAMES[STOP]}"
        end = " and its end token" if self.kind.endswith(END) else ""
        return f"losses of the {NAMES[self.kind.removesuffix(END)]}{end}"

    def passes(self) -> float:
        return 1.0

    @property
    def stored(self) -> str:
        """The kind its losses are kept under in the score store."""
        return self.kind

    def compute(self, backend, info, records, store, execution, progress=None) -> Outcome:
        return text_losses(backend, records, self.kind, execution.batch_size, info.max_length, store,
                           info.keys["losses"], progress)

    def pools(self) -> bool:
        """Whether this loss's pass reads the record in the Alpaca prompt (so it can pool its embedding)."""
        return self.kind.removesuffix(END) == CONDITIONED

    def load(self, info: ModelInfo, records: Sequence[Record], store: ScoreStore) -> np.ndarray:
        keys = [record_key(r) for r in records]
        if self.kind in VIEWED:  # a record cut by --max-length: the losses of its view
            seen = reading.stored_views(info, records, store, self.key(info))
            keys = [row_key(r, k, seen) for r, k in zip(records, keys)]
        found = store.load_losses(self.key(info), self.stored, keys)
        missing = next((i for i, k in enumerate(keys) if k not in found), None)
        if missing is not None:
            raise MissingMeasurement(f"the score store {store.path} has no {self.describe()} of model {info.name} "
                                     f"for record {records[missing].id!r}")
        return np.array([found[k] for k in keys], dtype=np.float64)


def text_losses(backend, records: Sequence[Record], kind: str, batch_size: int, max_length: int, store: ScoreStore,
                key: str, progress: Progress | None = None, embed: str | None = None,
                stored: str | None = None) -> Outcome:
    """Store the mean target-token loss of each record in context ``kind`` (one of TEXTS, + END to score
    the end-of-text token after the target too) under ``key``; with ``embed`` (a vector kind, for a
    CONDITIONED kind only), also the record's pooled last hidden state from the same pass
    (selectit.measures.embeddings), float16. A VIEWED kind reads a record cut by ``max_length`` as its
    view (selectit.measures.reading: the view is stored too, its losses under its own key, no end token).

    Distinct records are run once, sorted by length and batched (little padding); what is already in
    the store is not computed again and every computed batch is stored at once, so a killed run
    resumes. ``progress`` is called with records done.

    Kind GIVEN reads the same tokens as END_LOSS (the prompt, the whole response, the end token): with a
    backend that gives each row's last token loss from the same pass (``losses_and_ends``: hf, fake), the
    END_LOSS of the records read whole is stored from GIVEN's pass (NaN for a cut one, as its own pass
    gives), so the end loss costs no pass of its own.

    ``stored``: keep the losses under that kind instead of ``kind`` (an early exit's, :class:`EarlyLosses`;
    then no END_LOSS rides along)."""
    texts, end = TEXTS[kind.removesuffix(END)], kind.endswith(END)
    ends = kind == GIVEN and stored is None and hasattr(backend, "losses_and_ends")
    stored = stored or kind
    keys = [record_key(r) for r in records]
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    seen = reading.views(backend.encode_plain, [records[i] for i in first.values()], max_length, store, key) \
        if kind in VIEWED else {}
    rows = {k: row_key(records[i], k, seen) if seen else k for k, i in first.items()}  # record key -> row key
    found = store.load_losses(key, stored, rows.values())
    pooled = store.load_vectors(key, embed, first, np.float16) if embed else {}
    todo = sorted((i for k, i in first.items() if rows[k] not in found or (embed and k not in pooled)),
                  key=lambda i: len(records[i].instruction) + len(records[i].response))
    if progress:
        progress(len(records) - len(todo))  # stored, or a duplicate of another record
    outcome = Outcome(stored=len(records) - len(todo))
    for b in range(0, len(todo), batch_size):
        batch = todo[b : b + batch_size]
        before = backend.tokens_computed
        cut = [j for j, i in enumerate(batch) if seen and not seen[keys[i]].whole]
        whole = [j for j in range(len(batch)) if j not in set(cut)]
        losses, lasts = np.full(len(batch), np.nan), np.full(len(batch), np.nan)
        if embed:  # the record's embedding pools the pass over the record itself, cut or not
            spans = [record_spans(records[i], max_length) for i in batch]
            pairs = [texts(records[i]) for i in batch]
            if ends:
                losses[:], lasts[:], vectors = backend.losses_and_ends(pairs, max_length, spans)
            else:
                losses[:], vectors = backend.pooled_losses(pairs, spans, max_length, end=end)
            store.put_vectors(key, embed, [(keys[i], v.astype(np.float16)) for i, v in zip(batch, vectors)])
        elif whole:
            pairs = [texts(records[batch[j]]) for j in whole]
            if ends:
                losses[whole], lasts[whole], _ = backend.losses_and_ends(pairs, max_length)
            else:
                losses[whole] = backend.response_losses(pairs, max_length, end=end)
        if cut:
            pairs = [reading.view_pair(kind == GIVEN, records[batch[j]], seen[keys[batch[j]]]) for j in cut]
            losses[cut] = backend.response_losses(pairs, max_length, end=False)
        outcome.tokens += backend.tokens_computed - before
        store.put_losses(key, stored, [(rows[keys[i]], float(v)) for i, v in zip(batch, losses)])
        if ends:  # a cut record's pass has no end token: NaN, as END_LOSS's own pass gives
            lasts[cut] = np.nan
            store.put_losses(key, END_LOSS, [(keys[i], float(v)) for i, v in zip(batch, lasts)])
        if progress:
            progress(len(batch))
    return outcome


@dataclass(frozen=True)
class EarlyLosses(Losses):
    """A likelihood-term loss (``kind`` GIVEN or GIVEN_BLANK) read after the model's first ``layers``
    layers through its final norm and output head (the logit lens; ``HFBackend.early_exit``): the same
    tokens as the full pass, a fraction of its layers. (n,) float64 per (model, record), for the learned
    proxy's ``early-likelihood`` rung (selectit.measures.features). Needs a backend with ``early_exit``."""

    layers: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind not in VIEWED or self.layers < 1:
            raise ValueError(f"no early-exit loss {self.kind!r} after {self.layers} layer(s)")

    @property
    def stored(self) -> str:
        return f"early:{self.layers}:{self.kind}"

    def describe(self) -> str:
        return f"{super().describe()} after {self.layers} layer(s)"

    def passes(self) -> float:
        return 0.5

    def pools(self) -> bool:
        return False  # an early exit's hidden states are not the record embedding

    def compute(self, backend, info, records, store, execution, progress=None) -> Outcome:
        if not hasattr(backend, "early_exit"):
            raise ConfigError(f"an early exit (--proxy-features early-likelihood) needs --backend hf: the "
                              f"{info.name} backend cannot stop after {self.layers} layer(s)")
        with backend.early_exit(self.layers):
            return text_losses(backend, records, self.kind, execution.batch_size, info.max_length, store,
                               info.keys["losses"], progress, stored=self.stored)
