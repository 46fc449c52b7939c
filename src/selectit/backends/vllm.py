"""vLLM backend: the same scores as the hf backend, served by vLLM's engine on one or more GPUs.

Each rating prompt is one prefill-only request (``max_tokens=1``, greedy) given as token ids, so the
model reads exactly the ids our tokenizer produced (the same transformers tokenizer as the hf
backend). What comes back is the log-probability of each rating token at the next position, from a
softmax over the whole vocabulary (vLLM's default ``logprobs_mode="raw_logprobs"``: before any
temperature or penalty), never renormalised over a top-k.

How the S label probabilities are read, depending on the installed vLLM:

* ``SamplingParams.logprob_token_ids`` (vLLM 0.33 has it; at most 128 ids): vLLM returns exactly
  the requested ids' log-probabilities. A requested label missing from the answer is an error.
* older vLLM: the top ``topk`` log-probabilities are requested (``logprobs=topk``, with the engine's
  ``max_logprobs`` raised to match). A label outside the top-k gets its **upper bound**,
  ``min(p_k, 1 - sum of the returned p)``, where ``p_k`` is the k-th largest probability: it cannot
  be larger. It is never set to 0 (that would be a silent, unbounded error in the score); every
  bounded value is counted (``labels_bounded``) and reported once on stderr, and the fingerprint
  records the method, so the score store never mixes bounded and exact values.

Automatic prefix caching is on (``--no-prefix-cache`` turns it off): with the published
prompt-first layout every request of one rating prompt starts with the same tokens (the rating
prompt), and the scorer sends them together, so vLLM computes that prefix once and reuses its KV
blocks; the ``shared`` hint of :meth:`VLLMBackend.label_probs` is not needed. ``--batch-size`` is
the number of requests handed to vLLM at once; vLLM schedules them itself, so use hundreds.
Install: ``pip install 'selectit[vllm]'`` (a CUDA build of torch comes with it).
"""

from __future__ import annotations

import inspect
import json
import math
import os
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from selectit.backends.base import (EndsWithoutStates, LoadOptions, as_options, clamp_length, first_scored,
                                    response_ids)
from selectit.errors import ConfigError, optional_import
from selectit.backends.models import hub_files, resolve_model
from selectit.backends.tokenizer import TokenizerText
from selectit.prompts import resolve_template

DEFAULT_TOPK = 100  # top-k logprobs requested when logprob_token_ids is not available
MAX_LABEL_IDS = 128  # vllm.sampling_params.MAX_LOGPROB_TOKEN_IDS in vLLM 0.33


def has_logprob_token_ids(params_cls) -> bool:
    """Whether this vLLM's ``SamplingParams`` takes ``logprob_token_ids`` (a msgspec Struct in
    current vLLM, a plain class in old ones)."""
    fields = getattr(params_cls, "__struct_fields__", None)
    if fields is None:
        try:
            fields = inspect.signature(params_cls).parameters
        except (TypeError, ValueError):
            return False
    return "logprob_token_ids" in fields


def sampling_kwargs(label_ids: Sequence[int], *, exact: bool, topk: int = DEFAULT_TOPK) -> dict:
    """Keyword arguments of ``vllm.SamplingParams`` for one rating read (a plain dict, so it can be
    checked without vLLM). exact: the installed vLLM has ``logprob_token_ids``."""
    kwargs = {"max_tokens": 1, "temperature": 0.0, "detokenize": False}
    if exact:
        if len(label_ids) > MAX_LABEL_IDS:
            raise ConfigError(f"vLLM reads at most {MAX_LABEL_IDS} label tokens, got {len(label_ids)}")
        kwargs["logprob_token_ids"] = [int(t) for t in label_ids]
    else:
        kwargs["logprobs"] = int(topk)
    return kwargs


def loss_kwargs() -> dict:
    """Keyword arguments of ``vllm.SamplingParams`` for reading the prompt tokens' own log-probabilities
    (response losses): ``prompt_logprobs=1`` returns, at every prompt position, the top-1 token and
    the prompt's actual token, from the full-vocabulary log-softmax."""
    return {"max_tokens": 1, "temperature": 0.0, "detokenize": False, "prompt_logprobs": 1}


