"""Hugging Face transformers backend (CPU and GPU).

On CPU a batch's rows run packed as one sequence, without padding (:mod:`selectit.backends.packing`),
where the model supports it; otherwise batched with left padding. Either way position ids count only
a row's own tokens, so a record's scores do not depend on what it is batched with; the output head
runs at the last position only; float32 by default.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Sequence

import numpy as np

from selectit.backends.base import LoadOptions, as_options, clamp_length, first_scored, response_ids
from selectit.backends.pooling import Spans
from selectit.errors import ConfigError
from selectit.backends.models import ModelSource, hub_files, resolve_model
from selectit.plan import common_prefix_len
from selectit.backends.tokenizer import TokenizerText, encode_turn_text
from selectit.prompts import resolve_template

DEFAULT_MAX_LENGTH = 4096
HEAD_ROWS = 2048  # positions whose logits are computed at once for response losses


class HFBackend(TokenizerText):
    def __init__(self, model, tokenizer, *, name: str, template: str = "plain", max_length: int | None = None,
                 prefix_cache: bool = True, source: str | None = None, num_parameters: int | None = None,
                 packed: bool | None = None):
        import torch

        from selectit.backends import packing

        self.torch = torch
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.template = template = resolve_template(template, bool(getattr(tokenizer, "chat_template", None)), name)
        # Counted once per tensor, so tied input/output embeddings count once.
        self.num_parameters = num_parameters or sum(p.numel() for p in model.parameters())
        limit = getattr(model.config, "max_position_embeddings", None) or DEFAULT_MAX_LENGTH
        self.max_length = clamp_length(max_length, limit)
        self.device = next(model.parameters()).device
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = pad if pad is not None else 0
        # Output head at the last position only, where the model supports it.
        keeps_last = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._last_only = {"logits_to_keep": 1} if keeps_last else {}
        self.prefix_cache = prefix_cache
        # None: pack on CPU where the model supports it (on GPU one padded kernel is faster).
        self.packed = (self.device.type == "cpu" and packing.supported(model)) if packed is None else packed
        if self.packed and not packing.supported(model):
            raise ConfigError(f"{name}: this model's attention cannot run packed batches")
        self._prefix = None  # (prefix token ids, its KV cache for one row)
        # the keyword a cache is passed in: 'cache' from transformers 5.2x, 'past_key_values' before
        takes = [inspect.signature(m.forward).parameters for m in (model, model.base_model)]
        self._cache = "cache" if all("cache" in t for t in takes) else "past_key_values"
        # What makes this model's output what it is, for the score store's keys.
        self.fingerprint = {"backend": "hf", "name": name, "source": source, "dtype": str(model.dtype),
                            "template": template, "num_parameters": self.num_parameters}
        self.tokens_computed = 0  # tokens actually run through the model (a shared prefix counts once)
        self.dtype_reason = "given"  # why this dtype (load: selectit.backends.precision)
        self.loss_head = "float32"  # the response losses' output head: see set_loss_head

    def set_loss_head(self, kind: str) -> None:
        """Run the response-loss passes' output head in float32 ('float32', the default: a bfloat16/float16
        model gets a float32 copy of its head) or in the model's own dtype ('model': the head as loaded,
        issue 27's cheaper variant, measured by bench/speed.py). The rating passes keep the float32 head.
        A store key tells the two apart (the fingerprint names a head that is not float32)."""
        if kind not in ("float32", "model"):
            raise ConfigError(f"loss head must be 'float32' or 'model', got {kind!r}")
        self.loss_head = kind
        self.fingerprint = {k: v for k, v in self.fingerprint.items() if k != "loss_head"}
        head = self.model.get_output_embeddings()
        if kind == "float32" or not hasattr(head, "low"):  # a float32 model: its head is float32 anyway
            return
        if head.low is None:  # an untied head: its low-precision copy is made only when asked for
            low = self.torch.nn.Linear(head.weight.shape[1], head.weight.shape[0], bias=head.bias is not None,
                                       device=head.weight.device, dtype=self.model.dtype)
            with self.torch.no_grad():
                low.weight.copy_(head.weight)
                if head.bias is not None:
                    low.bias.copy_(head.bias)
            head.low = low.requires_grad_(False)
        self.fingerprint["loss_head"] = kind

    @classmethod
    def load(cls, spec: str | None, options: LoadOptions | None = None, *, packed: bool | None = None,
             **fields) -> HFBackend:
        """Load a hub id, a local folder, a GGUF file, or (spec None) the embedded model.

        Safe by default: no repository code runs unless ``trust_remote_code``; weights must be
        safetensors or GGUF unless ``allow_pickle`` (PyTorch .bin files can run code when loaded)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from selectit.backends import precision

        o = as_options(options, fields)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if o.device == "auto" else o.device
        kind = torch.device(device).type
        dtype, why = precision.resolve(o.dtype, kind, cuda_bf16=kind == "cuda" and torch.cuda.is_bf16_supported())
        source: ModelSource = resolve_model(spec)
        kwargs = {"trust_remote_code": o.trust_remote_code}
        folder = hub_files(source) or source.path  # a hub id's cached copy when the hub cannot be used
        weights = {}
        if source.gguf_file:
            kwargs["gguf_file"] = source.gguf_file
        elif not o.allow_pickle:
            weights["use_safetensors"] = True
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype), **kwargs, **weights)
        except (OSError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            hint = "" if o.allow_pickle or source.gguf_file else (
                " (only safetensors/GGUF weights load by default; --allow-pickle loads PyTorch .bin files)")
            raise ConfigError(f"cannot load model {spec or source.name}: {first}{hint}") from None
        num_parameters = sum(p.numel() for p in model.parameters())  # before the head gets its own copy
        if dtype != "float32":
            _float32_head(model)
        backend = cls(model.to(device), tokenizer, name=source.name, template=o.template, max_length=o.max_length,
                      prefix_cache=o.prefix_cache, source=f"{source.path}::{source.gguf_file or ''}",
                      num_parameters=num_parameters, packed=packed)
        backend.dtype_reason = why
        return backend

    def encode_turn(self, text: str) -> list[int]:
        return encode_turn_text(self.tokenizer, self.template, text)

    def label_probs(self, batch: Sequence[Sequence[int]], label_ids: Sequence[int], shared: int = 0) -> np.ndarray:
        """(B, S) label probabilities. ``shared``: every row begins with the same ``shared`` tokens;
        their keys/values are computed once (and kept for the next batch with the same prefix)
        instead of once per row. The rows' results are the same either way (up to float rounding)."""
        return self._label_pass(batch, label_ids, shared)[0]

    def pooled_label_probs(self, batch: Sequence[Sequence[int]], label_ids: Sequence[int], shared: int,
                           spans: Sequence[Spans | None]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`label_probs` from the same forward pass, and each row's last hidden state mean-pooled
        over its token ``spans`` (positions in the row; None: not pooled): ((B, S), (B, H) float32, NaN
        rows where not pooled). Tokens in the shared prefix come from the prefix's own hidden states."""
        return self._label_pass(batch, label_ids, shared, spans)

    def _label_pass(self, batch, label_ids, shared: int, spans=None):
        torch = self.torch
        shared = shared if self.prefix_cache else 0
        suffixes = [ids[shared:] for ids in batch]
        self.tokens_computed += sum(len(ids) for ids in suffixes)
        if self.packed:
            return self._packed_label_probs(batch, suffixes, label_ids, shared, spans)
        width = max(len(ids) for ids in suffixes)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), shared + width), dtype=torch.long)
        mask[:, :shared] = 1
        for i, ids in enumerate(suffixes):  # padding sits before each suffix: every row ends at the last column
            input_ids[i, width - len(ids):] = torch.as_tensor(ids, dtype=torch.long)
            mask[i, shared + width - len(ids):] = 1
        # (B, T): each real token's position counts only real tokens before it, prefix included.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
        kwargs = dict(self._last_only) if spans is None else {}
        if shared:
            kwargs.update({self._cache: self._prefix_kv(batch[0][:shared], len(batch)), "use_cache": True})
        else:
            kwargs.update(use_cache=False)
        inputs = dict(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                      position_ids=positions.to(self.device), **kwargs)
        pooled = None
        with torch.inference_mode():
            if spans is None:
                logits = self._forward(**inputs).logits[:, -1, :]
            else:  # the body, then the head at the last position (what the model's own forward does)
                hidden = self._forward(self.model.base_model, **inputs).last_hidden_state  # (B, W, H)
                logits = self.model.get_output_embeddings()(hidden[:, -1, :])
                starts = [r * width + width - len(ids) - shared for r, ids in enumerate(suffixes)]
                pooled = self._pool_rows(batch[0][:shared], hidden.reshape(-1, hidden.shape[-1]), starts, spans)
            logp = torch.log_softmax(logits.float(), dim=-1)  # (B, V)
            picked = logp[:, list(label_ids)].double().exp()  # (B, S), float64 so tiny mass survives
        return picked.cpu().numpy(), pooled

    def _packed_label_probs(self, batch, suffixes, label_ids, shared: int, spans=None):
        """:meth:`_label_pass` with the rows packed into one sequence (no padding)."""
        torch = self.torch
        kwargs = {self._cache: self._prefix_kv(batch[0][:shared], 1), "use_cache": True} if shared else {}
        hidden, ids, lengths = self._packed_hidden(suffixes, shared, **kwargs)
        ends = torch.as_tensor(np.cumsum(lengths) - 1, device=self.device)  # (B,) each row's last token
        with torch.inference_mode():
            logits = self.model.get_output_embeddings()(hidden[ends])  # (B, V)
            logp = torch.log_softmax(logits.float(), dim=-1)
            picked = logp[:, list(label_ids)].double().exp()  # (B, S)
        pooled = None
        if spans is not None:
            starts = (np.cumsum([0, *lengths[:-1]]) - shared).tolist()
            pooled = self._pool_rows(batch[0][:shared], hidden, starts, spans)
        return picked.cpu().numpy(), pooled

    def _pool_rows(self, prefix, hidden, starts, spans) -> np.ndarray:
        """(B, H) float32: row r's token spans (row positions) mean-pooled, from ``hidden`` (N, H) where
        row r's position t >= len(prefix) is at starts[r] + t, and from the prefix's own hidden states
        for t < len(prefix)."""
        from selectit.backends.pooling import mean_rows, positions

        torch, shared = self.torch, len(prefix)
        rows = [positions(s or ()) for s in spans]
        if shared and any(len(p) and p.min() < shared for p in rows):
            hidden = torch.cat([self._prefix_states(prefix), hidden])
            rows = [np.where(p < shared, p, p + start + shared) for p, start in zip(rows, starts)]
        else:
            rows = [p + start for p, start in zip(rows, starts)]
        out = mean_rows(torch, hidden, rows)
        out[[s is None for s in spans]] = np.nan
        return out

    def _prefix_states(self, prefix):
        """Last hidden states (P, H) of a shared prefix alone (for pooling over tokens the cache holds)."""
        ids = self.torch.as_tensor([list(prefix)], dtype=self.torch.long, device=self.device)
        with self.torch.inference_mode():
            return self._forward(self.model.base_model, input_ids=ids, use_cache=False).last_hidden_state[0]

    def _packed_hidden(self, rows: Sequence[Sequence[int]], offset: int = 0, **kwargs):
        """Last hidden states (T, H) of ``rows`` run packed as one sequence (see
        :mod:`selectit.backends.packing`; ``offset``: the length of a cached prefix every row follows,
        passed in ``kwargs`` as the cache), with the packed ids (1, T) and the rows' lengths."""
        out, ids, lengths = self._packed_run(rows, offset, **kwargs)
        return out.last_hidden_state[0], ids, lengths

    def _packed_run(self, rows: Sequence[Sequence[int]], offset: int | Sequence[int] = 0, **kwargs):
        """:meth:`_packed_hidden`, returning the base model's whole output (its cache with ``use_cache``)
        instead of the hidden states alone; ``offset`` may be one per row."""
        from selectit.backends import packing

        ids, positions, lengths = packing.pack(rows, offset)
        kwargs.setdefault("use_cache", False)
        with self.torch.inference_mode(), packing.packed(self.model):
            out = self._forward(self.model.base_model, input_ids=ids.to(self.device),
                                position_ids=positions.to(self.device), selectit_segments=tuple(lengths), **kwargs)
        return out, ids, lengths

    def response_losses(self, pairs: Sequence[tuple[str, str]], max_length: int | None = None, *,
                        end: bool = False) -> np.ndarray:
        """(B,) mean next-token loss (nats, float64) over the response tokens of each (context, response).

        The model reads ``context + response`` as plain text (the tokenizer adds its BOS as usual);
        ``context`` "" scores the response alone. Losses are over response tokens only, each predicted
        from everything before it; a response's first token is not scored when nothing precedes it
        (no BOS, no context). Over ``max_length`` the response's end is cut. NaN: no response token.
        ``end``: the tokenizer's end-of-text token follows the response and is scored with it (when
        the whole response fits).
        Packed (on CPU, see :mod:`selectit.backends.packing`) or batched with right padding; logits in
        float32 at the response positions only."""
        return self._loss_pass(pairs, max_length, end)[0]

    def losses_and_ends(self, pairs: Sequence[tuple[str, str]], max_length: int | None = None,
                        spans: Sequence[Spans] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """From one forward pass with the end token (``end=True``): the mean losses (B,) as
        :meth:`response_losses`, each row's last scored token's loss (B,) (the end token's where it fits:
        how ready the model is to stop there; NaN for a row with none) and, with ``spans``, the pooled
        states as :meth:`pooled_losses` (else None)."""
        means, pooled, last = self._loss_pass(pairs, max_length, True, spans, last=True)
        return means, last, pooled

    def pooled_losses(self, pairs: Sequence[tuple[str, str]], spans: Sequence[Spans], max_length: int | None = None,
                      *, end: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`response_losses` from the same forward pass, and each row's last hidden state
        mean-pooled over the tokens of its character ``spans`` of ``context + response`` (see
        :func:`selectit.backends.pooling.token_spans`): ((B,), (B, H) float32, NaN where no token)."""
        return self._loss_pass(pairs, max_length, end, spans)[:2]

    def _loss_pass(self, pairs, max_length, end, spans=None, last=False):
        """(means (B,), pooled (B, H) or None, with ``last`` each row's last scored loss (B,) else None)."""
        from selectit.backends.pooling import mean_rows, positions, token_spans

        torch = self.torch
        limit = clamp_length(max_length, self.max_length)
        stop = self.end_token() if end else None
        rows = [response_ids(self.encode_plain, c, r, limit, stop) for c, r in pairs]
        self.tokens_computed += sum(len(ids) for ids, _ in rows)
        pools = None if spans is None else [positions(token_spans(self.encode_plain, c + r, ids, s))
                                            for (c, r), (ids, _), s in zip(pairs, rows, spans)]
        pooled = None
        if self.packed:  # a context every row has (the blank instruction's) computed once and cached
            c = self._shared_context([ids for ids, _ in rows], [start for _, start in rows], pools)
            cache = {self._cache: self._prefix_kv(rows[0][0][:c], 1), "use_cache": True} if c else {}
            self.tokens_computed -= c * len(rows)  # counted whole above; the tails run, the start once
            hidden, ids, lengths = self._packed_hidden([ids[c:] for ids, _ in rows], c, **cache)  # (T, H)
            offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            if pools is not None:
                pooled = mean_rows(torch, hidden, [p - c + o for p, o in zip(pools, offsets)])
            means, lasts = self._packed_losses(hidden, ids, offsets, [(ids[c:], start - c) for ids, start in rows],
                                               last=True)
            return means, pooled, lasts if last else None
        else:
            width = max(len(ids) for ids, _ in rows)
            input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            scored = torch.zeros((len(rows), width), dtype=torch.bool)  # (B, T): position t predicts token t+1
            for i, (ids, start) in enumerate(rows):
                input_ids[i, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
                mask[i, : len(ids)] = 1
                scored[i, first_scored(start) - 1 : max(len(ids) - 1, 0)] = True  # an empty row scores nothing
            targets = torch.roll(input_ids, -1, dims=1)[scored]  # (N,)
            which = torch.arange(len(rows)).unsqueeze(1).expand(-1, width)[scored]  # (N,) row of each target
            with torch.inference_mode():
                hidden = self._forward(self.model.base_model, input_ids=input_ids.to(self.device),
                                       attention_mask=mask.to(self.device)).last_hidden_state
                nll = self._losses(hidden[scored.to(self.device)], targets)
                if pools is not None:
                    flat = hidden.reshape(-1, hidden.shape[-1])  # (B * W, H): row i's position t at i * W + t
                    pooled = mean_rows(torch, flat, [p + i * width for i, p in enumerate(pools)])
        return _mean_per_row(torch, nll, which, len(rows)), pooled, _last_per_row(nll, which, len(rows)) if last else None

    def _packed_losses(self, hidden, ids, offsets, rows, last: bool = False):
        """(B,) mean response-token losses of packed ``rows`` ((ids, response start) as response_ids gives
        them) from their hidden states (T, H), packed ids (1, T) and start offsets in the packing; with
        ``last``, (means, each row's last scored token's loss (B,))."""
        torch = self.torch
        # position t predicts token t + 1: a row's scored positions run from its response start - 1
        at = [np.arange(o + first_scored(start) - 1, o + len(r) - 1) for o, (r, start) in zip(offsets, rows)]
        where = torch.as_tensor(np.concatenate(at), dtype=torch.long)  # (N,)
        which = torch.as_tensor(np.repeat(np.arange(len(rows)), [len(a) for a in at]), dtype=torch.long)
        nll = self._losses(hidden[where.to(self.device)], ids[0, where + 1])
        means = _mean_per_row(torch, nll, which, len(rows))
        return (means, _last_per_row(nll, which, len(rows))) if last else means

    def _shared_start(self, rows: Sequence[Sequence[int]], starts: Sequence[int], pools=None) -> int:
        """How many leading tokens every row shares and a cached prefix can hold once (0 without
        --prefix-cache): short of each row's last token, of the position before its first scored one
        and of its first pooled position, so that every hidden state read comes from the rows' own pass."""
        if not self.prefix_cache or len(rows) < 2:
            return 0
        c = min(common_prefix_len(rows), min(map(len, rows)) - 1, min(first_scored(s) for s in starts) - 1)
        if pools is not None:
            c = min([c, *(int(p.min()) for p in pools if len(p))])
        return max(c, 0)

    def _shared_context(self, rows: Sequence[Sequence[int]], starts: Sequence[int], pools=None) -> int:
        """:meth:`_shared_start` where every row has the same whole context (the blank instruction's): the
        context less its last token, the same for nearly every batch, so a record's loss does not depend
        on its neighbours beyond float rounding (where only part of the contexts is shared, nothing is
        cached: 0)."""
        c = self._shared_start(rows, starts, pools)
        whole = min(first_scored(s) for s in starts) - 1  # the bound _shared_start never exceeds
        return c if c == whole else 0

    @property
    def shares_records(self) -> bool:
        """Whether :meth:`record_pass` runs here (packed batches: CPU, a supported model)."""
        return self.packed

    def record_pass(self, rows: Sequence[tuple[Sequence[int], int]], suffixes: Sequence[Sequence[int]],
                    label_ids: Sequence[int], pools: Sequence[Sequence[int]] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The record-once layout's pass (selectit.measures.record_once): each record's tokens run once, the
        P rating suffixes read them from the cache.

        rows: (ids, response start) per record, as response_ids gives them (the Alpaca prompt, the
        response, the end token); suffixes: P token-id lists, each read after every record; pools: per
        record, the positions whose last hidden states are mean-pooled (or None). Returns the response
        losses (B,) (as :meth:`response_losses` of the same ids), the label probabilities (B, P, S) (as
        :meth:`label_probs` of record + suffix) and the pooled states (B, H) float32 or None. Packed
        only (:attr:`shares_records`): two packed passes, the records with a cache, then every
        (record, suffix) row attending to its own record's slice of it."""
        from selectit.backends.pooling import mean_rows

        if not self.packed:
            raise ConfigError(f"{self.name}: the record pass needs packed batches; score the long way")
        torch = self.torch
        records = [list(ids) for ids, _ in rows]
        pools = None if pools is None else [np.asarray(p, dtype=int) for p in pools]
        c = self._shared_start(records, [start for _, start in rows], pools)
        cache = {self._cache: self._prefix_kv(records[0][:c], 1)} if c else {}
        tails = [r[c:] for r in records]
        self.tokens_computed += sum(map(len, tails)) + len(records) * sum(map(len, suffixes))
        first, ids, lengths = self._packed_run(tails, c, use_cache=True, **cache)
        hidden = first.last_hidden_state[0]  # (T, H): the tails only
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
        losses = self._packed_losses(hidden, ids, offsets, [(t, start - c) for t, (_, start) in zip(tails, rows)])
        pooled = None if pools is None else mean_rows(torch, hidden, [p - c + o for p, o in zip(pools, offsets)])
        # every (record, turn) row, record-major: (B * P) rows, each reading the shared start, its own
        # record's tail and itself
        turns = [list(s) for _ in records for s in suffixes]
        slices = tuple(((0, c), (c + int(o), n)) for o, n in zip(offsets, lengths) for _ in suffixes)
        states, _, turn_lengths = self._packed_hidden(
            turns, [c + n for n in lengths for _ in suffixes], use_cache=True, selectit_prefixes=slices,
            **{self._cache: getattr(first, self._cache)})
        ends = torch.as_tensor(np.cumsum(turn_lengths) - 1, device=self.device)
        with torch.inference_mode():
            logits = self.model.get_output_embeddings()(states[ends])  # (B * P, V)
            picked = torch.log_softmax(logits.float(), dim=-1)[:, list(label_ids)].double().exp()
        probs = picked.cpu().numpy().reshape(len(records), len(suffixes), len(label_ids))
        return losses, probs, pooled

    def record_states(self, texts: Sequence[str], layers: int, max_length: int | None = None) -> np.ndarray:
        """(B, H) float32: each text's tokens (plain, cut at ``max_length``) mean-pooled after the first
        ``layers`` decoder layers (0: the input token embeddings, a table lookup with no forward pass; the
        model's final norm follows a truncated stack, as it follows the full one). Packed on CPU like
        the other passes; the output head never runs. For the learned proxy's features (selectit.proxy.fit)."""
        from selectit.backends.pooling import mean_rows

        torch = self.torch
        limit = clamp_length(max_length, self.max_length)
        rows = [self.encode_plain(t)[:limit] or [self.pad_id] for t in texts]
        if layers == 0:
            table = self.model.get_input_embeddings()
            with torch.inference_mode():
                flat = table(torch.as_tensor(np.concatenate(rows), dtype=torch.long, device=self.device))
            offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])[:-1]])
            return mean_rows(torch, flat, [np.arange(o, o + len(r)) for o, r in zip(offsets, rows)])
        self.tokens_computed += sum(len(r) for r in rows)
        stack = self.model.base_model
        with self.early_exit(layers):
            if self.packed:
                hidden, _, lengths = self._packed_hidden(rows)  # (T, H)
                offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
                return mean_rows(torch, hidden, [np.arange(o, o + n) for o, n in zip(offsets, lengths)])
            width = max(len(r) for r in rows)
            input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, r in enumerate(rows):
                input_ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
                mask[i, : len(r)] = 1
            with torch.inference_mode():
                hidden = self._forward(stack, input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                       use_cache=False).last_hidden_state
            flat = hidden.reshape(-1, hidden.shape[-1])  # row i's position t at i * width + t
            return mean_rows(torch, flat, [np.arange(len(r)) + i * width for i, r in enumerate(rows)])

    @contextlib.contextmanager
    def early_exit(self, layers: int):
        """Inside the block the model runs its first ``layers`` decoder layers only (an early exit): its
        final norm and output head follow the truncated stack as they follow the whole one, so a loss
        pass reads the losses of an intermediate layer (the logit lens). ``layers`` = all: unchanged."""
        stack = self.model.base_model
        full = stack.layers
        if not 0 < layers <= len(full):
            raise ConfigError(f"--proxy-layers must be in 1..{len(full)} for {self.name}, got {layers}")
        stack.layers = full[:layers]
        try:
            yield
        finally:
            stack.layers = full

    def _losses(self, hidden, targets):
        """(N,) float64 next-token losses on CPU from hidden states (N, H) and target ids (N,). The head
        runs HEAD_ROWS positions at a time, so memory holds (HEAD_ROWS, V) logits, not (N, V): a long
        response in a large vocabulary (SmolLM2: 8192 x 49152 floats = 1.6 GB) stays bounded."""
        torch = self.torch
        head, targets = self.model.get_output_embeddings(), targets.to(self.device)
        if self.loss_head == "model" and getattr(head, "low", None) is not None:
            head = head.low  # the low-precision head beside its float32 copy
        parts = []
        with torch.inference_mode():
            for i in range(0, len(targets), HEAD_ROWS):
                logits = head(hidden[i : i + HEAD_ROWS]).float()  # (<= HEAD_ROWS, V)
                parts.append(torch.nn.functional.cross_entropy(logits, targets[i : i + HEAD_ROWS], reduction="none"))
        return torch.cat(parts).double().cpu() if parts else torch.zeros(0, dtype=torch.float64)

    def _prefix_kv(self, prefix: Sequence[int], rows: int):
        """A fresh cache holding ``prefix``'s keys/values for ``rows`` rows (computed once per prefix)."""
        import copy

        torch = self.torch
        key = (len(self.model.base_model.layers), tuple(prefix))  # an early exit's cache holds fewer layers
        if self._prefix is None or self._prefix[0] != key:
            ids = torch.as_tensor([list(prefix)], dtype=torch.long, device=self.device)
            with torch.inference_mode():
                out = self._forward(input_ids=ids, use_cache=True, **self._last_only)
            self._prefix = (key, getattr(out, self._cache))
            self.tokens_computed += len(prefix)
        cache = copy.deepcopy(self._prefix[1])
        if rows > 1:
            cache.batch_repeat_interleave(rows)
        return cache

    def _forward(self, module=None, **kwargs):
        """One call of ``module`` (default: the model); on out-of-memory the caller gets a MemoryError
        it can split on."""
        try:
            return (module or self.model)(**kwargs)
        except self.torch.OutOfMemoryError as e:
            raise MemoryError(str(e)) from e
        except RuntimeError as e:
            if "can't allocate memory" in str(e) or "out of memory" in str(e):
                raise MemoryError(str(e)) from e
            raise


def _mean_per_row(torch, nll, which, rows: int) -> np.ndarray:
    """(rows,) float64 mean of the losses ``nll`` (N,) by their row ``which`` (N,); NaN for a row with none."""
    total = torch.zeros(rows, dtype=torch.float64).index_add_(0, which, nll)
    count = torch.zeros(rows, dtype=torch.float64).index_add_(0, which, torch.ones_like(nll))
    return (total / count).numpy()  # 0/0 -> NaN where no response token was scored


def _last_per_row(nll, which, rows: int) -> np.ndarray:
    """(rows,) float64 the last of the losses ``nll`` (N,) of each row (``which`` (N,), rows in order and
    each row's positions in order, as the loss passes lay them out); NaN for a row with none."""
    out = np.full(rows, np.nan)
    w = which.numpy()
    if len(w):
        ends = np.flatnonzero(np.append(w[1:] != w[:-1], True))  # each row's last position in nll
        out[w[ends]] = nll.numpy()[ends]
    return out


def _float32_head(model) -> None:
    """Run the output head in float32 when the model runs in bfloat16/float16.

    Logits of size ~20 carry only ~0.1 of absolute precision in bfloat16, and exp() turns that into
    ~10% errors in the rating probabilities; the head is a small share of the compute (one position
    per prompt), so computing it in float32 buys most of the accuracy back for little. The head gets its
    own float32 copy of the weight (tied input embeddings stay in the low precision); where the head is
    tied to the input embedding, the head as loaded stays beside it at no cost (``low``), for
    :meth:`HFBackend.set_loss_head`.
    """
    import torch

    head = model.get_output_embeddings()
    if head is None or not hasattr(head, "weight"):
        return

    class Float32Head(torch.nn.Module):
        def __init__(self, linear):
            super().__init__()
            self.weight = torch.nn.Parameter(linear.weight.detach().float().clone(), requires_grad=False)
            bias = getattr(linear, "bias", None)
            self.bias = None if bias is None else torch.nn.Parameter(bias.detach().float().clone(), requires_grad=False)
            # the head in the model's dtype, kept where it costs nothing (its weight is the input embedding's)
            self.low = linear if tied else None

        def forward(self, x):
            return torch.nn.functional.linear(x.float(), self.weight, self.bias)

    embed = model.get_input_embeddings()
    tied = embed is not None and getattr(embed, "weight", None) is head.weight
    model.set_output_embeddings(Float32Head(head))
