"""Our CO2 CSV layouts: blood gases / spot CO2 (`blood_gas_csv`) and overnight TcCO2 (`tcco2_csv`).

Read with the CSV helpers of :mod:`ingest.parsers.generic_csv`: errors name the line (1 = header) and
the column, never the cell's value. Pressures are stored in mmHg (1 kPa = 7.50062 mmHg).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ingest.parsers.common import (
    MAX_SAMPLES,
    Context,
    build,
    clean_pulse,
    clean_spo2,
    decode_text,
    grid_slots,
    infer_interval,
    parse_float,
    spread,
    validation_reason,
)
from ingest.parsers.generic_csv import _check_header, _datetime, _row_dict, _table
from schemas import BloodGas, CapnographyNight
from schemas.base import plausible_time
from schemas.capnography import TCPCO2_PLAUSIBLE

__all__ = ["KPA_TO_MMHG", "parse_blood_gas_csv", "parse_tcco2_csv"]

KPA_TO_MMHG = 7.50062
PRESSURE_UNITS = {"mmhg": 1.0, "kpa": KPA_TO_MMHG}
GAS_REQUIRED = ("patient_id", "taken_at", "sample", "pco2", "pco2_unit")
GAS_OPTIONAL = ("bicarbonate_mmol_l", "ph", "po2", "source")
GAS_COLUMN = {"pco2_mmhg": "pco2", "po2_mmhg": "po2"}
"""Record field -> the CSV column it comes from, so a validation error names the column."""
TC_REQUIRED = ("timestamp", "tcpco2_mmhg")
TC_COLUMNS = ("timestamp", "tcpco2_mmhg", "spo2", "pulse")
TCPCO2_MAX = 250.0
"""A cell above this (or below 0) is an error, not a reading; 0 or empty = no reading."""


# ------------------------------------------------------------------------------------ blood gases
def parse_blood_gas_csv(data: bytes, ctx: Context) -> list[BloodGas]:
    """One measurement per row; `po2` is in the row's `pco2_unit`; a row needs pco2 or bicarbonate."""
    header, rows = _table(decode_text(data, ctx), ctx)
    _check_header(header, GAS_REQUIRED, {*GAS_REQUIRED, *GAS_OPTIONAL}, ctx)
    records = []
    for line, cells in rows:
        row = _row_dict(header, cells, line, ctx)
        values = _gas_values(row, line, ctx)
        values["patient_id"] = ctx.patient_for(row.get("patient_id"), f"line {line}")
        records.append(_gas(values, line, ctx))
    return records


def _gas_values(row: dict[str, str], line: int, ctx: Context) -> dict[str, Any]:
    where = f"line {line}"
    pco2 = parse_float(row["pco2"], ctx, where, "pco2")
    po2 = parse_float(row.get("po2", ""), ctx, where, "po2")
    bicarbonate = parse_float(row.get("bicarbonate_mmol_l", ""), ctx, where, "bicarbonate_mmol_l")
    if pco2 is None and bicarbonate is None:
        raise ctx.error("column pco2: empty (a row needs pco2 or bicarbonate_mmol_l)", where)
    factor = _pressure_factor(row["pco2_unit"], pco2 is not None or po2 is not None, ctx, where)
    return {
        "taken_at": _datetime(row["taken_at"], ctx, line, "taken_at"),
        "sample": row["sample"].lower(),
        "pco2_mmhg": _in_mmhg(pco2, factor),
        "po2_mmhg": _in_mmhg(po2, factor),
        "bicarbonate_mmol_l": bicarbonate,
        "ph": parse_float(row.get("ph", ""), ctx, where, "ph"),
        "source": row.get("source") or "blood_gas_csv",
    }


def _pressure_factor(unit: str, needed: bool, ctx: Context, where: str) -> float:
    """mmHg per unit of the row's pressures; the unit may be empty only when the row has none."""
    factor = PRESSURE_UNITS.get(unit.strip().lower())
    if factor is None and (needed or unit.strip()):
        raise ctx.error("column pco2_unit: must be mmHg or kPa", where)
    return factor or 1.0


def _in_mmhg(value: float | None, factor: float) -> float | None:
    return None if value is None else round(value * factor, 3)


def _gas(values: dict[str, Any], line: int, ctx: Context) -> BloodGas:
    try:
        return BloodGas.model_validate(values)
    except ValidationError as exc:
        path, reason = validation_reason(exc)
        raise ctx.error(f"column {GAS_COLUMN.get(path, path)}: {reason}", f"line {line}") from None


# ------------------------------------------------------------------------------------ TcCO2 nights
def parse_tcco2_csv(data: bytes, ctx: Context) -> list[CapnographyNight]:
    """`timestamp,tcpco2_mmhg[,spo2][,pulse]` at any fixed rate; gaps of whole intervals become None
    samples, as for generic oximetry. A night without one plausible TcCO2 reading is refused."""
    patient_id = ctx.require_patient("tcco2_csv")
    header, rows = _table(decode_text(data, ctx), ctx)
    _check_header(header, TC_REQUIRED, set(TC_COLUMNS), ctx)
    if len(rows) > MAX_SAMPLES:
        raise ctx.error(f"recording longer than {MAX_SAMPLES} samples")
    times, lines = [], []
    columns: dict[str, list[float | None]] = {c: [] for c in TC_COLUMNS[1:]}
    for line, cells in rows:
        row = _row_dict(header, cells, line, ctx)
        times.append(_datetime(row["timestamp"], ctx, line, "timestamp"))
        lines.append(line)
        columns["tcpco2_mmhg"].append(_tcpco2(row["tcpco2_mmhg"], ctx, line))
        columns["spo2"].append(clean_spo2(parse_float(row.get("spo2", ""), ctx, f"line {line}", "spo2")))
        columns["pulse"].append(clean_pulse(parse_float(row.get("pulse", ""), ctx, f"line {line}", "pulse")))
    if lines and not plausible_time(times[0]):
        raise ctx.error("column timestamp: date/time must be in the years 1900-2099 (UTC)", f"line {lines[0]}")
    seconds = [(t - times[0]).total_seconds() for t in times]
    interval = infer_interval(seconds, ctx, lines)
    slots = grid_slots(seconds, interval, ctx, lines)
    low, high = TCPCO2_PLAUSIBLE
    if not any(v is not None and low <= v <= high for v in columns["tcpco2_mmhg"]):
        raise ctx.error(f"no valid tcpco2_mmhg samples ({low:g}-{high:g} mmHg expected)")
    size = slots[-1] + 1
    values: dict[str, Any] = {
        "patient_id": patient_id, "start": times[0], "interval_s": interval, "source": "tcco2_csv",
        "tcpco2": spread(columns["tcpco2_mmhg"], slots, size),
        **{c: spread(columns[c], slots, size) for c in ("spo2", "pulse") if c in header},
    }
    return [build(CapnographyNight, values, ctx, None)]


def _tcpco2(cell: str, ctx: Context, line: int) -> float | None:
    value = parse_float(cell, ctx, f"line {line}", "tcpco2_mmhg")
    if value is not None and not 0 <= value <= TCPCO2_MAX:
        raise ctx.error(f"column tcpco2_mmhg: out of range (0-{TCPCO2_MAX:g} mmHg)", f"line {line}")
    return value or None
