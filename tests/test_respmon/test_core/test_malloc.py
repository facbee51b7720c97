"""respmon/core/malloc.py: with the thresholds raised, parsing a night in a worker thread (as ingest does,
in its thread pool) stops faulting fresh pages in from the kernel on every upload."""

import subprocess
import sys
from pathlib import Path

NIGHT = Path(__file__).resolve().parents[2] / "data" / "synthetic" / "O2Ring_20260308223000.csv"
PARSES = 50

PROGRAM = f"""
import resource, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from ingest.parsers import parse_bytes
from respmon.core.malloc import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
body = Path({str(NIGHT)!r}).read_bytes()
pool = ThreadPoolExecutor(4)
def parse():
    return parse_bytes(body, "O2Ring_20260308223000.csv", patient_id="P1")
for _ in range(10):
    pool.submit(parse).result()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({PARSES}):
    pool.submit(parse).result()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults_per_parse(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.strip()) / PARSES


def test_a_night_parsed_in_a_thread_reuses_freed_pages_once_the_thresholds_are_raised() -> None:
    untuned, tuned = _faults_per_parse("default"), _faults_per_parse("tuned")
    assert untuned >= 50  # glibc's defaults: the night's buffers come back as fresh pages on every upload
    assert tuned < 5  # the same pages again

