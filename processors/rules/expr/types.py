"""Static types of the expression language, checked at load so a rules file that loads evaluates.

A type is a plain string (its name is what an error message shows) or a :class:`SeriesT`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "ANY", "BOOL", "DEV", "KIND", "LIST", "NUM", "SLOPE", "STR", "SeriesT", "is_scalar", "param_kind", "type_name",
]

NUM, BOOL, STR, ANY = "number", "yes/no", "text", "any"
LIST, KIND, SLOPE, DEV = "list", "record kind", "slope result", "deviation result"


@dataclass(frozen=True)
class SeriesT:
    """Type of a series: element type, the kind whose rows drive it, and the join family."""

    elem: str
    primary: str
    family: str

    def __str__(self) -> str:
        return f"series of {self.elem} ({self.primary})"


def type_name(t: Any) -> str:
    return str(t)


def is_scalar(t: Any) -> bool:
    return t in (NUM, BOOL, STR, ANY)


def param_kind(value: Any) -> str:
    """The expression type of a rule param's value, or "invalid": the rules file checks params with it
    and the compiler types a `params.x` reference with it."""
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, (int, float)):
        return NUM
    if isinstance(value, str):
        return STR
    if isinstance(value, list) and all(isinstance(i, (int, float, str)) and not isinstance(i, bool) for i in value):
        return LIST
    return "invalid"
