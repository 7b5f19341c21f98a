"""Local processes maomao starts or finds by pid (etcd members, workers)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def pid_alive(pid: int, name: bytes | None = None) -> bool:
    """Is `pid` running (and, given `name`, does its command line mention it)? A zombie
    or a recycled pid is not the process we started."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if name is None:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return name in cmdline


def terminate(pid: int, name: bytes | None = None, wait: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it is still there after `wait` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and pid_alive(pid, name):
        time.sleep(0.1)
    if pid_alive(pid, name):
        os.kill(pid, signal.SIGKILL)
