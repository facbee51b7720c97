"""Runs the worker in a child process and starts it again when it exits abnormally.

After a worker restart, faust has been seen (about one run in three of the fault tests) to report
itself ready with a partition assigned and never fetch it again; resuming the partition did not help,
a fresh process did. The stall watch (`processors/lag.py`) exits with `STALL_EXIT`, and the agent exits
with `CRASH_EXIT` on an error it cannot retry (its fetched events would otherwise wait unacknowledged
until the stall watch fired); a worker that fails at start-up (a broker down at that moment) exits
with 1. This loop starts a new worker after any of these, with backoff. A clean exit, a stop we
forwarded and a configuration error (exit 2: a bad rules file) are passed on. The child dies with its
supervisor (SIGKILL included).
"""

import ctypes
import logging
import signal
import subprocess
import time

from respmon.core.exits import CONFIG_EXIT, CRASH_EXIT, STALL_EXIT

__all__ = ["CONFIG_EXIT", "CRASH_EXIT", "STALL_EXIT", "supervise"]
log = logging.getLogger("respmon.supervise")


def _die_with_parent() -> None:
    """Linux PR_SET_PDEATHSIG: the kernel sends SIGKILL to the child when its supervisor dies."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def supervise(argv: list[str], env: dict[str, str], max_restarts: int = 20, first_delay_s: float = 1.0) -> int:
    child: subprocess.Popen[bytes] | None = None
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    for restart in range(max_restarts + 1):
        # the supervisor starts no threads; PR_SET_PDEATHSIG can only be set in the child
        child = subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent)  # noqa: PLW1509
        code = child.wait()
        if stopping or code in (0, CONFIG_EXIT):
            return code
        why = {STALL_EXIT: "a stalled stream", CRASH_EXIT: "an error it could not retry"}.get(code, f"exit {code}")
        delay = min(30.0, first_delay_s * 2.0 ** min(restart, 5))
        log.error("worker exited; starting a new one", extra={"reason": why, "restart": restart + 1,
                                                              "retry_in_s": delay})
        time.sleep(delay)
    return code
