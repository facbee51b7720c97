"""The one error of the expression language: its message is for rule authors."""

from __future__ import annotations

__all__ = ["ExprError"]


class ExprError(ValueError):
    """An expression that does not parse or does not type-check; the message is for rule authors."""
