"""A small validator of key paths: converts YAML values and collects ``(key.path, message)`` problems.

Every section parser (here and in :mod:`lrpcli.models.sources`) reports through one
:class:`Checker`, so that a config with several mistakes gets all of them at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lrpcli.hints import did_you_mean

__all__ = ["Checker", "join", "show"]


def show(value: Any) -> str:
    """How a wrong value is named in a message: ``a mapping``, ``a list``, ``nothing (null)`` or its repr."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return repr(value)


def join(path: str, key: str) -> str:
    """``path.key`` (just ``key`` at the top)."""
    return f"{path}.{key}" if path else key


class Checker:
    """Collects ``(path, message)`` problems while converting values."""

    show = staticmethod(show)

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def error(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.error(path, f"expected a mapping with keys {', '.join(allowed)}, got {show(value)}")
            return None
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str) or key not in allowed:
                hint = did_you_mean(str(key), allowed)
                self.error(
                    join(path, str(key)),
                    f"unknown key{hint}; allowed keys here: {', '.join(allowed)}",
                )
                continue
            out[key] = item
        return out

    def number(
        self,
        value: Any,
        path: str,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_min: bool = False,
    ) -> float | None:
        number: float | None = None
        if isinstance(value, bool):
            number = None
        elif isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:  # PyYAML reads "1e-6" (no dot) as a string
                number = float(value.strip())
            except ValueError:
                number = None
        if number is None or not math.isfinite(number):
            self.error(path, f"expected a number, got {show(value)}")
            return None
        if minimum is not None and (number < minimum or (exclusive_min and number == minimum)):
            relation = ">" if exclusive_min else ">="
            self.error(path, f"must be {relation} {minimum:g}, got {number:g}")
            return None
        if maximum is not None and number > maximum:
            self.error(path, f"must be <= {maximum:g}, got {number:g}")
            return None
        return number

    def integer(self, value: Any, path: str, *, minimum: int = 1) -> int | None:
        number: int | None = None
        if isinstance(value, bool):
            number = None
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and value.strip().isdigit():
            number = int(value.strip())
        if number is None:
            self.error(path, f"expected a whole number, got {show(value)}")
            return None
        if number < minimum:
            self.error(path, f"must be >= {minimum}, got {number}")
            return None
        return number

    def boolean(self, value: Any, path: str) -> bool | None:
        if isinstance(value, bool):
            return value
        self.error(path, f"expected true or false, got {show(value)}")
        return None

    def string(self, value: Any, path: str) -> str | None:
        if isinstance(value, str) and value.strip():
            return value.strip()
        self.error(path, f"expected a name (text), got {show(value)}")
        return None

    def triple(self, value: Any, path: str, *, nonzero: bool = False) -> tuple[float, float, float] | None:
        """A number (used for all three channels) or a list of three numbers."""
        if isinstance(value, (list, tuple)):
            if len(value) != 3:
                self.error(path, f"expected 3 values (R, G, B) or one number, got {len(value)} values")
                return None
            items = [self.number(v, f"{path}[{i}]") for i, v in enumerate(value)]
        else:
            items = [self.number(value, path)] * 3
        if any(v is None for v in items):
            return None
        result = (float(items[0]), float(items[1]), float(items[2]))  # type: ignore[arg-type]
        if nonzero and any(v == 0 for v in result):
            self.error(path, f"values must be non-zero, got {list(result)}")
            return None
        return result
