"""The config's error type and its secret-string rule, shared by every config module.

A module of its own so that section modules beside `monitor.core.config` (which imports
them into `Config`) can raise the same `ConfigError` without an import cycle.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is missing or wrong; `key` is the dotted path."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


def secret_str(key: str, value: object) -> str | None:
    """A secret as a string (a number given in code becomes its text); never quoted in errors."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(key, f"expected a string, got a {type(value).__name__} (the value is a secret: not shown)")