def parse_response_losses(outputs: Sequence, rows: Sequence[tuple[Sequence[int], int]], last: bool = False):
    """(B,) mean loss (nats) of the tokens ``ids[first:]`` of each request, from ``.prompt_logprobs``
    (one entry per prompt token, None for the first; each a dict token id -> Logprob holding the
    prompt's own token). rows: (prompt ids, first scored position) per request, in request order.
    With ``last``, (means, each row's last token's loss (B,)). A missing or NaN log-probability raises
    ValueError naming the row."""
    out, ends = np.empty(len(rows)), np.full(len(rows), np.nan)
    for r, (o, (ids, first)) in enumerate(zip(outputs, rows)):
        steps = getattr(o, "prompt_logprobs", None)
        if not steps or len(steps) < len(ids):
            raise ValueError(f"vLLM returned no prompt logprobs for row {r}; was the request built by loss_kwargs?")
        nll = []
        for t in range(first, len(ids)):
            entry = (steps[t] or {}).get(int(ids[t]))
            if entry is None or math.isnan(float(entry.logprob)):
                raise ValueError(f"vLLM returned no log-probability for prompt token {t} (row {r})")
            nll.append(-float(entry.logprob))
        out[r] = np.mean(nll) if nll else np.nan
        ends[r] = nll[-1] if nll else np.nan
    return (out, ends) if last else out


def token_prompts(batch: Sequence[Sequence[int]]) -> list[dict]:
    """One ``vllm.TokensPrompt`` per row (a TypedDict: a plain dict at run time)."""
    return [{"prompt_token_ids": [int(t) for t in ids]} for ids in batch]


