"""Löwenstein prisma / prismaVENT therapy data (`signal_NNN.wmedf`): an NIV night, and an oximetry night
when the SpO2 channel holds readings.

The file looks like EDF (256-byte fixed header, 256 bytes per signal) but is not EDF: the version
field is `1`, the number of records is -1 (written while recording), and **signals whose digital range
is 8-bit take one byte per sample** (signed for -128..127, unsigned for 0..255) instead of two. edfio
(and any EDF reader) would mis-size every record, so this module reads the variant itself with numpy,
after checking the header the way `resmed.read_header` checks EDF: every field a number where one
belongs, sizes that agree, rates and record lengths a device can have, whole records only.

Leak is the device's *total* leak (vented masks), reported as such (`leak_kind = "total"`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from ingest.parsers.common import MAX_SAMPLES, Context, build
from schemas import NivNight, OximetryNight

VERSION = b"1       "
MAX_SIGNALS = 64
MAX_RECORD_S = 60.0
"""prisma files use 1-s records; a record over a minute is a corrupt header."""
MAX_RATE_HZ = 1_000.0
MAX_RECORDS = 200_000
"""55 h of 1-s records: far more than a night."""
MIN_BREATHING_S = 600
"""Like ResMed PLD: under 10 min with breaths detected is not a night worth a record."""
SOURCE = "lowenstein_wmedf"
MODEL = "Löwenstein prisma"
LEAK_KIND = "total"
_RECORDING = re.compile(rb"Recording start at \w{2,3}, (\d{2})\.(\d{2})\.(\d{4}) (\d{2}):(\d{2}):(\d{2})")


@dataclass(frozen=True)
class Signal:
    """One signal's header: label, digital and physical range, samples per record, sample type."""

    label: str
    unit: str
    pmin: float
    pmax: float
    dmin: int
    dmax: int
    per_record: int
    dtype: str

    @property
    def width(self) -> int:
        return np.dtype(self.dtype).itemsize

    def physical(self, digital: np.ndarray) -> np.ndarray:
        gain = (self.pmax - self.pmin) / (self.dmax - self.dmin)
        return (digital.astype(np.float64) - self.dmin) * gain + self.pmin


@dataclass(frozen=True)
class Header:
    start: datetime
    header_bytes: int
    record_s: float
    records: int
    signals: tuple[Signal, ...]

    @property
    def record_bytes(self) -> int:
        return sum(s.width * s.per_record for s in self.signals)


def looks_like_wmedf(data: bytes) -> bool:
    """Version field `1` and the prisma recording field: cheap enough for format detection."""
    return data[:8] == VERSION and b"Recording start at" in data[88:168]


def _text(data: bytes, offset: int, width: int) -> str:
    return data[offset : offset + width].decode("ascii", "replace").strip()


