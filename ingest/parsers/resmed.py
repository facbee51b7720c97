"""ResMed SD card (AirSense/AirCurve 10 and 11): STR daily summaries, PLD, SAD/SA2 and EVE/CSL files.

Decoding is done by edfio, after our own header check (so truncation gives a clear message)
and an in-memory header patch: AirSense/AirCurve 10 write a raw UTF-8 "°C" in physical-dimension
fields, which is not EDF ASCII. edfio 0.4.18 tolerates it by replacing characters, but other
readers and future edfio versions may refuse it, so we rewrite ``°C`` as ``degC`` (same byte
length) and any other non-ASCII header byte as ``?`` before handing the bytes to edfio.

Missing values are the *digital* value -1 (physical -1 x gain), so every check below looks at
digital values, never at a physical threshold. Signals are always looked up by label.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import edfio
import numpy as np

from ingest.parsers.common import Context, build
from ingest.parsers.errors import ParseError
from schemas import NivNight, OximetryNight
from schemas.niv import merge_nights

EPOCH = date(1970, 1, 1)
MISSING = -1
SESSION_TYPES = {
    "PLD": "resmed_pld",
    "SAD": "resmed_sad",
    "SA2": "resmed_sad",
    "EVE": "resmed_eve",
    "CSL": "resmed_eve",
}
EVENT_TYPES = ("Obstructive Apnea", "Central Apnea", "Hypopnea", "Apnea")
NOT_EVENTS = {"Recording starts", "Recording resumes", ""}
PLD_MIN_BREATHING_S = 600
"""A PLD session needs 10 min with breaths detected before its medians say anything about a night."""


@dataclass(frozen=True)
class EdfHeader:
    """The fixed part of an EDF header, read by us to validate sizes before edfio sees the bytes."""

    header_bytes: int
    num_records: int
    record_duration: float
    labels: tuple[str, ...]
    samples_per_record: tuple[int, ...]
    reserved: str

    @property
    def record_bytes(self) -> int:
        return 2 * sum(self.samples_per_record)


def _ascii_int(raw: bytes, ctx: Context, what: str, offset: int) -> int:
    try:
        return int(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise ctx.error(f"EDF header field '{what}' is not an integer", f"byte {offset}") from None


def read_header(data: bytes, ctx: Context) -> EdfHeader:
    """Parse and check the EDF header before trusting it: truncation, corruption and implausible fields
    (a 1e-9 s record, a million-Hz signal, more records than the bytes hold) give a reason naming the field."""
    if len(data) < 256:
        raise ctx.error(f"truncated EDF: {len(data)} bytes, the fixed header alone is 256")
    if data[:8] != b"0       ":
        raise ctx.error("not an EDF file (version field is not '0')", "byte 0")
    header_bytes = _ascii_int(data[184:192], ctx, "header bytes", 184)
    num_records = _ascii_int(data[236:244], ctx, "number of data records", 236)
    num_signals = _ascii_int(data[252:256], ctx, "number of signals", 252)
    if not 0 < num_signals <= 512 or header_bytes != 256 * (num_signals + 1):
        raise ctx.error("inconsistent EDF header (signal count and header size disagree)", "byte 184")
    if len(data) < header_bytes:
        raise ctx.error(f"truncated EDF: header needs {header_bytes} bytes, file has {len(data)}")
    duration = _record_duration(data, ctx)
    labels = tuple(
        data[256 + 16 * i : 256 + 16 * (i + 1)].decode("ascii", "replace").strip() for i in range(num_signals)
    )
    base = 256 + num_signals * 216
    samples = tuple(
        _ascii_int(data[base + 8 * i : base + 8 * (i + 1)], ctx, "samples per record", base + 8 * i)
        for i in range(num_signals)
    )
    _check_sampling(labels, samples, duration, base, ctx)
    reserved = data[192:236].decode("ascii", "replace").strip()
    return EdfHeader(header_bytes, num_records, duration, labels, samples, reserved)


MAX_RECORD_S = 86_400.0
"""ResMed's longest data record is STR's one day; anything longer is a corrupt header."""
MAX_RATE_HZ = 1_000.0
"""ResMed's fastest signal is BRP's 25 Hz flow; EDF files in general rarely exceed 1 kHz."""
MAX_SAMPLES_PER_RECORD = 10_000_000
ANNOTATION_LABELS = {"EDF Annotations", "Crc16"}
"""An EDF+ file of only these (ResMed EVE/CSL) has a record duration of 0, as the EDF+ spec allows."""


def _record_duration(data: bytes, ctx: Context) -> float:
    """Seconds per data record, 0 (annotation files) to one day."""
    try:
        duration = float(data[244:252].decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise ctx.error("EDF header field 'data record duration' is not a number", "byte 244") from None
    if not 0 <= duration <= MAX_RECORD_S:  # NaN fails too
        raise ctx.error(f"EDF header field 'data record duration' out of range (0-{MAX_RECORD_S:g} s)", "byte 244")
    return duration


def _check_sampling(labels: tuple[str, ...], samples: tuple[int, ...], duration: float, base: int,
                    ctx: Context) -> None:
    """Samples per record within bounds, and a sampling rate (samples / duration) a device can have."""
    for i, count in enumerate(samples):
        if not 0 <= count <= MAX_SAMPLES_PER_RECORD:
            raise ctx.error(f"EDF header field 'samples per record' out of range (signal {i + 1})",
                            f"byte {base + 8 * i}")
    if duration == 0:
        if not set(labels) <= ANNOTATION_LABELS:
            raise ctx.error("EDF header field 'data record duration' is 0 but the file has signals "
                            "(only annotation files may)", "byte 244")
        return
    fastest = max(samples) / duration
    if fastest > MAX_RATE_HZ:
        raise ctx.error(f"EDF header fields 'data record duration' and 'samples per record' give signal "
                        f"{samples.index(max(samples)) + 1} a sampling rate above {MAX_RATE_HZ:g} Hz", "byte 244")


def _checked_records(header: EdfHeader, data: bytes, ctx: Context) -> int:
    """Number of complete data records; -1 in the header (seen on real cards) means 'count them'."""
    available = len(data) - header.header_bytes
    if header.record_bytes == 0:
        raise ctx.error("EDF declares no samples at all")
    if header.num_records == MISSING:
        return available // header.record_bytes
    if header.num_records < 0:
        raise ctx.error("EDF header field 'number of data records' is negative", "byte 236")
    needed = header.num_records * header.record_bytes
    if available < needed:
        raise ctx.error(
            f"truncated EDF: header declares {header.num_records} data records "
            f"({needed} bytes) but only {available} bytes of data follow (field 'number of data records', byte 236)"
        )
    return header.num_records


def patch_header(data: bytes, header: EdfHeader, num_records: int) -> bytes:
    """ASCII-only header with an exact record count, data cut to whole records (see module doc)."""
    head = data[: header.header_bytes].replace("\u00b0C".encode() + b" ", b"degC")
    head = re.sub(rb"[^\x20-\x7e]", b"?", head)
    head = head[:236] + str(num_records).encode().ljust(8) + head[244:]
    return head + data[header.header_bytes : header.header_bytes + num_records * header.record_bytes]


def read_edf(data: bytes, ctx: Context) -> tuple[EdfHeader, edfio.Edf | None]:
    """Validated, patched edfio object; None when the file holds no data records (not an error)."""
    header = read_header(data, ctx)
    num_records = _checked_records(header, data, ctx)
    if num_records == 0:
        return header, None
    patched = patch_header(data, header, num_records)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            edf = edfio.read_edf(patched, lazy_load_data=False)
            _ = edf.starttime, edf.startdate
    except Exception as exc:  # noqa: BLE001 - edfio (third party) fed untrusted bytes: any failure = bad file
        raise ctx.error(f"EDF could not be decoded ({type(exc).__name__}: {str(exc)[:120]})") from None
    return header, edf


def edf_start(edf: edfio.Edf, ctx: Context) -> datetime:
    """Recording start from the header (trust it over the file name), in the patient's zone."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = datetime.combine(edf.startdate, edf.starttime)
    except Exception as exc:  # noqa: BLE001 - malformed date/time fields surface lazily in edfio, any type
        raise ctx.error(f"EDF start date/time unreadable ({type(exc).__name__})", "byte 168") from None
    return start.replace(tzinfo=ctx.tz)


