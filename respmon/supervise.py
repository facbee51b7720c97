"""Runs the worker in a child process and starts it again when it exits because its stream stalled.

After a worker restart, faust has been seen (about one run in three of the fault tests) to report
itself ready with a partition assigned and never fetch it again; resuming the partition did not help,
a fresh process did. The stall watch (`processors/lag.py`) exits with `STALL_EXIT`; this loop then
starts a new worker. Any other exit is passed on. The child dies with its supervisor (SIGKILL included).
"""

import ctypes
import logging
import signal
import subprocess
import time

STALL_EXIT = 75
log = logging.getLogger("respmon.supervise")


def _die_with_parent() -> None:
    """Linux PR_SET_PDEATHSIG: the kernel sends SIGKILL to the child when its supervisor dies."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def supervise(argv: list[str], env: dict[str, str], max_restarts: int = 20) -> int:
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: object) -> None:
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for restart in range(max_restarts + 1):
        child = subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent)
        code = child.wait()
        if code != STALL_EXIT:
            return code
        log.error("worker exited on a stalled stream; starting a new one", extra={"restart": restart + 1})
        time.sleep(1)
    return STALL_EXIT
