"""The metrics of each record kind: which function computes them and what it returns.

The patient history (``processors/rules/history.py``) and the table rows (``processors/store.py``) both
read a record's metrics through :data:`METRICS`, computed once per record object (``once``); the store's
columns are the record's fields plus its metrics' fields (``schemas.kinds``). A kind without metrics
(ALSFRS-R: its scores are the record; a blood gas: its values are) has no entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from processors.metrics import capnography, niv, oximetry, spirometry
from processors.metrics.once import once
from schemas.kinds import CAPNOGRAPHY, NIV, OXIMETRY, SPIROMETRY, Kind

__all__ = ["METRICS", "KindMetrics"]


@dataclass(frozen=True)
class KindMetrics:
    compute: Callable[[Any], Any]
    returns: type
    """The dataclass ``compute`` returns; its fields are the metric names."""

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.returns))

    def of(self, record: Any) -> Any:
        """The record's metrics, computed on the first call for this record object."""
        return once(self.compute, record)


METRICS: dict[Kind, KindMetrics] = {
    SPIROMETRY: KindMetrics(spirometry.session_metrics, spirometry.SpirometryMetrics),
    OXIMETRY: KindMetrics(oximetry.night_metrics, oximetry.OximetryMetrics),
    NIV: KindMetrics(niv.night_metrics, niv.NivMetrics),
    CAPNOGRAPHY: KindMetrics(capnography.night_metrics, capnography.CapnographyMetrics),
}
