"""The record kinds an expression names (``spiro``, ``oxi``, ...) and the type of each field.

Derived from the history's row declarations (:data:`processors.rules.rows.VIEWS`): a field annotated
``float``/``int`` is a number, ``bool`` yes/no, ``str`` or a ``Literal`` of text is text; ``| None`` only
says it may be missing.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from processors.rules.expr.types import BOOL, NUM, STR
from processors.rules.rows import VIEWS

__all__ = ["KINDS", "KindSpec", "field_type"]


@dataclass(frozen=True)
class KindSpec:
    name: str
    family: str
    """Kinds of one family join on their row key (nights join on night_date)."""
    fields: Mapping[str, str]
    doc: str


def field_type(annotation: Any) -> str:
    """The expression type of a row field's annotation (TypeError for a type expressions cannot hold)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"a row field must be one type or None, not {annotation}")
        annotation = args[0]
    if get_origin(annotation) is Literal:
        kinds = {type(v) for v in get_args(annotation)}
        annotation = kinds.pop() if len(kinds) == 1 else annotation
    if annotation is bool:  # before int: bool is an int
        return BOOL
    if annotation in (int, float):
        return NUM
    if annotation is str:
        return STR
    raise TypeError(f"a row field must be a number, bool or text, not {annotation}")


KINDS: dict[str, KindSpec] = {
    name: KindSpec(name, view.family, {f: field_type(a) for f, a in view.fields.items()}, view.doc)
    for name, view in VIEWS.items()
}
