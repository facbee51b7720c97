"""Coverage-guided fuzzing of `ingest.parsers.parse_bytes` with atheris (libFuzzer).

Run: python tests/security/atheris_parsers.py CORPUS_DIR -max_total_time=20
The first input byte picks the format (or format detection from a file name); only ParseError may escape.
"""

import sys

import atheris

with atheris.instrument_imports():
    from ingest.parsers import FORMATS, ParseError, detect_format, parse_bytes

NAMES = ["upload", "s.json", "s.csv", "O2Ring_20260308223000.csv", "O2Ring.bin", "STR.edf", "x_PLD.edf",
         "x_SAD.edf", "x_EVE.edf", "b.fhir.json"]
CHOICES = [*FORMATS, None]
PATIENT = "ALS-001"


def one_input(data: bytes) -> None:
    if not data:
        return
    fmt = CHOICES[data[0] % len(CHOICES)]
    name = NAMES[(data[0] // len(CHOICES)) % len(NAMES)]
    body = data[1:]
    try:
        chosen = fmt or detect_format(name, body)
        parse_bytes(body, name, fmt=chosen, patient_id=PATIENT)
    except ParseError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
