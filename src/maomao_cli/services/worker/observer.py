"""What the worker tells whoever watches it (metrics, the service manager): a claim's
outcome, a skipped or missed firing, a finished run, each turn of the loop that claims,
ready and stopping. The worker calls these at its claim, run and finish points and never
depends on what is done with them; an observer must be quick and must not raise."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ...models import Run, Schedule

log = logging.getLogger("maomao.worker")


class WorkerView(Protocol):
    """What an observer may ask the worker at any time (from any thread)."""

    def followed(self) -> list[Schedule]: ...

    def running(self) -> int: ...

    def etcd_reachable(self) -> bool: ...


class WorkerObserver(Protocol):
    def attach(self, worker: WorkerView) -> None: ...

    def claimed(self, schedule: str, *, won: bool, lag: float) -> None:
        """One claim answered: won (busy counts: this member records it) or lost; lag is
        the seconds from the firing's nominal time to the claim."""

    def skipped(self, schedule: str, reason: str) -> None:
        """A won firing not run: reason "overlap"."""

    def missed(self, schedule: str, reason: str) -> None:
        """A firing recorded as missed: reason "beyond_grace"."""

    def finished(self, run: Run) -> None: ...

    def spike(self, tool: str) -> None: ...

    def ready(self) -> None:
        """Schedules loaded and the member registered."""

    def turn(self) -> None:
        """One turn of the loop that claims (at least once a second while it is alive)."""

    def stopping(self) -> None: ...


class NoObserver:
    def attach(self, worker: WorkerView) -> None:
        pass

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

    def ready(self) -> None:
        pass

    def turn(self) -> None:
        pass

    def stopping(self) -> None:
        pass


class Observers:
    """Several observers as one; one that raises is logged and never stops the worker."""

    def __init__(self, observers: Sequence[WorkerObserver]) -> None:
        self._observers = list(observers)

    def _each(self, method: str, *args: object, **kwargs: object) -> None:
        for observer in self._observers:
            try:
                getattr(observer, method)(*args, **kwargs)
            except Exception:  # an observer must never take the worker down
                log.exception("worker observer %s.%s failed", type(observer).__name__, method)

    def attach(self, worker: WorkerView) -> None:
        self._each("attach", worker)

    def claimed(self, schedule: str, *, won: bool, lag: float) -> None:
        self._each("claimed", schedule, won=won, lag=lag)

    def skipped(self, schedule: str, reason: str) -> None:
        self._each("skipped", schedule, reason)

    def missed(self, schedule: str, reason: str) -> None:
        self._each("missed", schedule, reason)

    def finished(self, run: Run) -> None:
        self._each("finished", run)

    def spike(self, tool: str) -> None:
        self._each("spike", tool)

    def ready(self) -> None:
        self._each("ready")

    def turn(self) -> None:
        self._each("turn")

    def stopping(self) -> None:
        self._each("stopping")


@dataclass
class Observing:
    """The observers of one worker process and what to close when it is done."""

    observer: WorkerObserver = field(default_factory=NoObserver)
    metrics_address: str | None = None  # where /metrics is served, if it is
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception:  # closing must not hide how the worker ended
                log.exception("closing a worker observer failed")
