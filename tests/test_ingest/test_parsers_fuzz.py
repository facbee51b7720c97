"""Random and mutated bytes must only ever raise ParseError, for every format (never a crash).

Deterministic by default (CI); RESPMON_FUZZ=1 explores many more random examples.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime

import pytest
from device_files import contec_spo2, o2ring_bin
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_testlib import AIRCURVE, AIRCURVE_DAY, DATA, SYN

from ingest import parsers
from ingest.parsers import FORMATS, ParseError, ParserFault, detect, parse_bytes

DEEP = os.environ.get("RESPMON_FUZZ") == "1"
FUZZ = settings(
    max_examples=400 if DEEP else 25,
    derandomize=not DEEP,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _head_lines(name: str, lines: int) -> bytes:
    return b"".join((SYN / name).read_bytes().splitlines(keepends=True)[:lines])


SEEDS: dict[str, tuple[str, bytes]] = {
    "spirometry_json": ("s.json", (SYN / "spirometry.json").read_bytes()),
    "spirometry_csv": ("s.csv", (SYN / "spirometry.csv").read_bytes()),
    "niv_csv": ("n.csv", (SYN / "niv.csv").read_bytes()),
    "alsfrs_json": ("a.json", (SYN / "alsfrs_flat.json").read_bytes()),
    "fhir_bundle": ("b.json", (SYN / "fhir_bundle.json").read_bytes()),
    "o2ring_csv": ("O2Ring.csv", _head_lines("O2Ring_20260308223000.csv", 60)),
    "o2ring_bin": ("O2Ring.bin", (SYN / "O2Ring_20260310223000.bin").read_bytes()[: 40 + 5 * 200]),
    "oximetry_csv": ("o.csv", _head_lines("oximetry_generic.csv", 60)),
    "resmed_str": ("STR.edf", (AIRCURVE / "STR.edf").read_bytes()),
    "resmed_pld": ("x_PLD.edf", (AIRCURVE_DAY / "20250202_223725_PLD.edf").read_bytes()),
    "resmed_sad": ("x_SAD.edf", (AIRCURVE_DAY / "20250202_223725_SAD.edf").read_bytes()),
    "resmed_eve": ("x_EVE.edf", (AIRCURVE_DAY / "20250202_223717_EVE.edf").read_bytes()),
    "blood_gas_csv": ("g.csv", (SYN / "blood_gas.csv").read_bytes()),
    "tcco2_csv": ("t.csv", _head_lines("tcco2_night.csv", 60)),
    "lowenstein_wmedf": ("signal_001.wmedf",
                         (DATA / "lowenstein" / "signal_real.wmedf").read_bytes()[: 256 * 19 + 54 * 700]),
    "contec_spo2": ("night.SpO2",
                    contec_spo2(datetime(2024, 10, 13, 23, 22, 52), [(95, 60)] * 150 + [(127, 255)] * 5)),
}
assert set(SEEDS) == set(FORMATS)

INTERESTING = [b"", b"-", b"-1", b"--", b"0", b"255", b"1e999", b"nan", b",", b"\n", b'"', b"\xff", b"\xc2\xb0",
               b"{", b"]", b"null", b"99999999999", b"Patient/", b"E",
               b"inf", b"-Infinity", b"NaN", b"1e308", b"-1e308", b"9" * 400, b"true", b"false",
               b"0001-01-01T00:00:00Z", b"9999-12-31T23:59:59-12:00", b"0001-01-01", b"9999-12-31"]  # fmt: skip
EXTREME_TIMES = ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00",
                 "9999-12-31T23:59:59.999+00:00", "9999-12-31", "0001-01-01", "1899-12-31T23:59:59Z", "2100-01-01"]


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """The seed with a few byte edits (biased towards the header), a splice or a truncation."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        limit = len(data) - 1 if draw(st.booleans()) else min(len(data) - 1, 4096)
        pos = draw(st.integers(0, limit))
        action = draw(st.sampled_from(["byte", "insert", "delete", "truncate"]))
        if action == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif action == "insert":
            data[pos:pos] = draw(st.sampled_from(INTERESTING) | st.binary(max_size=8))
        elif action == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        else:
            del data[pos:]
    return bytes(data)


SELF_IDENTIFYING = {"spirometry_json", "spirometry_csv", "niv_csv", "alsfrs_json", "fhir_bundle", "blood_gas_csv"}
"""Files that name their patient: no patient id is passed, so a mismatch does not stop parsing early."""


def _only_parse_errors(data: bytes, name: str, fmt: str | None, seed_fmt: str) -> None:
    try:
        records = parse_bytes(data, name, fmt=fmt, patient_id=None if seed_fmt in SELF_IDENTIFYING else "P1")
    except ParserFault as exc:  # a ParseError too (so ingest answers 422), but it means a parser bug
        raise AssertionError(f"parser bug on fuzzed input: {exc}") from exc
    except ParseError as exc:
        assert str(exc).startswith(name) and "\n" not in str(exc)
    else:
        assert isinstance(records, list)


