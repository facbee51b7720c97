"""Contec CMS50-family oximeters: the SpO2 Assistant `.SpO2` file (binary, little-endian).

Bytes 0-1: u16 header offset. At offset + 200: seven u32 (year, month, day, hour, minute, second of the
start on the device clock, then the sample count). From offset + 228: (u8 SpO2 %, u8 pulse bpm) pairs,
one a second; (127, 255) = no reading. The count must agree with the file's length exactly: a file cut
short or a corrupt count is refused rather than read as a shorter or padded night.
"""

from __future__ import annotations

import struct
from datetime import datetime
from pathlib import Path

import numpy as np

from ingest.parsers.common import MAX_SAMPLES, Context, build, require_valid_spo2
from schemas import OximetryNight

START_FIELDS = 200
"""Start date/time and sample count: this far after the header offset."""
SAMPLES_AT = 228
INTERVAL_S = 1.0
SOURCE = "contec_spo2"
MODEL = "Contec CMS50"
SUFFIX = ".spo2"


def _fields(data: bytes) -> tuple[int, tuple[int, ...]] | None:
    """Header offset and the seven u32 fields, or None when the file is too short to hold them."""
    if len(data) < 2:
        return None
    offset = struct.unpack_from("<H", data)[0]
    if len(data) < offset + SAMPLES_AT:
        return None
    return offset, struct.unpack_from("<7I", data, offset + START_FIELDS)


def looks_like_spo2(filename: str, data: bytes) -> bool:
    """A `.SpO2` name, or (renamed file) a header with a real start and a count matching the length."""
    if Path(filename).suffix.lower() == SUFFIX:
        return True
    found = _fields(data)
    if found is None:
        return False
    offset, (year, month, day, hour, minute, second, count) = found
    return (2000 <= year <= 2099 and 1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60
            and second < 60 and count > 0 and len(data) == offset + SAMPLES_AT + 2 * count)


def parse_spo2(data: bytes, ctx: Context) -> list[OximetryNight]:
    """One OximetryNight at 1 Hz from the header's start; errors name the field and its byte."""
    patient_id = ctx.require_patient("contec_spo2")
    if len(data) < 2:
        raise ctx.error(f"truncated: {len(data)} bytes, no header offset")
    found = _fields(data)
    if found is None:
        offset = struct.unpack_from("<H", data)[0]
        raise ctx.error(f"truncated: header ends at byte {offset + SAMPLES_AT}, file has {len(data)} bytes "
                        "(field 'header offset', byte 0)")
    offset, (year, month, day, hour, minute, second, count) = found
    at = offset + START_FIELDS
    if not 2000 <= year <= 2099:
        raise ctx.error("field 'year': not a year from 2000 to 2099", f"byte {at}")
    try:
        start = datetime(year, month, day, hour, minute, second, tzinfo=ctx.tz)
    except (ValueError, OverflowError):
        raise ctx.error("fields 'month' to 'second': not a real date and time", f"byte {at + 4}") from None
    body = len(data) - offset - SAMPLES_AT
    if count == 0:
        raise ctx.error("field 'sample count' is 0: no samples", f"byte {at + 24}")
    if count > MAX_SAMPLES:
        raise ctx.error(f"field 'sample count': recording longer than {MAX_SAMPLES} samples", f"byte {at + 24}")
    if 2 * count != body:
        state = "truncated" if 2 * count > body else "trailing bytes"
        raise ctx.error(f"field 'sample count' says {count} samples ({2 * count} bytes) but {body} bytes follow "
                        f"the header ({state})", f"byte {at + 24}")
    pairs = np.frombuffer(data, dtype=np.uint8, count=2 * count, offset=offset + SAMPLES_AT).reshape(-1, 2)
    spo2, pulse = pairs[:, 0].astype(np.float64), pairs[:, 1].astype(np.float64)
    spo2[(spo2 <= 0) | (spo2 > 100)] = np.nan  # 127: no reading (as common.clean_spo2)
    pulse[(pulse <= 0) | (pulse > 250)] = np.nan  # 255: no reading (as common.clean_pulse)
    if np.isnan(spo2).all():
        require_valid_spo2([], ctx)
    values = {
        "patient_id": patient_id,
        "start": start,
        "interval_s": INTERVAL_S,
        "spo2": spo2,
        "pulse": pulse,
        "source": SOURCE,
        "device_model": MODEL,
    }
    return [build(OximetryNight, values, ctx, None)]
