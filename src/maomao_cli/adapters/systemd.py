"""systemd's notify protocol (sd_notify(3)) in a few lines of socket code: READY=1 once the
worker has loaded its schedules and registered, WATCHDOG=1 from the loop that claims at
half of WATCHDOG_USEC (so a stuck loop gets the service restarted), STATUS= with the
schedules followed and the runs in progress, STOPPING=1 on shutdown.

`SystemdNotify.from_environment()` is None when NOTIFY_SOCKET is not set (not started by
systemd with Type=notify): then nothing is sent at all.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..models import Run

if TYPE_CHECKING:
    from ..services.worker.observer import WorkerView

log = logging.getLogger("maomao.worker")


class Notifier:
    """Sends notify datagrams to NOTIFY_SOCKET (a path, or @name in the abstract space)."""

    def __init__(self, address: str) -> None:
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._lock = threading.Lock()

    def send(self, *lines: str) -> None:
        message = "\n".join(lines).encode()
        with self._lock:
            try:
                self._sock.sendto(message, self._address)
            except OSError as exc:  # systemd gone or the socket replaced: never fatal
                log.debug("sd_notify failed: %s", exc)

    def close(self) -> None:
        self._sock.close()


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Half of WATCHDOG_USEC, in seconds, when the watchdog is on for this process."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (we were started by one that was watched)
    return int(usec) / 2e6


class SystemdNotify:
    """A worker observer that keeps systemd informed."""

    def __init__(
        self,
        notifier: Notifier,
        *,
        watchdog_every: float | None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._notifier = notifier
        self._every = watchdog_every
        self._monotonic = monotonic
        self._last_ping: float | None = None
        self._status = ""
        self._worker: WorkerView | None = None
        self._ready = False

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> SystemdNotify | None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET")
        if not address:
            return None
        return cls(Notifier(address), watchdog_every=watchdog_interval(env), monotonic=monotonic)

    def _status_line(self) -> str:
        if self._worker is None:
            return ""
        schedules = len(self._worker.followed())
        running = self._worker.running()
        etcd = "" if self._worker.etcd_reachable() else "; etcd unreachable, retrying"
        return f"STATUS={schedules} schedule(s), {running} run(s) in progress{etcd}"

    def attach(self, worker: WorkerView) -> None:
        self._worker = worker

    def ready(self) -> None:
        self._ready = True
        self._status = self._status_line()
        self._notifier.send("READY=1", self._status)
        if self._every is not None:
            self._notifier.send("WATCHDOG=1")
            self._last_ping = self._monotonic()

    def turn(self) -> None:
        if not self._ready:
            return
        lines = []
        status = self._status_line()
        if status != self._status:
            self._status = status
            lines.append(status)
        now = self._monotonic()
        if self._every is not None and (
            self._last_ping is None or now - self._last_ping >= self._every
        ):
            self._last_ping = now
            lines.append("WATCHDOG=1")
        if lines:
            self._notifier.send(*lines)

    def stopping(self) -> None:
        self._notifier.send("STOPPING=1", "STATUS=stopping: finishing running runs")

    def claimed(self, schedule: str, *, won: bool, lag: float) -> None:
        pass

    def skipped(self, schedule: str, reason: str) -> None:
        pass

    def missed(self, schedule: str, reason: str) -> None:
        pass

    def finished(self, run: Run) -> None:
        pass

    def spike(self, tool: str) -> None:
        pass

    def close(self) -> None:
        self._notifier.close()
