"""Topic templates compiled into per-level checks (no regex per message).

``{name}`` is one whole level or part of one (``unit-{n}``); a trailing ``{name...}``
(the whole last level) is one or more levels, captured with their ``/`` (MQTT ``#``).
A placeholder never matches an empty level.
"""

from __future__ import annotations

import re

from monitor.core.config import ConfigError

__all__ = ["Template"]


class Template:
    """A topic template compiled into per-level checks (no regex per message)."""

    __slots__ = ("captures", "literals", "n_levels", "partials", "rest")

    def __init__(self, template: str, key: str):
        levels = template.split("/")
        rest = re.fullmatch(r"{(\w+)\.\.\.}", levels[-1])
        self.rest = rest.group(1) if rest else None  # a trailing {name...}: one or more levels
        if rest:
            levels = levels[:-1]
        self.n_levels = len(levels)
        literals, captures, partials = [], [], []
        for i, level in enumerate(levels):
            names = re.findall(r"{(\w+)}", level)
            if not names:
                literals.append((i, level))
            elif len(names) > 1:
                raise ConfigError(key, f"one {{name}} per topic level, got {level!r} in {template!r}")
            elif level == "{" + names[0] + "}":
                captures.append((i, names[0]))
            else:
                prefix, _, suffix = level.partition("{" + names[0] + "}")
                partials.append((i, prefix, suffix, names[0]))
        self.literals = tuple(literals)
        self.captures = tuple(captures)
        self.partials = tuple(partials)

    def match(self, levels: list[str], _tail: str | None = None) -> dict[str, str] | None:
        """Captured names, or None; placeholders never match an empty level."""
        if len(levels) != self.n_levels:
            if self.rest is None or len(levels) <= self.n_levels:
                return None
            tail = "/".join(levels[self.n_levels :])
            levels = levels[: self.n_levels]
            return self.match(levels, _tail=tail)
        for i, text in self.literals:
            if levels[i] != text:
                return None
        tags: dict[str, str] = {}
        for i, name in self.captures:
            value = levels[i]
            if not value or tags.setdefault(name, value) != value:
                return None
        for i, prefix, suffix, name in self.partials:
            value = levels[i]
            if len(value) <= len(prefix) + len(suffix) or not value.startswith(prefix) or not value.endswith(suffix):
                return None
            value = value[len(prefix) : len(value) - len(suffix)]
            if tags.setdefault(name, value) != value:
                return None
        if self.rest is not None and (
            not _tail or "//" in _tail or _tail.endswith("/") or tags.setdefault(self.rest, _tail) != _tail
        ):
            return None
        return tags
