"""A short, bounded atheris (libFuzzer) run over the parsers: any exception other than ParseError is
a crash, which libFuzzer reports with the input that caused it (exit code != 0)."""

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SYN = ROOT / "tests" / "data" / "synthetic"
SECONDS = 20


@pytest.mark.timeout(SECONDS + 90)
def test_parsers_raise_only_parse_error_under_atheris(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("atheris", reason="atheris is not installed (pip install atheris; wheels for CPython 3.11)")
    from ingest.parsers import FORMATS

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    seeds = {"spirometry_json": "spirometry.json", "spirometry_csv": "spirometry.csv", "niv_csv": "niv.csv",
             "alsfrs_json": "alsfrs_flat.json", "fhir_bundle": "fhir_bundle.json",
             "o2ring_csv": "O2Ring_20260308223000.csv", "o2ring_bin": "O2Ring_20260310223000.bin",
             "oximetry_csv": "oximetry_generic.csv"}
    formats = list(FORMATS)
    for fmt, name in seeds.items():  # the first byte picks the format in atheris_parsers.one_input
        (corpus / fmt).write_bytes(bytes([formats.index(fmt)]) + (SYN / name).read_bytes()[:4000])
    artifacts = tmp_path / "crashes"
    artifacts.mkdir()
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "security" / "atheris_parsers.py"), str(corpus),
         f"-max_total_time={SECONDS}", "-rss_limit_mb=2048", "-max_len=8192", "-timeout=10",
         f"-artifact_prefix={artifacts}/"],
        cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 60, env={"PYTHONPATH": str(ROOT),
                                                                            "PATH": "/usr/bin:/bin"},
        check=False)  # a crash is reported below with the fuzzer's output
    tail = "\n".join(run.stderr.splitlines()[-40:])
    crashes = sorted(p.name for p in artifacts.iterdir())
    if crashes:
        kept = ROOT / ".stack" / "atheris-crashes"
        kept.mkdir(parents=True, exist_ok=True)
        for p in artifacts.iterdir():
            shutil.copy(p, kept / p.name)
    assert run.returncode == 0 and not crashes, f"crash inputs {crashes} (copied to .stack/atheris-crashes)\n{tail}"
    assert "Done" in run.stderr or "DONE" in run.stderr or "#" in run.stderr, tail
