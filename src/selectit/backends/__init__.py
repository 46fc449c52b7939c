"""Scoring backends: each turns rating texts into the probabilities of the rating-label tokens, and
(context, response) pairs into response losses.

Pick one by name with :func:`load_backend`; heavy libraries are imported only by the chosen one. A
backend that cannot honour an option (``HONOURS``) refuses it instead of ignoring it.
"""

from __future__ import annotations

from dataclasses import fields

from selectit.backends.base import Backend, LoadOptions, as_options, clamp_length, response_ids
from selectit.config import BACKENDS, spelled
from selectit.errors import ConfigError

# The options each backend can honour beyond their defaults; any other non-default option is refused.
HONOURS = {
    "hf": {"template", "dtype", "device", "max_length", "prefix_cache", "trust_remote_code", "allow_pickle"},
    "vllm": {"template", "dtype", "device", "max_length", "prefix_cache", "trust_remote_code", "allow_pickle",
             "tensor_parallel_size"},
    "llamacpp": {"template", "max_length"},  # GGUF as shipped, on the CPU, llama.cpp's own KV reuse
    "fake": {"template", "max_length", "prefix_cache"},
}


GPU_BACKENDS = ("hf", "vllm")  # backends that run on a GPU when one is there
# Backends that give pooled last hidden states from a pass they run (pooled_losses, pooled_label_probs):
# record embeddings (selectit.measures.embeddings). vLLM and llama.cpp return logits only.
EMBEDS = ("hf", "fake")


def wants_gpu(name: str, device: str) -> bool:
    """Whether backend ``name`` with ``--device device`` would use a GPU if the machine has one."""
    return name in GPU_BACKENDS and device != "cpu"


def check_options(name: str, options: LoadOptions) -> None:
    """Refuse a non-default option that backend ``name`` cannot honour (one line naming the flag)."""
    default = LoadOptions()
    refused = [f.name for f in fields(LoadOptions)
               if getattr(options, f.name) != getattr(default, f.name) and f.name not in HONOURS[name]]
    if refused:
        flags = ", ".join(spelled(k, getattr(options, k)) for k in refused)
        which = [b for b in BACKENDS if set(refused) <= HONOURS[b]]
        hint = f"needs --backend {' or '.join(which)}" if which else "no backend honours it"
        raise ConfigError(f"the {name} backend cannot honour {flags} ({hint}); drop it or use another --backend")


def load_backend(name: str, spec: str | None, options: LoadOptions | None = None, **fields) -> Backend:
    """Load model ``spec`` (None: the embedded model) with backend ``name``; ``options`` (or its
    ``fields`` as keywords) are checked against what the backend can honour."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    options = as_options(options, fields)
    check_options(name, options)
    if name == "vllm":
        from selectit.backends.vllm import VLLMBackend as cls
    elif name == "hf":
        from selectit.backends.hf import HFBackend as cls
    elif name == "llamacpp":
        from selectit.backends.llamacpp import LlamaCppBackend as cls
    else:
        from selectit.backends.fake import FakeBackend as cls
    return cls.load(spec, options)


__all__ = ["BACKENDS", "EMBEDS", "Backend", "LoadOptions", "check_options", "clamp_length", "load_backend", "response_ids",
           "wants_gpu"]
