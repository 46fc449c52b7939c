"""Errors a user can fix: the CLI prints their message on one line and exits non-zero."""

from __future__ import annotations

from selectit.records import DataError


class ConfigError(ValueError):
    """A flag, option or model the tool cannot use as given."""


USER_ERRORS = (DataError, ConfigError)

__all__ = ["ConfigError", "DataError", "USER_ERRORS"]