@pytest.mark.parametrize("fmt", FORMATS)
def test_mutated_bytes_raise_only_parse_error(fmt: str) -> None:
    name, seed = SEEDS[fmt]

    @FUZZ
    @given(data=mutated(seed), detect=st.booleans())
    def run(data: bytes, detect: bool) -> None:
        _only_parse_errors(data, name, None if detect else fmt, fmt)

    run()


@pytest.mark.parametrize("fmt", FORMATS)
def test_random_bytes_raise_only_parse_error(fmt: str) -> None:
    name, seed = SEEDS[fmt]

    @FUZZ
    @given(data=st.binary(max_size=512)
           | st.builds(lambda n, tail: seed[:n] + tail, st.integers(0, 400), st.binary(max_size=64)))
    def run(data: bytes) -> None:
        _only_parse_errors(data, name, fmt, fmt)

    run()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | st.text(max_size=12)
    | st.sampled_from([*EXTREME_TIMES, 1e308, -1e308, 10**400, float("nan"), float("inf"), True]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    """Every location in a JSON document (object keys and list indexes)."""
    found = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def json_mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """The seed document with one to three values replaced by arbitrary JSON (valid syntax, bad content)."""
    doc = json.loads(seed)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)[1:]))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = draw(JSON_VALUES)
    return json.dumps(doc).encode()


@st.composite
def csv_mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """The seed CSV with a few cells replaced by awkward values (valid CSV, bad content)."""
    rows = [line.split(b",") for line in seed.splitlines()]
    cells = (st.sampled_from(INTERESTING) | st.text(max_size=10).map(str.encode)
             | st.integers(-999, 99999).map(lambda n: str(n).encode()) | st.sampled_from(EXTREME_TIMES).map(str.encode))
    for _ in range(draw(st.integers(1, 4))):
        row = draw(st.integers(0, len(rows) - 1))
        if rows[row]:
            rows[row][draw(st.integers(0, len(rows[row]) - 1))] = draw(cells)
    return b"\n".join(b",".join(r) for r in rows) + b"\n"


@pytest.mark.parametrize("fmt", ["spirometry_json", "alsfrs_json", "fhir_bundle"])
def test_mutated_json_content_raises_only_parse_error(fmt: str) -> None:
    name, seed = SEEDS[fmt]

    @FUZZ
    @given(data=json_mutated(seed), detect=st.booleans())
    def run(data: bytes, detect: bool) -> None:
        _only_parse_errors(data, name, None if detect else fmt, fmt)

    run()


@pytest.mark.parametrize("fmt", ["spirometry_csv", "niv_csv", "o2ring_csv", "oximetry_csv", "blood_gas_csv",
                                 "tcco2_csv"])
def test_mutated_csv_cells_raise_only_parse_error(fmt: str) -> None:
    name, seed = SEEDS[fmt]

    @FUZZ
    @given(data=csv_mutated(seed), detect=st.booleans())
    def run(data: bytes, detect: bool) -> None:
        _only_parse_errors(data, name, None if detect else fmt, fmt)

    run()


EDF_FIELDS = {"header bytes": (184, 8), "number of data records": (236, 8), "data record duration": (244, 8),
              "number of signals": (252, 4)}
EDF_VALUES = ["1e-9", "0", "-1", "-2", "0.001", "86401", "1e308", "nan", "inf", "99999999", "", "abc", "1e-320",
              "  7", "+60", "0x10", "60.00"]


@st.composite
def edf_header_mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """The seed EDF with one or two ASCII header fields (fixed part, or a signal's samples per record)
    rewritten as EDF writes them, left-aligned and space-padded."""
    data = bytearray(seed)
    signals = int(seed[252:256])
    for _ in range(draw(st.integers(1, 2))):
        if draw(st.booleans()):
            offset, width = EDF_FIELDS[draw(st.sampled_from(sorted(EDF_FIELDS)))]
        else:
            offset, width = 256 + signals * 216 + 8 * draw(st.integers(0, signals - 1)), 8
        value = draw(st.sampled_from(EDF_VALUES) | st.integers(-10, 10**7).map(str))
        data[offset : offset + width] = value.encode("ascii")[:width].ljust(width)
    return bytes(data)


@pytest.mark.parametrize("fmt", ["resmed_str", "resmed_pld", "resmed_sad", "resmed_eve", "lowenstein_wmedf"])
def test_mutated_edf_header_fields_raise_only_parse_error(fmt: str) -> None:
    name, seed = SEEDS[fmt]

    @FUZZ
    @given(data=edf_header_mutated(seed), detect=st.booleans())
    def run(data: bytes, detect: bool) -> None:
        _only_parse_errors(data, name, None if detect else fmt, fmt)

    run()


