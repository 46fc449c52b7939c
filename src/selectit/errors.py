"""Errors a user can fix: the CLI prints their message on one line and exits non-zero."""

from __future__ import annotations

import importlib

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

__all__ = ["ConfigError", "DataError", "USER_ERRORS", "optional_import"]
