"""A record's metrics are computed once per record object, and forgotten with the record."""

import gc
from datetime import UTC, datetime

from processors.metrics import once as memo
from processors.metrics.oximetry import night_metrics
from schemas import OximetryNight


def night(level: float) -> OximetryNight:
    return OximetryNight(patient_id="P", start=datetime(2026, 3, 1, 22, tzinfo=UTC), interval_s=1.0,
                         spo2=[level] * 7200, pulse=[60.0] * 7200)


def test_second_call_reuses_the_first_result_for_the_same_record() -> None:
    calls: list[OximetryNight] = []

    def counted(record: OximetryNight) -> object:
        calls.append(record)
        return night_metrics(record)

    a, b = night(95.0), night(85.0)
    first = memo.once(counted, a)
    assert memo.once(counted, a) is first
    other = memo.once(counted, b)  # an equal-shaped but different record is computed on its own
    assert calls == [a, b]
    assert first.mean_spo2 == 95.0 and other.mean_spo2 == 85.0


def test_entries_go_with_their_record() -> None:
    gc.collect()
    before = len(memo._MEMO)
    record = night(93.0)
    memo.once(night_metrics, record)  # its metrics, and inside them its sample arrays
    assert len(memo._MEMO) > before
    del record
    gc.collect()
    assert len(memo._MEMO) == before
