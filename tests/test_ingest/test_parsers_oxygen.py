"""Issue 12: supplemental oxygen reaches the records (the rules count oxygen nights and read them as worse),
and a leak whose kind the source does not say is `unknown`, never compared with ResMed's 24 L/min."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from ingest_testlib import AIRSENSE, SYN

from ingest.parsers import ParseError, detect_format, parse_bytes, parse_bytes_with_notes, parse_path
from schemas import NivNight, OximetryNight

OXI_HEADER = "timestamp,spo2,pulse"
BUNDLE = json.loads((SYN / "fhir_bundle.json").read_text())
O2_FLOW = {"coding": [{"system": "http://loinc.org", "code": "3151-8", "display": "Inhaled oxygen flow rate"}]}


def oxi(flows: list[str] | None) -> bytes:
    """Four 1-s readings; `flows` adds the o2_lpm column with these cells."""
    header = OXI_HEADER + ("" if flows is None else ",o2_lpm")
    rows = [f"2026-03-01T22:00:0{i}Z,95,60" + ("" if flows is None else f",{flows[i]}") for i in range(4)]
    return ("\n".join([header, *rows]) + "\n").encode()


def one(data: bytes, **kw: Any) -> Any:
    (record,) = parse_bytes(data, "night.csv", patient_id="P1", **kw)
    return record


@pytest.mark.parametrize(("flows", "on_o2", "lpm"), [
    (None, None, None),                  # no column: not said
    (["", "", "", ""], None, None),      # empty cells: not said
    (["0", "0", "0", "0"], False, 0.0),  # room air, said
    (["0", "2", "2", ""], True, 2.0),    # oxygen on part of the night: on oxygen, at its highest flow
])
def test_oximetry_csv_oxygen_column(flows: list[str] | None, on_o2: bool | None, lpm: float | None) -> None:
    night = one(oxi(flows))
    assert isinstance(night, OximetryNight) and (night.supplemental_o2, night.o2_lpm) == (on_o2, lpm)
    assert night.spo2 == [95.0] * 4


def test_oximetry_csv_with_oxygen_is_detected_and_checked() -> None:
    assert detect_format("night.csv", oxi(["1", "1", "1", "1"])) == "oximetry_csv"
    with pytest.raises(ParseError, match=r"line 3: column o2_lpm: must not be negative"):
        one(oxi(["1", "-1", "1", "1"]))
    with pytest.raises(ParseError, match=r"line 2: column o2_lpm: not a number"):
        one(oxi(["x", "1", "1", "1"]))


def test_niv_csv_oxygen_and_leak_kind() -> None:
    text = (b"patient_id,night_date,usage_hours,leak_p95_lpm,o2_lpm\nP1,2026-03-01,7,40,2\n"
            b"P1,2026-03-02,7,40,\n")
    first, second = niv_nights(text)
    assert isinstance(first, NivNight) and first.o2_lpm == 2.0 and second.o2_lpm is None
    assert first.leak_kind == second.leak_kind == "unknown"  # the source does not say: never compared with 24
    said = b"patient_id,night_date,usage_hours,leak_p95_lpm,leak_kind\nP1,2026-03-01,7,30,Total\n"
    assert niv_nights(said)[0].leak_kind == "total"


def niv_nights(data: bytes) -> list[NivNight]:
    records = parse_bytes(data, "niv.csv")
    assert all(isinstance(r, NivNight) for r in records)
    return [r for r in records if isinstance(r, NivNight)]


def test_resmed_leak_is_said_to_be_unintentional() -> None:
    nights = [r for r in parse_path(AIRSENSE / "STR.edf", patient_id="P1") if isinstance(r, NivNight)]
    assert nights and {n.leak_kind for n in nights} == {"unintentional"}


def _with_o2(component: bool) -> dict[str, Any]:
    """The synthetic bundle with an oxygen flow of 2 L/min at the oximetry recording's time."""
    bundle = copy.deepcopy(BUNDLE)
    spo2 = bundle["entry"][9]["resource"]
    flow = {"code": O2_FLOW, "valueQuantity": {"value": 2, "unit": "L/min", "system": "http://unitsofmeasure.org",
                                                "code": "L/min"}}
    if component:
        spo2["component"] = [flow]
    else:
        obs = {"resourceType": "Observation", "status": "final", "subject": spo2["subject"],
               "effectiveDateTime": spo2["effectiveDateTime"], **flow}
        bundle["entry"].append({"fullUrl": "urn:uuid:o2", "resource": obs})
    return bundle


@pytest.mark.parametrize("component", [True, False], ids=["component", "observation"])
def test_fhir_inhaled_oxygen_flow_marks_the_night(component: bool) -> None:
    records, notes = parse_bytes_with_notes(json.dumps(_with_o2(component)).encode(), "bundle.json")
    (night,) = [r for r in records if isinstance(r, OximetryNight)]
    assert (night.supplemental_o2, night.o2_lpm) == (True, 2.0)
    assert not any("3151-8" in n for n in notes)


def test_fhir_oxygen_flow_without_a_recording_is_noted() -> None:
    bundle = _with_o2(component=False)
    bundle["entry"][-1]["resource"]["effectiveDateTime"] = "2026-03-05T10:00:00+01:00"
    records, notes = parse_bytes_with_notes(json.dumps(bundle).encode(), "bundle.json")
    assert all(getattr(r, "o2_lpm", None) is None for r in records)
    assert any("inhaled oxygen flow without an oximetry or NIV recording" in n for n in notes)


def test_the_uploads_stated_flow_fills_what_the_file_does_not_say() -> None:
    """`?o2_lpm=` on an upload: ingest passes it as `o2_lpm`; a file's own value wins."""
    def oxygen(data: bytes, filename: str, **kw: Any) -> tuple[bool | None, float | None]:
        (record,), _ = parse_bytes_with_notes(data, filename, **kw)
        assert isinstance(record, (OximetryNight, NivNight))
        return (record.supplemental_o2 if isinstance(record, OximetryNight) else None), record.o2_lpm

    assert oxygen(oxi(None), "n.csv", patient_id="P1", o2_lpm=1.5) == (True, 1.5)
    assert oxygen(oxi(["0"] * 4), "n.csv", patient_id="P1", o2_lpm=1.5) == (False, 0.0)
    assert oxygen(oxi(None), "n.csv", patient_id="P1", o2_lpm=0) == (False, 0.0)
    assert oxygen(b"patient_id,night_date,usage_hours\nP1,2026-03-01,7\n", "niv.csv", o2_lpm=2) == (None, 2.0)
    with pytest.raises(ParseError, match="o2_lpm must be from 0 to 30 L/min"):
        parse_bytes_with_notes(oxi(None), "n.csv", patient_id="P1", o2_lpm=31)
