"""The worker's supervisor: a crashed, stalled or failed-to-start worker is started again; a clean exit
and a configuration error are not (a bad rules file would only fail again)."""

import signal
import sys
from pathlib import Path

import pytest

from respmon.supervise import CONFIG_EXIT, CRASH_EXIT, STALL_EXIT, supervise

CHILD = """
import sys
from pathlib import Path
runs = Path(sys.argv[1])
codes = [int(c) for c in sys.argv[2].split(",")]
n = len(runs.read_text().splitlines()) if runs.exists() else 0
runs.write_text(runs.read_text() + "run\\n" if runs.exists() else "run\\n")
sys.exit(codes[min(n, len(codes) - 1)])
"""


def run(tmp_path: Path, codes: list[int], max_restarts: int = 20) -> tuple[int, int]:
    runs = tmp_path / "runs"
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}  # supervise installs its own
    try:
        code = supervise([sys.executable, "-c", CHILD, str(runs), ",".join(map(str, codes))], {},
                         max_restarts=max_restarts, first_delay_s=0.01)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return code, len(runs.read_text().splitlines())


@pytest.mark.parametrize("failure", [STALL_EXIT, CRASH_EXIT, 1])
def test_an_abnormal_exit_starts_a_new_worker(tmp_path: Path, failure: int) -> None:
    assert run(tmp_path, [failure, failure, 0]) == (0, 3)


@pytest.mark.parametrize("final", [0, CONFIG_EXIT])
def test_a_clean_exit_or_a_configuration_error_is_passed_on(tmp_path: Path, final: int) -> None:
    assert run(tmp_path, [final, 0]) == (final, 1)


def test_it_gives_up_after_max_restarts_with_the_last_code(tmp_path: Path) -> None:
    assert run(tmp_path, [CRASH_EXIT], max_restarts=3) == (CRASH_EXIT, 4)
