"""Methods: how records are scored (``--method``). Each is one small object in its own module: the
measurements it needs (selectit.measures) and a pure function from their arrays to one score per record
(selectit.methods.base.Method). A new method is one module here, and its line in ``METHODS``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace

from selectit.config import RunConfig, build
from selectit.errors import ConfigError
from selectit.methods.base import ChunkData, Method, ModelData
from selectit.methods.ifd import IFD
from selectit.methods.information import Information
from selectit.methods.length import Length
from selectit.methods.model import Model
from selectit.methods.paper import PAPER, Paper
from selectit.methods.perplexity import Perplexity
from selectit.methods.random import Random
from selectit.methods.reference import Reference
from selectit.methods.rifd import RIFD
from selectit.methods.selectit import SelectIT
from selectit.methods.sentence import Sentence
from selectit.methods.token import Token

METHODS: dict[str, Method] = {m.name: m for m in (
    SelectIT(), Paper(), Reference(), Token(), Sentence(), Model(), Random(), Length(), Perplexity(), IFD(), RIFD(), Information())}


def get(name: str) -> Method:
    """The method called ``name``, or a one-line error listing them."""
    if name not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {name!r}")
    return METHODS[name]


def configure(options: Mapping | None = None, *, given: Collection[str] | None = None,
              source: str | None = None) -> tuple[RunConfig, Method]:
    """The checked configuration and the method of ``options`` (by field name): the method's preset
    is applied (a ``given`` option that contradicts it is an error naming ``source``, default
    "--method NAME"), its model count is checked, and a method that rates gets its own P where
    --num-prompts is not given (or every prompt of a shorter file), so config.json records it."""
    options = dict(options or {})
    method = get(options.get("method", "selectit"))
    default_source = f"--method {method.name}" + (" (the authors' scripts)" if method.name == "reference" else "")
    config = build(options, given=given, preset=method.preset, preset_source=source or default_source)
    if method.models == "one" and len(config.model.models) != 1:
        raise ConfigError(f"--method {method.name} uses one model; got {len(config.model.models)}")
    if config.measure.num_prompts is None and rates(config, method):
        count = len(config.measure.prompts(method.num_prompts))
        config = replace(config, measure=replace(config.measure, num_prompts=count))
    return config, method


def rates(config: RunConfig, method: Method) -> bool:
    """Whether ``method`` (configured by ``config``) needs rating-label probabilities."""
    return any(m.needs_labels for m in method.needs(config, ["?"]))


__all__ = ["METHODS", "PAPER", "ChunkData", "Method", "ModelData", "configure", "get", "rates"]
