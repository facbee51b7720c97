"""A record's metrics computed once while the record lives.

In the worker the rules history and the store both need the metrics of the same record object in
the same batch; the oximetry night's were the largest single cost and were paid twice. Entries go
when their record is garbage-collected, so the memo never outgrows the records being processed.
"""

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

R = TypeVar("R")
M = TypeVar("M")

_MEMO: dict[tuple[int, int], tuple[weakref.ref[Any], Any]] = {}


def once(metric: Callable[[R], M], record: R) -> M:
    """`metric(record)`, computed on the first call for this record object and reused after."""
    key = (id(metric), id(record))
    hit = _MEMO.get(key)
    if hit is not None and hit[0]() is record:
        return hit[1]
    value = metric(record)
    _MEMO[key] = (weakref.ref(record, lambda _ref: _MEMO.pop(key, None)), value)
    return value
