"""A night's sample series held as one numpy array, not a Python list of 28,800 floats.

Why: a list cost the pipeline three times per night (pydantic validated every element at ingest and
again in the worker, JSON wrote and read every element, and the metrics converted the list to numpy,
half of `night_metrics`' 2 ms). A `Samples` is a read-only float64 array (NaN = no reading) that the
parsers fill, pydantic checks in a few vectorised operations, the binary envelope carries as int16
tenths (`schemas/wire.py`) and the metrics read as it is.

It still reads as the sequence it replaces (`len`, indexing to `float | None`, iteration, equality with
a list), so code and tests written for lists keep working; JSON (``model_dump_json``, `respmon parse
--json`, the envelopes of the previous release) still writes and reads a list of numbers and nulls.
"""

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, overload

import numpy as np
from pydantic import Field, GetCoreSchemaHandler, StrictFloat, StrictInt
from pydantic_core import core_schema

MAX_SAMPLES = 200_000
"""At most this many samples per series (55 h at 1 Hz)."""


class Samples(Sequence[float | None]):
    """Read-only float64 samples, NaN where there was no reading; `integral` series (motion) read as ints."""

    __slots__ = ("_array", "_integral")

    def __init__(self, values: np.ndarray | Sequence[float | None], *, integral: bool = False) -> None:
        array = np.array(values, dtype=np.float64)  # a copy: nobody else may write into it
        array.flags.writeable = False
        self._array = array
        self._integral = integral

    @classmethod
    def wrap(cls, array: np.ndarray, *, integral: bool = False) -> "Samples":
        """Take a float64 array without copying it (the caller hands it over and never writes it again)."""
        out = cls.__new__(cls)
        if array.dtype != np.float64 or array.ndim != 1:
            array = np.asarray(array, dtype=np.float64).reshape(-1)
        array.flags.writeable = False
        out._array, out._integral = array, integral
        return out

    @property
    def array(self) -> np.ndarray:
        """The samples as a read-only float64 array, NaN for no reading (no copy)."""
        return self._array

    @property
    def integral(self) -> bool:
        return self._integral

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """numpy reads the array itself (`np.asarray(samples)`), never element by element."""
        if dtype is None or np.dtype(dtype) == self._array.dtype:
            return self._array.copy() if copy else self._array
        return self._array.astype(dtype)

    def __len__(self) -> int:
        return int(self._array.size)

    @overload
    def __getitem__(self, index: int) -> float | None: ...

    @overload
    def __getitem__(self, index: slice) -> list[float | None]: ...

    def __getitem__(self, index: int | slice) -> float | None | list[float | None]:
        if isinstance(index, slice):
            return Samples.wrap(self._array[index], integral=self._integral).tolist()
        value = float(self._array[index])
        if math.isnan(value):
            return None
        return int(value) if self._integral else value

    def __iter__(self) -> Iterator[float | None]:
        return iter(self.tolist())

    def __contains__(self, value: object) -> bool:
        if value is None:
            return bool(np.isnan(self._array).any())
        return isinstance(value, (int, float)) and bool((self._array == value).any())

    def count(self, value: Any) -> int:
        if value is None:
            return int(np.count_nonzero(np.isnan(self._array)))
        return int(np.count_nonzero(self._array == value)) if isinstance(value, (int, float)) else 0

    def tolist(self) -> list[float | None]:
        """The samples as the list the records held before: floats (ints for motion), None for no reading."""
        gaps = np.flatnonzero(np.isnan(self._array))
        out: list[Any] = (self._array.astype(np.int64) if self._integral and not gaps.size else self._array).tolist()
        for gap in gaps.tolist():  # usually few: cheaper than testing every sample
            out[gap] = None
        return out

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Samples):
            return np.array_equal(self._array, other._array, equal_nan=True)
        if isinstance(other, (list, tuple)):
            return self.tolist() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # like the list it replaces

    def __repr__(self) -> str:
        return f"Samples(n={len(self)})"


def series_array(values: Samples | np.ndarray | Sequence[float | None]) -> np.ndarray:
    """A record's series as a float64 array, NaN for no reading: the `Samples`' own array (no copy), or a
    conversion of a list put in without validation (``model_copy(update=...)``)."""
    if isinstance(values, Samples):
        return values.array
    return Samples(values).array


@dataclass(frozen=True)
class SampleSpec:
    """How a series field is checked: the highest value, whether None is allowed, whole numbers only.

    A list (JSON, the previous release's envelopes, code that builds records by hand) goes through
    pydantic's strict element checks as before, with the same error locations; an array or a `Samples`
    is checked in one pass of numpy (dtype, length, range) and kept without copying.
    """

    hi: float
    nullable: bool = True
    integral: bool = False

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        item: Any = StrictInt if self.integral else StrictFloat
        item = Annotated[item, Field(ge=0, le=self.hi)]
        items = core_schema.list_schema(handler.generate_schema(item | None if self.nullable else item),
                                        max_length=MAX_SAMPLES)
        return core_schema.no_info_wrap_validator_function(
            self._validate, items,
            serialization=core_schema.plain_serializer_function_ser_schema(_as_list, when_used="always"),
        )

    def _validate(self, value: Any, check_list: core_schema.ValidatorFunctionWrapHandler) -> Samples:
        if isinstance(value, Samples):
            return self._checked(value.array)
        if isinstance(value, np.ndarray):
            return self._checked(value)
        return Samples.wrap(np.array(check_list(value), dtype=np.float64), integral=self.integral)

    def _checked(self, array: np.ndarray) -> Samples:
        """The vectorised twin of the element checks: numbers only, at most MAX_SAMPLES, in [0, hi]."""
        if array.ndim != 1 or array.dtype.kind not in "fiu":
            raise ValueError("samples must be a one-dimensional array of numbers")
        if array.size > MAX_SAMPLES:
            raise ValueError(f"at most {MAX_SAMPLES} samples")
        values = np.asarray(array, dtype=np.float64)
        gaps = np.isnan(values)
        if gaps.any() and not self.nullable:
            raise ValueError("samples must not be missing")
        if np.isinf(values).any():
            raise ValueError("samples must be finite")
        kept = values[~gaps] if gaps.any() else values
        if kept.size and (kept.min() < 0 or kept.max() > self.hi):
            raise ValueError(f"samples must be from 0 to {self.hi:g}")
        if self.integral and not np.array_equal(kept, np.rint(kept)):
            raise ValueError("samples must be whole numbers")
        return Samples.wrap(values, integral=self.integral)


def _as_list(value: Samples) -> list[float | None]:
    return value.tolist()


SampleSeries = Annotated[Samples, SampleSpec(3276.7)]
"""SpO2, pulse, TcCO2: 0-3276.7 (what the signal codec stores), None = no reading. Device codes (127, 255)
stay allowed, the metrics judge them."""
MotionSeries = Annotated[Samples, SampleSpec(3276, nullable=False, integral=True)]
"""Motion: whole numbers 0-3276, no gaps."""