def parse_label_probs(outputs: Sequence, label_ids: Sequence[int], *, exact: bool, topk: int = DEFAULT_TOPK
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Label probabilities from vLLM's answers: (probs (B, S) float64, bounded (B, S) bool).

    outputs: B ``RequestOutput``s, in request order; each ``.outputs[0].logprobs[0]`` is the
    next-token position's dict token id -> ``Logprob(logprob=...)``. A log-probability of -inf is
    probability 0; NaN, an empty answer, or (exact) a missing label raises ValueError naming the row.
    Not exact: a label outside the returned top-k gets its upper bound (see the module doc) and is
    flagged in ``bounded``.
    """
    probs = np.empty((len(outputs), len(label_ids)))
    bounded = np.zeros(probs.shape, dtype=bool)
    for r, out in enumerate(outputs):
        position = _next_token_logprobs(out, r)
        logp = {int(t): float(lp.logprob) for t, lp in position.items()}
        bad = [t for t, v in logp.items() if math.isnan(v)]
        if bad:
            raise ValueError(f"vLLM returned a NaN log-probability for token(s) {bad} (row {r})")
        missing = [t for t in label_ids if t not in logp]
        if missing and exact:
            raise ValueError(f"vLLM's answer lacks label token(s) {missing} although they were requested (row {r})")
        bound = _missing_bound(list(logp.values()), topk) if missing else 0.0
        for s, t in enumerate(label_ids):
            if t in logp:
                probs[r, s] = math.exp(logp[t])
            else:
                probs[r, s], bounded[r, s] = bound, True
    return probs, bounded


def _next_token_logprobs(out, r: int) -> dict:
    completions = getattr(out, "outputs", None)
    if not completions:
        raise ValueError(f"vLLM returned no completion (row {r})")
    steps = completions[0].logprobs
    if not steps or steps[0] is None:
        raise ValueError(f"vLLM returned no logprobs (row {r}); was the request built by sampling_kwargs?")
    return steps[0]


def _missing_bound(returned: list[float], topk: int) -> float:
    """Largest probability a token absent from a top-``topk`` answer can have: at most the k-th
    largest returned probability, and at most the mass the answer leaves over."""
    p = np.exp(np.sort(np.asarray(returned, dtype=np.float64))[::-1])
    kth = p[min(topk, len(p)) - 1]
    return float(min(kth, max(0.0, 1.0 - p.sum())))


def count_parameters(folder: str | os.PathLike) -> int:
    """Parameter count of a checkpoint, from its safetensors headers (no weights are read).
    Tied embeddings are stored once, so they count once (as in the hf backend)."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise ConfigError(f"no .safetensors files in {folder}; cannot count the model's parameters")
    total = 0
    for path in files:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        total += sum(math.prod(t["shape"]) for name, t in header.items() if name != "__metadata__")
    return total


def _local_folder(path: str) -> str:
    """The local folder of a model: ``path`` itself, or a hub id's snapshot in the local cache
    (vLLM has fetched it by the time this runs)."""
    if os.path.isdir(path):
        return path
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(path, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - any lookup failure is the same user-facing problem
        raise ConfigError(f"cannot find the files of model {path} in the local cache ({type(e).__name__}); "
                          "pass a local folder") from None


class VLLMBackend(EndsWithoutStates, TokenizerText):
    def __init__(self, llm, tokenizer, *, name: str, template: str = "plain", max_length: int,
                 num_parameters: int, source: str, dtype: str, exact: bool, topk: int = DEFAULT_TOPK,
                 sampling_params=None):
        self.llm = llm
        self.tokenizer = tokenizer
        self.name = name
        self.template = template = resolve_template(template, bool(getattr(tokenizer, "chat_template", None)), name)
        self.num_parameters = num_parameters
        self.max_length = max_length
        self.exact = exact
        self.topk = topk
        if sampling_params is None:
            from vllm import SamplingParams as sampling_params
        self._params = sampling_params  # vllm.SamplingParams (a stand-in in tests)
        self.fingerprint = {"backend": "vllm", "name": name, "source": source, "dtype": dtype, "template": template,
                            "num_parameters": num_parameters,
                            "label_logprobs": "token_ids" if exact else f"top{topk}-bound"}
        self.tokens_computed = 0  # prompt tokens vLLM ran (prefix-cache hits excluded where it reports them)
        self.labels_bounded = 0  # label probabilities set to their top-k upper bound
        self._warned = False

    @classmethod
    def load(cls, spec: str | None, options: LoadOptions | None = None, *, topk: int = DEFAULT_TOPK,
             **fields) -> VLLMBackend:
        """Load a model folder or hub id (safetensors) into a vLLM engine on the visible GPUs."""
        from selectit.backends import precision

        o = as_options(options, fields)
        template, device = o.template, o.device
        vllm = optional_import("vllm", "the vllm backend needs vLLM (and a GPU)", "vllm")
        import torch

        dtype, why = precision.resolve(o.dtype, "cuda", cuda_bf16=torch.cuda.is_available()
                                       and torch.cuda.is_bf16_supported())
        LLM, SamplingParams = vllm.LLM, vllm.SamplingParams
        from transformers import AutoConfig, AutoTokenizer

        if device not in ("auto", "cuda"):
            raise ConfigError(f"the vllm backend uses the GPUs it sees (pick them with CUDA_VISIBLE_DEVICES); "
                              f"--device must be auto or cuda, got {device!r}")
        source = resolve_model(spec)
        if source.gguf_file:
            raise ConfigError(f"the vllm backend loads model folders or hub ids, not GGUF files ({source.name}); "
                              "use --backend hf or --backend llamacpp for GGUF, or pass --model")
        exact = has_logprob_token_ids(SamplingParams)
        path = hub_files(source) or source.path  # offline or an unreachable hub: the cache, at once
        try:
            config = AutoConfig.from_pretrained(path, trust_remote_code=o.trust_remote_code)
            kwargs = engine_kwargs(path, dtype=dtype, max_length=o.max_length, trust_remote_code=o.trust_remote_code,
                                   prefix_cache=o.prefix_cache, allow_pickle=o.allow_pickle,
                                   tensor_parallel_size=o.tensor_parallel_size, topk=None if exact else topk,
                                   context=getattr(config, "max_position_embeddings", None))
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=o.trust_remote_code)
            llm = LLM(**kwargs)
        except (OSError, ValueError, KeyError) as e:  # missing files, bad config, more GPUs asked than seen
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"cannot load model {spec} with vLLM: {first}") from None
        backend = cls(llm, tokenizer, name=source.name, template=template,
                      max_length=int(llm.llm_engine.model_config.max_model_len),
                      num_parameters=count_parameters(_local_folder(path)), source=source.path, dtype=dtype,
                      exact=exact, topk=topk, sampling_params=SamplingParams)
        backend.dtype_reason = why
        return backend

    def response_losses(self, pairs: Sequence[tuple[str, str]], max_length: int | None = None, *,
                        end: bool = False) -> np.ndarray:
        """(B,) mean next-token loss over the response tokens of each (context, response), as
        :meth:`selectit.backends.hf.HFBackend.response_losses` defines it (same tokenizer code), read
        from vLLM's prompt log-probabilities in one request per pair."""
        return self._losses(pairs, max_length, end)[0]

    def _losses(self, pairs, max_length, end) -> tuple[np.ndarray, np.ndarray]:
        """(mean losses (B,), last scored losses (B,)), NaN for a row with no scored token."""
        limit = clamp_length(max_length, self.max_length)
        stop = self.end_token() if end else None
        rows = [(ids, first_scored(start))
                for ids, start in (response_ids(self.encode_plain, c, r, limit, stop) for c, r in pairs)]
        out, last = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
        todo = [i for i, (ids, first) in enumerate(rows) if first < len(ids)]  # else no response token: NaN
        if todo:
            outputs = self.llm.generate(token_prompts([rows[i][0] for i in todo]), self._params(**loss_kwargs()),
                                        use_tqdm=False)
            out[todo], last[todo] = parse_response_losses(outputs, [rows[i] for i in todo], last=True)
            self.tokens_computed += sum(len(rows[i][0]) for i in todo)
        return out, last

    def label_probs(self, batch: Sequence[Sequence[int]], label_ids: Sequence[int], shared: int = 0) -> np.ndarray:
        """(B, S) label probabilities; ``shared`` is not needed (vLLM's prefix cache finds it)."""
        params = self._params(**sampling_kwargs(label_ids, exact=self.exact, topk=self.topk))
        outputs = self.llm.generate(token_prompts(batch), params, use_tqdm=False)
        probs, bounded = parse_label_probs(outputs, label_ids, exact=self.exact, topk=self.topk)
        self.tokens_computed += sum(len(ids) - (getattr(o, "num_cached_tokens", None) or 0)
                                    for ids, o in zip(batch, outputs))
        if bounded.any():
            self.labels_bounded += int(bounded.sum())
            if not self._warned:
                self._warned = True
                print(f"warning: some rating labels were outside vLLM's top-{self.topk} log-probabilities; they get "
                      "their upper bound (this vLLM has no logprob_token_ids; upgrade vLLM for exact values)",
                      file=sys.stderr)
        return probs


