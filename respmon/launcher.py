"""Start the services as child processes and wait until they answer: used by the demo and the tests."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None,
              status: int | None = None) -> None:
    """Poll `url` until it answers (below 500, or exactly `status`); fail early if `proc` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with code {proc.returncode}")
        try:
            code = httpx.get(url, timeout=1).status_code
            if (code == status) if status is not None else (code < 500):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s")


@contextmanager
def service(command: list[str], env: dict[str, str], health_url: str, log_path: Path,
            timeout_s: float = 90) -> Iterator[subprocess.Popen[bytes]]:
    """Run `python -m respmon <command>` with `env` added, yield once `health_url` answers, stop on exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "respmon", *command], env={**os.environ, **env},
                                stdout=log_file, stderr=subprocess.STDOUT)
    try:
        try:
            wait_http(health_url, timeout_s, proc)
        except (RuntimeError, TimeoutError) as error:
            tail = log_path.read_text(errors="replace").splitlines()[-25:]
            raise RuntimeError(f"{' '.join(command)} did not start: {error}\n" + "\n".join(tail)) from None
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
