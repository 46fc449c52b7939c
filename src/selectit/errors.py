"""Errors a user can fix: the CLI prints their message on one line and exits non-zero."""

from __future__ import annotations

import importlib
from pathlib import Path

from selectit.records import DataError


class ConfigError(ValueError):
    """A flag, option or model the tool cannot use as given."""


USER_ERRORS = (DataError, ConfigError)


def optional_import(module: str, needs: str, extra: str, error: type[Exception] = ConfigError):
    """Import an optional dependency, or raise ``error`` saying what needs it and which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise error(f"{needs}: pip install 'selectit[{extra}]'") from None


def read_text(path, what: str) -> str:
    """The text of a file the user named (``what``: "config file", "prompts file"), or a ConfigError
    that says it does not exist or is not UTF-8."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {p} does not exist")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {p} is not UTF-8 text") from None


__all__ = ["ConfigError", "DataError", "USER_ERRORS", "optional_import", "read_text"]