class Signals:
    """Signals by label, as digital and physical arrays; -1 digital = missing."""

    def __init__(self, edf: edfio.Edf, ctx: Context) -> None:
        self._ctx = ctx
        self._by_label: dict[str, Any] = {}
        for signal in edf.signals:
            self._by_label.setdefault(signal.label.strip(), signal)

    def __contains__(self, label: str) -> bool:
        return label in self._by_label

    def arrays(self, label: str) -> tuple[np.ndarray, np.ndarray]:
        """(digital, physical) arrays of a required signal."""
        signal = self._by_label.get(label)
        if signal is None:
            raise self._ctx.error("required signal missing", f"signal {label}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return np.asarray(signal.digital), np.asarray(signal.data, dtype=float)
        except Exception as exc:  # noqa: BLE001 - corrupt gain/offset fields fail inside edfio, any type
            raise self._ctx.error(f"signal unreadable ({type(exc).__name__})", f"signal {label}") from None

    def rate(self, label: str) -> float:
        """Samples per second of a required signal (0 when the header says so)."""
        if label not in self._by_label:
            raise self._ctx.error("required signal missing", f"signal {label}")
        return float(self._by_label[label].sampling_frequency)

    def optional(self, label: str) -> tuple[np.ndarray, np.ndarray] | None:
        return self.arrays(label) if label in self else None


# ---------------------------------------------------------------- STR.edf


def _day_value(arrays: tuple[np.ndarray, np.ndarray] | None, i: int, scale: float = 1.0) -> float | None:
    """Physical value of day `i` of a once-a-day signal, None when -1 (missing) or absent."""
    if arrays is None or i >= len(arrays[0]) or int(arrays[0][i]) == MISSING:
        return None
    return round(float(arrays[1][i]) * scale, 3)


def _mask_sessions(sig: Signals, i: int, num_records: int) -> int | None:
    """Mask-on periods that day: used MaskOn slots, else MaskEvents / 2 (one on + one off each)."""
    mask_on = sig.optional("MaskOn")
    if mask_on is not None and len(mask_on[0]) % num_records == 0:
        slots = len(mask_on[0]) // num_records
        return int(np.count_nonzero(mask_on[0][i * slots : (i + 1) * slots] != MISSING))
    events = _day_value(sig.optional("MaskEvents"), i)
    return None if events is None else int(events) // 2


def parse_str(data: bytes, ctx: Context) -> list[NivNight]:
    """One NivNight per STR day with usage > 0; night_date is the STR `Date` (noon to noon)."""
    patient_id = ctx.require_patient("resmed_str")
    _header, edf = read_edf(data, ctx)
    if edf is None:
        return []
    sig = Signals(edf, ctx)
    days, duration = sig.arrays("Date"), sig.arrays("Duration")
    n = len(duration[0])
    if len(days[0]) != n:
        raise ctx.error("Date and Duration signals have different lengths", "signal Date")
    first_day = edf_start(edf, ctx).date()
    columns = {label: sig.optional(label) for label in _STR_LABELS}
    nights = []
    for i in range(n):
        minutes = int(duration[0][i])
        if minutes <= 0:
            continue
        day_number = int(days[0][i])
        night = EPOCH + timedelta(days=day_number) if day_number >= 0 else first_day + timedelta(days=i)
        values = _str_values(columns, i)
        values.update(
            patient_id=patient_id,
            night_date=night,
            usage_hours=round(float(duration[1][i]) / 60, 3),
            mask_sessions=_mask_sessions(sig, i, n),
            leak_kind=RESMED_LEAK,
            source=RESMED_NIGHT,
            device_model=ctx.device_model,
        )
        nights.append(build(NivNight, values, ctx, f"night {night.isoformat()}"))
    return nights


RESMED_LEAK = "unintentional"
"""ResMed's leak has the mask's vent flow subtracted: said explicitly, as a night's kind defaults to unknown."""
_STR_LABELS = ("Leak.50", "Leak.95", "AHI", "RespRate.50", "TidVol.50", "MinVent.50", "SpO2.50", "SpontCyc%")


def _str_values(columns: dict[str, tuple[np.ndarray, np.ndarray] | None], i: int) -> dict[str, Any]:
    """STR columns to NivNight fields with unit conversion (L/s to L/min, L to mL).

    `SpO2.50` (the device's nightly median) fills `spo2_mean`: ResMed reports no mean.
    """
    return {
        "leak_p50_lpm": _day_value(columns["Leak.50"], i, 60),
        "leak_p95_lpm": _day_value(columns["Leak.95"], i, 60),
        "ahi": _day_value(columns["AHI"], i),
        "resp_rate": _day_value(columns["RespRate.50"], i),
        "tidal_volume_ml": _day_value(columns["TidVol.50"], i, 1000),
        "minute_vent_lpm": _day_value(columns["MinVent.50"], i),
        "spo2_mean": _day_value(columns["SpO2.50"], i),
        "pct_spont_triggered": _day_value(columns["SpontCyc%"], i),
    }


# ---------------------------------------------------------------- PLD and SAD/SA2: sessions into nights


RESMED_NIGHT = "resmed_str"
"""Source of every ResMed NIV night: the STR summary's, which session-derived values complete on the same
row (``NivNight.basis``), so a night with both is one night, whichever file arrives first."""
SAD_MIN_READING_S = 600
"""An oximeter night needs 10 min of readings before its SpO2 says anything about the night."""
BILEVEL_SIGNALS = ("Ti.2s", "IERatio.2s")
"""PLD signals only bilevel devices write (formats.md): there `Press` is IPAP and `EprPress` EPAP."""


def _valid(arrays: tuple[np.ndarray, np.ndarray] | None, positive: bool = False) -> np.ndarray:
    """Physical samples whose digital value is not -1 (and > 0 for breath-derived signals)."""
    if arrays is None:
        return np.empty(0)
    keep = arrays[0] != MISSING
    if positive:
        keep &= arrays[1] > 0
    return arrays[1][keep]


def _stat(values: np.ndarray, q: float, scale: float = 1.0) -> float | None:
    return None if values.size == 0 else round(float(np.percentile(values, q)) * scale, 2)


@dataclass
class SessionNight:
    """One night's session files gathered (a card holds several sessions a night; an upload holds one):
    samples are pooled, so percentiles are the night's, not an average of the sessions'."""

    patient_id: str
    night_date: date
    device_model: str | None
    pld_s: float = 0.0
    sad_s: float = 0.0
    pld_sessions: int = 0
    bilevel: bool = False
    pooled: dict[str, list[np.ndarray]] | None = None

    def add(self, name: str, values: np.ndarray) -> None:
        if self.pooled is None:
            self.pooled = {}
        self.pooled.setdefault(name, []).append(values)

    def values(self, name: str) -> np.ndarray:
        parts = (self.pooled or {}).get(name, [])
        return np.concatenate(parts) if parts else np.empty(0)


def _night_of(start: datetime) -> date:
    """A session belongs to the therapy day (noon to noon) it starts in."""
    return (start - timedelta(hours=12)).date()


def _gather_pld(data: bytes, ctx: Context, nights: dict[date, SessionNight]) -> None:
    """Add a PLD session's samples to its night; sessions under 10 min of breathing add nothing
    (breath-derived signals only count samples with a breath detected, rate > 0)."""
    patient_id = ctx.require_patient("resmed_pld")
    _header, edf = read_edf(data, ctx)
    if edf is None:
        return
    sig = Signals(edf, ctx)
    leak = _valid(sig.arrays("Leak.2s"))
    rate_arrays = sig.arrays("RespRate.2s")
    rate = _valid(rate_arrays, positive=True)
    fs = sig.rate("RespRate.2s") or 0.5
    if rate.size / fs < PLD_MIN_BREATHING_S:
        return
    start = edf_start(edf, ctx)
    night = nights.setdefault(_night_of(start), SessionNight(patient_id, _night_of(start), ctx.device_model))
    night.pld_s += len(rate_arrays[0]) / fs
    night.pld_sessions += 1
    night.bilevel |= any(label in sig for label in BILEVEL_SIGNALS)
    night.add("leak", leak)
    night.add("rate", rate)
    night.add("vt", _valid(sig.optional("TidVol.2s"), positive=True))
    night.add("mv", _valid(sig.optional("MinVent.2s"), positive=True))
    night.add("press", _valid(sig.optional("Press.2s"), positive=True))
    night.add("epr", _valid(sig.optional("EprPress.2s"), positive=True))


def _gather_sad(data: bytes, ctx: Context, nights: dict[date, SessionNight]) -> list[OximetryNight]:
    """The session's oximetry night (when an oximeter was attached), and its SpO2 added to its night."""
    oximetry = parse_sad(data, ctx)
    for oxi in oximetry:
        spo2 = np.asarray(oxi.spo2, dtype=float)
        spo2 = spo2[~np.isnan(spo2)]
        start = oxi.start.replace(tzinfo=None)
        night = nights.setdefault(_night_of(start), SessionNight(oxi.patient_id, _night_of(start), ctx.device_model))
        night.sad_s += len(oxi.spo2) * oxi.interval_s
        night.add("spo2", spo2)
        night.add("spo2_s", np.array([spo2.size * oxi.interval_s]))
    return oximetry


def session_night(night: SessionNight, ctx: Context) -> NivNight | None:
    """The night's session values as a NivNight part (`basis` sessions); None when no session counted."""
    leak, rate = night.values("leak"), night.values("rate")
    spo2 = night.values("spo2")
    oximetry = spo2.size > 0 and float(night.values("spo2_s").sum()) >= SAD_MIN_READING_S
    if night.pld_sessions == 0 and not oximetry:
        return None
    press, epr = night.values("press"), night.values("epr")
    side = "ipap" if night.bilevel else "pressure"
    values: dict[str, Any] = {
        "patient_id": night.patient_id,
        "night_date": night.night_date,
        "usage_hours": round((night.pld_s or night.sad_s) / 3600, 3),
        "leak_p50_lpm": _stat(leak, 50, 60),
        "leak_p95_lpm": _stat(leak, 95, 60),
        "resp_rate": _stat(rate, 50),
        "tidal_volume_ml": _stat(night.values("vt"), 50, 1000),
        "minute_vent_lpm": _stat(night.values("mv"), 50),
        f"{side}_p50_cmh2o": _stat(press, 50),
        f"{side}_p95_cmh2o": _stat(press, 95),
        "mask_sessions": night.pld_sessions or None,
        "leak_kind": RESMED_LEAK,
        "source": RESMED_NIGHT,
        "basis": "sessions",
        "device_model": night.device_model,
    }
    if night.bilevel:
        values.update(epap_p50_cmh2o=_stat(epr, 50), epap_p95_cmh2o=_stat(epr, 95))
    if oximetry:
        values.update(spo2_mean=round(float(spo2.mean()), 2), spo2_min=round(float(spo2.min()), 1),
                      spo2_t90_pct=round(100 * float(np.count_nonzero(spo2 < 90)) / spo2.size, 2))
    return build(NivNight, values, ctx, f"night {night.night_date.isoformat()}")


def parse_pld(data: bytes, ctx: Context) -> list[NivNight]:
    """A session's part of its night: pressure percentiles (IPAP/EPAP on bilevel), leak median and 95th
    percentile, median rate, Vt and MV; the STR summary of the night completes it (`basis` sessions).
    Sessions under 10 min of breathing give no record rather than a misleading night."""
    nights: dict[date, SessionNight] = {}
    _gather_pld(data, ctx, nights)
    return [n for n in (session_night(night, ctx) for night in nights.values()) if n is not None]


def parse_session_sad(data: bytes, ctx: Context) -> list[OximetryNight | NivNight]:
    """A SAD/SA2 upload: its oximetry night, and the device SpO2 metrics of its NIV night, when an
    oximeter was attached (10 min of readings for the latter); nothing when every sample is -1."""
    nights: dict[date, SessionNight] = {}
    oximetry: list[OximetryNight | NivNight] = list(_gather_sad(data, ctx, nights))
    return oximetry + [n for n in (session_night(night, ctx) for night in nights.values()) if n is not None]


def _readings(digital: np.ndarray, physical: np.ndarray, top: float) -> np.ndarray:
    """Samples rounded to 0.1, NaN (no reading) where digital -1 or outside (0, top]: `clean_spo2` and
    `clean_pulse` on the whole array at once (a night is 26,000 samples)."""
    values = np.round(physical.astype(float), 1)
    return np.where((digital != MISSING) & (values > 0) & (values <= top), values, np.nan)


def parse_sad(data: bytes, ctx: Context) -> list[OximetryNight]:
    """1 Hz SpO2 and pulse recorded through the device's oximeter module (so on NIV).

    SAD files are written every night, oximeter or not: all samples -1 means no oximeter and
    yields no record (not an error).
    """
    patient_id = ctx.require_patient("resmed_sad")
    _header, edf = read_edf(data, ctx)
    if edf is None:
        return []
    sig = Signals(edf, ctx)
    spo2_d, spo2_p = sig.arrays("SpO2.1s")
    pulse_d, pulse_p = sig.arrays("Pulse.1s")
    if len(spo2_d) != len(pulse_d):
        raise ctx.error("SpO2.1s and Pulse.1s have different sample counts", "signal Pulse.1s")
    if not np.any(spo2_d != MISSING):
        return []
    rate = sig.rate("SpO2.1s")
    if not rate > 0:
        raise ctx.error("sampling frequency must be positive", "signal SpO2.1s")
    spo2 = _readings(spo2_d, spo2_p, 100.0)
    pulse = _readings(pulse_d, pulse_p, 250.0)
    values = {
        "patient_id": patient_id,
        "start": edf_start(edf, ctx),
        "interval_s": 1 / rate,
        "spo2": spo2,
        "pulse": pulse,
        "source": "resmed_sad",
        "device_model": ctx.device_model,
        "on_niv": True,
    }
    return [build(OximetryNight, values, ctx, None)]


# ---------------------------------------------------------------- EVE / CSL


def event_counts(data: bytes, filename: str) -> dict[str, int]:
    """Respiratory events scored by the device in an EVE/CSL file, by type (evidence, not a record).

    Always has the four standard keys; other annotation texts (e.g. 'Arousal') are counted too.
    """
    ctx = Context(filename)
    _header, edf = read_edf(data, ctx)
    counts = dict.fromkeys(EVENT_TYPES, 0)
    if edf is None:
        return counts
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            annotations = list(edf.annotations)
    except Exception as exc:  # noqa: BLE001 - malformed TAL bytes fail inside edfio, any type
        raise ctx.error(f"EDF+ annotations unreadable ({type(exc).__name__})") from None
    for annotation in annotations:
        text = annotation.text.strip()
        if text not in NOT_EVENTS:
            counts[text] = counts.get(text, 0) + 1
    return counts


def event_file_start(data: bytes, filename: str) -> datetime | None:
    """Start of an EVE/CSL recording (naive device clock), for reports and goldens."""
    ctx = Context(filename)
    _, edf = read_edf(data, ctx)
    return None if edf is None else datetime.combine(edf.startdate, edf.starttime)


def parse_eve(data: bytes, ctx: Context) -> list[Any]:
    """EVE/CSL hold no canonical record: validate them and return nothing (see `event_counts`)."""
    event_counts(data, ctx.filename)
    return []


# ---------------------------------------------------------------- card layout


def device_model(card: Path) -> str | None:
    """Product name from Identification.tgt (`#PNA AirCurve_10_VAuto`) or AirSense 11's JSON."""
    tgt, js = card / "Identification.tgt", card / "Identification.json"
    if tgt.is_file():
        for line in tgt.read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("#PNA"):
                return line[4:].strip().replace("_", " ") or None
    if js.is_file():
        try:
            return _find_key(json.loads(js.read_text(encoding="utf-8", errors="replace")), "ProductName")
        except (ValueError, RecursionError):
            return None
    return None


def _find_key(node: Any, key: str) -> str | None:
    if isinstance(node, dict):
        if isinstance(node.get(key), str):
            return node[key].replace("_", " ")
        children: list[Any] = list(node.values())
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _find_key(child, key)
        if found:
            return found
    return None


def find_card_root(path: Path) -> Path | None:
    """The card root (holding STR.edf or Identification.*) at or above `path`, up to 3 levels."""
    for candidate in [path, *list(path.parents)[:3]]:
        if is_card(candidate):
            return candidate
    return None


def is_card(folder: Path) -> bool:
    return folder.is_dir() and (
        (folder / "STR.edf").is_file() or ((folder / "DATALOG").is_dir() and any(folder.glob("Identification.*")))
    )


def session_type(filename: str) -> str | None:
    """`YYYYMMDD_HHMMSS_<TYPE>.edf` -> format name; the type comes from the name (EVE == CSL bytes)."""
    match = re.search(r"_([A-Z0-9]{3})\.edf$", filename, re.IGNORECASE)
    return SESSION_TYPES.get(match.group(1).upper()) if match else None


def parse_card(card: Path, ctx: Context) -> list[Any]:
    """STR nights completed by their session files (PLD, SAD/SA2; one night each, sessions pooled), a
    session night standing alone where STR lacks its day, plus the oximetry nights of SAD/SA2."""
    ctx.device_model = device_model(card)
    nights: dict[date, NivNight] = {}
    str_path = card / "STR.edf"
    if str_path.is_file():
        nights = {n.night_date: n for n in parse_str(str_path.read_bytes(), _sub(ctx, str_path))}
    sessions: dict[date, SessionNight] = {}
    oximetry: list[Any] = []
    for path in sorted((card / "DATALOG").rglob("*.edf")) if (card / "DATALOG").is_dir() else []:
        kind = session_type(path.name)
        if kind == "resmed_sad":
            oximetry += _gather_sad(path.read_bytes(), _sub(ctx, path), sessions)
        elif kind == "resmed_pld":
            _gather_pld(path.read_bytes(), _sub(ctx, path), sessions)
        elif kind == "resmed_eve":
            event_counts(path.read_bytes(), str(path))
    for day, gathered in sorted(sessions.items()):
        part = session_night(gathered, _sub(ctx, card))
        if part is not None:
            nights[day] = merge_nights(nights[day], part) if day in nights else part
    return [*(nights[d] for d in sorted(nights)), *oximetry]


def _sub(ctx: Context, path: Path) -> Context:
    return Context(str(path), ctx.patient_id, ctx.tz, ctx.device_model, ctx.notes)


def looks_like_edf(data: bytes) -> bool:
    return data[:8] == b"0       "


def sniff_edf(data: bytes, filename: str) -> str:
    """Format of a ResMed EDF: by file name first (EVE and CSL are byte-identical), then by labels."""
    name = Path(filename).name
    if name.upper() in {"STR.EDF"}:
        return "resmed_str"
    by_name = session_type(name)
    if by_name:
        return by_name
    if re.search(r"_BRP\.edf$", name, re.IGNORECASE):
        raise ParseError(filename, "ResMed BRP (25 Hz flow and pressure) files are not parsed")
    header = read_header(data, Context(filename))
    labels = set(header.labels)
    if {"Date", "Duration"} <= labels:
        return "resmed_str"
    if "SpO2.1s" in labels:
        return "resmed_sad"
    if "Leak.2s" in labels:
        return "resmed_pld"
    if header.reserved.startswith("EDF+") and labels <= {"EDF Annotations", "Crc16"}:
        return "resmed_eve"
    raise ParseError(filename, "EDF file is not a ResMed STR, PLD, SAD/SA2 or EVE/CSL file")