def _int(data: bytes, offset: int, width: int, what: str, ctx: Context) -> int:
    try:
        return int(data[offset : offset + width].decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise ctx.error(f"header field '{what}' is not an integer", f"byte {offset}") from None


def _float(data: bytes, offset: int, width: int, what: str, ctx: Context) -> float:
    try:
        value = float(data[offset : offset + width].decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise ctx.error(f"header field '{what}' is not a number", f"byte {offset}") from None
    if not math.isfinite(value):
        raise ctx.error(f"header field '{what}' is not a finite number", f"byte {offset}")
    return value


def _sample_type(dmin: int, dmax: int) -> str | None:
    """1 byte for an 8-bit digital range, 2 for a 16-bit one (formats.md); None for anything wider."""
    if -128 <= dmin and dmax <= 127:
        return "i1"
    if 0 <= dmin and dmax <= 255:
        return "u1"
    if -32768 <= dmin and dmax <= 32767:
        return "<i2"
    return None


def _start(data: bytes, ctx: Context) -> datetime:
    """The recording field's 4-digit date (`Recording start at Thu, 14.05.2026 23:04:33`), else EDF's
    dd.mm.yy / hh.mm.ss fields (years 85-99 are 19xx, as EDF says)."""
    found = _RECORDING.search(data[88:168])
    try:
        if found:
            day, month, year, hour, minute, second = (int(g) for g in found.groups())
        else:
            day, month, yy = (int(p) for p in _text(data, 168, 8).split("."))
            hour, minute, second = (int(p) for p in _text(data, 176, 8).split("."))
            year = 1900 + yy if yy >= 85 else 2000 + yy
        return datetime(year, month, day, hour, minute, second, tzinfo=ctx.tz)
    except ValueError:
        raise ctx.error("recording start date/time is not a real date and time", "byte 168") from None


def read_header(data: bytes, ctx: Context) -> Header:
    """The header, checked before any byte of data is trusted (sizes, ranges, rates, sample widths)."""
    if len(data) < 256:
        raise ctx.error(f"truncated: {len(data)} bytes, the fixed header alone is 256")
    if data[:8] != VERSION:
        raise ctx.error("not a Löwenstein .wmedf file (version field is not '1')", "byte 0")
    header_bytes = _int(data, 184, 8, "header bytes", ctx)
    count = _int(data, 252, 4, "number of signals", ctx)
    if not 0 < count <= MAX_SIGNALS or header_bytes != 256 * (count + 1):
        raise ctx.error("inconsistent header (signal count and header size disagree)", "byte 184")
    if len(data) < header_bytes:
        raise ctx.error(f"truncated: header needs {header_bytes} bytes, file has {len(data)}")
    records = _int(data, 236, 8, "number of data records", ctx)
    record_s = _float(data, 244, 8, "data record duration", ctx)
    if not 0 < record_s <= MAX_RECORD_S:
        raise ctx.error(f"header field 'data record duration' out of range (0-{MAX_RECORD_S:g} s)", "byte 244")
    signals = tuple(_signal(data, count, i, record_s, ctx) for i in range(count))
    return Header(_start(data, ctx), header_bytes, record_s, records, signals)


def _signal(data: bytes, count: int, i: int, record_s: float, ctx: Context) -> Signal:
    """Signal `i`'s fields (EDF layout: each field for all signals, then the next field)."""
    base = 256

    def at(field_offset: int, width: int) -> int:
        return base + count * field_offset + width * i

    label = _text(data, at(0, 16), 16) or f"signal {i + 1}"
    unit = _text(data, at(96, 8), 8)
    pmin = _float(data, at(104, 8), 8, "physical minimum", ctx)
    pmax = _float(data, at(112, 8), 8, "physical maximum", ctx)
    dmin = _int(data, at(120, 8), 8, "digital minimum", ctx)
    dmax = _int(data, at(128, 8), 8, "digital maximum", ctx)
    per_record = _int(data, at(216, 8), 8, "samples per record", ctx)
    where = f"signal {label}"
    if dmin >= dmax or pmin == pmax:
        raise ctx.error("digital or physical range is empty", where)
    dtype = _sample_type(dmin, dmax)
    if dtype is None:
        raise ctx.error("digital range wider than 16 bits", where)
    width = _text(data, at(224, 32), 32)
    if re.fullmatch(r"#[12]", width) and int(width[1]) != np.dtype(dtype).itemsize:
        raise ctx.error(f"sample width {width[1]} byte(s) disagrees with the digital range", where)
    if not 0 < per_record <= MAX_RATE_HZ * record_s:
        raise ctx.error(f"samples per record out of range (1 to {MAX_RATE_HZ:g} Hz)", where)
    return Signal(label, unit, pmin, pmax, dmin, dmax, per_record, dtype)


def read(data: bytes, ctx: Context) -> tuple[Header, dict[str, tuple[Signal, np.ndarray]]]:
    """Header (its `records` the whole records read) and every signal's digital samples by label (a last
    partial record, the file still being written when copied, is left out)."""
    header = read_header(data, ctx)
    available = (len(data) - header.header_bytes) // header.record_bytes
    if header.records == -1:
        records = available
    elif header.records < 0:
        raise ctx.error("header field 'number of data records' is negative", "byte 236")
    elif header.records > available:
        raise ctx.error(f"truncated: header declares {header.records} data records but {available} whole "
                        f"records follow (field 'number of data records', byte 236)")
    else:
        records = header.records
    if records == 0:
        raise ctx.error("no data records after the header")
    if records > MAX_RECORDS:
        raise ctx.error(f"recording longer than {MAX_RECORDS} records")
    header = replace(header, records=records)
    layout = np.dtype([(f"s{i}", s.dtype, (s.per_record,)) for i, s in enumerate(header.signals)])
    table = np.frombuffer(data, dtype=layout, count=records, offset=header.header_bytes)
    signals: dict[str, tuple[Signal, np.ndarray]] = {}
    for i, signal in enumerate(header.signals):
        signals.setdefault(signal.label, (signal, table[f"s{i}"].reshape(-1)))
    return header, signals


def _median(values: np.ndarray, digits: int = 1) -> float | None:
    return None if values.size == 0 else round(float(np.median(values)), digits)


def _positive(signals: dict[str, tuple[Signal, np.ndarray]], label: str) -> np.ndarray:
    """Physical values > 0 of a breath-derived signal (0 = no breath detected in that second)."""
    if label not in signals:
        return np.empty(0)
    signal, digital = signals[label]
    values = signal.physical(digital)
    return values[values > 0]


def parse(data: bytes, ctx: Context) -> list[NivNight | OximetryNight]:
    """An NIV night (usage, total leak, median RR, Vt and MV, pressure percentiles), plus an oximetry night
    when SpO2 has readings.

    Usage is the recording's length (the device writes the file while therapy runs); the night is the
    noon-to-noon day the recording starts in, like ResMed's. A recording with under 10 min of
    breathing gives no NIV night, as a ResMed PLD session does.
    """
    patient_id = ctx.require_patient("lowenstein_wmedf")
    header, signals = read(data, ctx)
    rates = {label: s.per_record / header.record_s for label, (s, _) in signals.items()}
    records: list[NivNight | OximetryNight] = []
    rate = _positive(signals, "BreathFrequency")
    if rate.size / rates.get("BreathFrequency", 1.0) >= MIN_BREATHING_S:
        seconds = header.records * header.record_s
        leak = _leak(signals)
        values = {
            "patient_id": patient_id,
            "night_date": (header.start - timedelta(hours=12)).date(),
            "usage_hours": round(seconds / 3600, 3),
            "leak_p50_lpm": None if leak.size == 0 else round(float(np.percentile(leak, 50)), 1),
            "leak_p95_lpm": None if leak.size == 0 else round(float(np.percentile(leak, 95)), 1),
            "leak_kind": LEAK_KIND,
            "resp_rate": _median(rate),
            "tidal_volume_ml": _median(_positive(signals, "BreathVolume"), 0),
            "minute_vent_lpm": _median(_positive(signals, "MV")),
            "mask_sessions": 1,
            **_pressures(signals),
            "basis": "sessions",
            "source": SOURCE,
            "device_model": MODEL,
        }
        records.append(build(NivNight, values, ctx, None))
    oximetry = _oximetry(header, signals, rates, patient_id, ctx)
    if oximetry is not None:
        records.append(oximetry)
    return records


HPA_TO_CMH2O = 1.0197


def _pressures(signals: dict[str, tuple[Signal, np.ndarray]]) -> dict[str, float | None]:
    """Delivered pressure percentiles (hPa -> cmH2O, while the blower ran) on CPAP; on bilevel (IPAP and
    EPAP set values differ) the set IPAP and EPAP percentiles instead, as ResMed's bilevel nights."""

    def pct(label: str, q: float) -> float | None:
        values = _positive(signals, label)
        return None if values.size == 0 else round(float(np.percentile(values, q)) * HPA_TO_CMH2O, 1)

    ipap, epap = _positive(signals, "IPAPsoll"), _positive(signals, "EPAPsoll")
    bilevel = ipap.size > 0 and ipap.size == epap.size and bool(np.any(ipap - epap >= 1))
    if bilevel:
        return {"ipap_p50_cmh2o": pct("IPAPsoll", 50), "ipap_p95_cmh2o": pct("IPAPsoll", 95),
                "epap_p50_cmh2o": pct("EPAPsoll", 50), "epap_p95_cmh2o": pct("EPAPsoll", 95)}
    return {"pressure_p50_cmh2o": pct("Pressure", 50), "pressure_p95_cmh2o": pct("Pressure", 95)}


def _leak(signals: dict[str, tuple[Signal, np.ndarray]]) -> np.ndarray:
    """Total leak in L/min (TotalLeakage, else the per-breath mean), within the record's 0-200 range."""
    for label in ("TotalLeakage", "LeakFlowBreath"):
        if label in signals:
            signal, digital = signals[label]
            values = signal.physical(digital)
            return values[(values >= 0) & (values <= 200)]
    return np.empty(0)


def _oximetry(header: Header, signals: dict[str, tuple[Signal, np.ndarray]], rates: dict[str, float],
              patient_id: str, ctx: Context) -> OximetryNight | None:
    """SpO2 and heart rate recorded through the device's oximeter; None when no sample is a reading (no
    oximeter attached: the channel holds 0)."""
    if "SpO2" not in signals or "HeartFrequency" not in signals:
        return None
    (spo2_signal, spo2_digital), (pulse_signal, pulse_digital) = signals["SpO2"], signals["HeartFrequency"]
    if spo2_signal.per_record != pulse_signal.per_record:
        raise ctx.error("SpO2 and HeartFrequency have different sampling rates", "signal HeartFrequency")
    spo2 = np.round(spo2_signal.physical(spo2_digital), 1)
    pulse = np.round(pulse_signal.physical(pulse_digital), 1)
    spo2[~((spo2 > 0) & (spo2 <= 100))] = np.nan  # 0, 127, -1: no reading (as common.clean_spo2)
    pulse[~((pulse > 0) & (pulse <= 250))] = np.nan
    if np.isnan(spo2).all():
        return None
    if spo2.size > MAX_SAMPLES:
        raise ctx.error(f"recording longer than {MAX_SAMPLES} samples", "signal SpO2")
    values = {
        "patient_id": patient_id,
        "start": header.start,
        "interval_s": 1 / rates["SpO2"],
        "spo2": spo2,
        "pulse": pulse,
        "source": SOURCE,
        "device_model": MODEL,
        "on_niv": True,
    }
    return build(OximetryNight, values, ctx, None)