def engine_kwargs(model: str, *, dtype: str, max_length: int | None, trust_remote_code: bool, prefix_cache: bool,
                  allow_pickle: bool, tensor_parallel_size: int, topk: int | None, context: int | None = None) -> dict:
    """Keyword arguments of ``vllm.LLM`` (a plain dict, so it can be checked without vLLM).
    topk: the top-k logprobs that will be requested (None with logprob_token_ids); context: the model's
    ``max_position_embeddings``, the most ``max_model_len`` can be (vLLM refuses more; as the hf backend,
    ``--max-length`` is clamped to it)."""
    if tensor_parallel_size < 1:
        raise ConfigError(f"--tensor-parallel-size must be >= 1, got {tensor_parallel_size}")
    kwargs = {"model": model, "dtype": dtype, "trust_remote_code": trust_remote_code,
              "enable_prefix_caching": prefix_cache, "tensor_parallel_size": tensor_parallel_size}
    if max_length is not None:
        kwargs["max_model_len"] = clamp_length(max_length, context) if context else max_length
    if not allow_pickle:
        kwargs["load_format"] = "safetensors"  # as in the hf backend: no pickle weights unless asked
    if topk is not None:
        kwargs["max_logprobs"] = topk  # vLLM's default cap is 20
    return kwargs
