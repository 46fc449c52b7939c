"""Scoring backends: each turns rating texts into the probabilities of the rating-label tokens.

Pick one by name with :func:`load_backend`; heavy libraries are imported only by the chosen one.
"""

from __future__ import annotations

from selectit.backends.base import Backend
from selectit.errors import ConfigError

BACKENDS = ("hf", "llamacpp", "vllm", "fake")


def load_backend(name: str, model: str | None, **options) -> Backend:
    """Load ``model`` with backend ``name`` ('hf', 'llamacpp', 'vllm' or 'fake'). ``options`` go to the loader."""
    tensor_parallel_size = options.pop("tensor_parallel_size", 1)
    if name == "vllm":
        from selectit.backends.vllm import VLLMBackend

        return VLLMBackend.load(model, tensor_parallel_size=tensor_parallel_size, **options)
    if tensor_parallel_size != 1 and name in BACKENDS:
        raise ConfigError(f"--tensor-parallel-size needs --backend vllm (got --backend {name})")
    if name == "hf":
        from selectit.backends.hf import HFBackend

        return HFBackend.load(model, **options)
    if name == "fake":
        from selectit.backends.fake import FakeBackend

        return FakeBackend(name=model or "fake", template=options.get("template", "plain"))
    if name == "llamacpp":
        from selectit.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend.load(model, template=options.get("template", "plain"),
                                    max_length=options.get("max_length") or 4096)
    raise ConfigError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "load_backend"]