@pytest.mark.parametrize(("fmt", "field", "value"), [
    ("fhir_bundle", ("entry", 12, "resource", "effectiveDateTime"), "0001-01-01T00:00:00Z"),
    ("fhir_bundle", ("entry", 12, "resource", "effectiveDateTime"), "9999-12-31T23:59:59-12:00"),
    ("fhir_bundle", ("entry", 4, "resource", "valueQuantity"), {"value": "9e999999", "unit": "kPa"}),
    ("spirometry_json", (0, "taken_at"), "9999-12-31T23:59:59-12:00"),
    ("spirometry_json", (0, "fvc_l"), float("nan")),
    ("spirometry_json", (0, "fvc_l"), True),
    ("alsfrs_json", ("taken_at",), "0001-01-01T00:00:00+14:00"),
    ("alsfrs_json", ("item_1",), True),
])
def test_known_hostile_json_values_raise_only_parse_error(fmt: str, field: tuple, value: object) -> None:
    """The probe's findings (issue 13) as fixed cases, whatever the fuzzing draws."""
    name, seed = SEEDS[fmt]
    doc = json.loads(seed)
    parent = doc
    for part in field[:-1]:
        parent = parent[part]
    parent[field[-1]] = value
    with pytest.raises(ParseError) as err:
        parse_bytes(json.dumps(doc).encode(), name, fmt=fmt)
    assert not isinstance(err.value, ParserFault), str(err.value)


def _parser_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("ingest.parsers")]


def test_unforeseen_parser_failure_is_a_parse_error(monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A parser bug on some upload answers 422 (the upload is kept) instead of a 503 retried forever;
    its log line says where, never the exception's text, which may quote the upload."""

    def broken(data: bytes, ctx: object) -> list:
        raise OverflowError("date value out of range for ALS-003, fvc_l 2.85")

    monkeypatch.setitem(parsers.PARSERS, "spirometry_json", broken)
    with caplog.at_level(logging.ERROR), pytest.raises(ParserFault) as err:
        parse_bytes(SEEDS["spirometry_json"][1], "s.json", fmt="spirometry_json")
    assert isinstance(err.value, ParseError)
    assert str(err.value) == "s.json: spirometry_json parser failed unexpectedly (OverflowError)"
    (line,) = _parser_lines(caplog)
    assert line.error == "OverflowError" and line.raised_at.startswith("test_parsers_fuzz.py:")
    assert "ALS-003" not in repr(vars(line)) and "2.85" not in repr(vars(line))


def test_unforeseen_detection_failure_is_a_parse_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(filename: str, data: bytes) -> str:
        raise KeyError("ALS-003")

    monkeypatch.setattr(detect, "_detect", broken)
    with pytest.raises(ParserFault, match=r"^s\.json: format detection failed unexpectedly \(KeyError\)$"):
        parse_bytes(SEEDS["spirometry_json"][1], "s.json")


O2RING_WITH_SUMMARY = o2ring_bin(datetime(2026, 3, 10, 22, 30), [(95, 60)] * 100 + [(88, 70)] * 20, mean=94,
                                 lowest=87, drops3=53, drops4=22, t90_s=396)


@FUZZ
@given(data=mutated(O2RING_WITH_SUMMARY[:40]).map(lambda head: head[:40].ljust(40, b"\0") + O2RING_WITH_SUMMARY[40:]))
def test_mutated_o2ring_summary_never_refuses_the_night(data: bytes) -> None:
    """The ring's summary bytes are the device's opinion: any value there leaves a readable night readable
    (an implausible summary is dropped with a note); only a broken date or version refuses the file."""
    try:
        (night,) = parse_bytes(data, "O2Ring.bin", fmt="o2ring_bin", patient_id="P1")
    except ParserFault as exc:
        raise AssertionError(f"parser bug on fuzzed input: {exc}") from exc
    except ParseError as exc:
        assert any(w in str(exc) for w in ("byte 0", "byte 2", "field start")), str(exc)  # version or start
    else:
        assert len(night.spo2) == 120


@FUZZ
@given(pairs=st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)), min_size=1, max_size=300),
       offset=st.integers(2, 2000))
def test_contec_samples_round_trip(pairs: list[tuple[int, int]], offset: int) -> None:
    """Property: every pair written is read back in place, a reading as itself and any no-reading code
    (127 SpO2, 255 pulse, 0, out of range) as None; a file of no readings at all is the one-line error."""
    data = contec_spo2(datetime(2024, 10, 13, 23, 22, 52), pairs, offset=offset)
    try:
        (night,) = parse_bytes(data, "n.SpO2", patient_id="P1")
    except ParseError as exc:
        assert not isinstance(exc, ParserFault) and "no valid SpO2 samples" in str(exc)
        assert all(not 0 < s <= 100 for s, _ in pairs)
        return
    assert len(night.spo2) == len(pairs)
    assert list(night.spo2) == [float(s) if 0 < s <= 100 else None for s, _ in pairs]
    assert list(night.pulse) == [float(p) if 0 < p <= 250 else None for _, p in pairs]


@FUZZ
@given(cut=st.integers(0, 256 * 19 + 54 * 3), tail=st.binary(max_size=60))
def test_wmedf_cut_anywhere_is_a_night_or_one_line_error(cut: int, tail: bytes) -> None:
    """Property: the real file cut at any byte (the device still writing) and followed by anything either
    reads as whole records or fails with one line, never a crash or a mis-sized record."""
    name, seed = SEEDS["lowenstein_wmedf"]
    _only_parse_errors(seed[:cut] + tail, name, "lowenstein_wmedf", "lowenstein_wmedf")
