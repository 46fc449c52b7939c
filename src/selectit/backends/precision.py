"""``--dtype auto``: bfloat16 where the hardware multiplies it natively, float32 elsewhere (issue 17).

bfloat16 halves the bytes moved and, on hardware with bfloat16 matrix instructions, runs the model's
matrix products several times faster (bench/README.md, "Speed": 4.2x the float32 peak on an AVX512-BF16
CPU). Without them bfloat16 is emulated and slower than float32, so auto keeps float32 there. The
output head stays float32 either way (selectit.backends.hf). The published method (``--paper``) is
float32 whatever the hardware: it is the exact computation.

Native bfloat16: a CUDA GPU that reports it (Ampere and later), or a CPU with the ``avx512_bf16`` or
``amx_bf16`` flag (/proc/cpuinfo; other systems are taken to have neither). ``SELECTIT_BF16=1`` or
``=0`` overrides the detection (a test or a user who knows better).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

NATIVE_CPU = ("amx_bf16", "avx512_bf16")
ENV = "SELECTIT_BF16"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (Linux); empty where they cannot be read."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def choose(device_type: str, *, cuda_bf16: bool = False, flags: Collection[str] = (),
           env: str | None = None) -> tuple[str, str]:
    """(dtype, why) for ``--dtype auto`` on ``device_type`` ("cpu" or "cuda"). ``env``: the value of
    SELECTIT_BF16, if set ("1" forces bfloat16, "0" float32)."""
    if env is not None and env.strip() in ("0", "1"):
        return ("bfloat16", f"{ENV}=1") if env.strip() == "1" else ("float32", f"{ENV}=0")
    if device_type == "cuda":
        if cuda_bf16:
            return "bfloat16", "the GPU runs bfloat16 natively"
        return "float32", "the GPU has no native bfloat16"
    native = sorted(set(NATIVE_CPU) & set(flags))
    if native:
        return "bfloat16", f"the CPU has {' and '.join(native)} (native bfloat16 matrix products)"
    return "float32", "the CPU has no AVX512-BF16 or AMX (bfloat16 would be emulated, slower than float32)"


def resolve(requested: str, device_type: str, *, cuda_bf16: bool = False) -> tuple[str, str]:
    """(dtype, why): ``requested`` as given, or what ``auto`` picks on this machine."""
    if requested != "auto":
        return requested, f"--dtype {requested}"
    flags = cpu_flags() if device_type == "cpu" else set()
    return choose(device_type, cuda_bf16=cuda_bf16, flags=flags, env=os.environ.get(ENV))


def for_method(requested: str, method: str, exact: bool) -> tuple[str, str | None]:
    """(dtype to load with, why it is not ``requested``): an ``exact`` method (the attribute of
    selectit.methods.base.Method: a published computation) runs auto as float32."""
    if requested == "auto" and exact:
        return "float32", f"--method {method} is the published computation: float32"
    return requested, None
