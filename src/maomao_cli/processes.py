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


def end_stopped_worker(grace: float = 10.0) -> None:
    """End the process of a worker that has stopped cleanly (runs recorded, member lease
    revoked): exit 0 now, never returning.

    Threads other than daemons get `grace` s to finish; any still busy are named in the
    log (a library thread stuck in a call must not keep a stopped worker alive until a
    service manager kills it). The interpreter's own finalization is skipped: gRPC's
    channel teardown there can deadlock (grpc/grpc#17001), and a worker was seen in CI to
    log "stopped" and then hang until it was killed. Nothing is left to finalize: logs
    and output are flushed here.
    """
    import logging
    import sys
    import threading

    main = threading.main_thread()
    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threading.enumerate() if t is not main and not t.daemon]
    if stuck:
        logging.getLogger("maomao").warning(
            "exiting with thread(s) still busy after %.0fs: %s", grace, ", ".join(stuck)
        )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
