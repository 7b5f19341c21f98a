"""A clock for tests (implements maomao_cli.ports.Clock): time moves only when the test
advances it, and then at once.

`advance` moves time forward from one waiter's deadline to the next. Before each step it
waits until every thread that has ever waited on this clock (and is still alive) is
waiting again, with its deadline ahead and its event unset: the code under test has
reacted to each moment before the next comes, as in real time, only without the waiting.
"""

from __future__ import annotations

import threading
import time

START = 1_900_000_000.0  # 2030-03-17T17:46:40Z, a whole second
# threading.Event cannot tell anyone it was set, so a waiter looks at its event again
# this often (real seconds). Only the fake polls; the code under test never sleeps.
POLL = 0.002
# How long (real seconds) the threads may take to come back to the clock.
SETTLE_LIMIT = 10.0


class FakeClock:
    def __init__(self, start: float = START) -> None:
        self._start = start
        self._micros = 0  # integer microseconds since start: sums are exact
        self._cond = threading.Condition()
        # Threads in wait: their deadline (micros) and event.
        self._asleep: dict[threading.Thread, tuple[int, threading.Event]] = {}
        self._known: set[threading.Thread] = set()  # every thread that has waited

    # The port ------------------------------------------------------------------

    def now(self) -> float:
        return self._start + self._micros / 1e6

    def monotonic(self) -> float:
        return self._micros / 1e6

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if event.is_set() or timeout <= 0:
            return event.is_set()
        me = threading.current_thread()
        with self._cond:
            # To the nearest microsecond (a wait until a due time computed as a difference
            # of floats ends at that time, not just after it), and at least one.
            deadline = self._micros + max(1, round(timeout * 1e6))
            self._asleep[me] = (deadline, event)
            self._known.add(me)
            self._cond.notify_all()
            try:
                while not event.is_set() and self._micros < deadline:
                    self._cond.wait(POLL)
            finally:
                del self._asleep[me]
        return event.is_set()

    # For the test ----------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, stopping at every waiter's deadline on the way."""
        target = self._micros + round(seconds * 1e6)
        with self._cond:
            while True:
                self._settle()
                deadlines = [d for d, _ in self._asleep.values() if d <= target]
                self._micros = min(deadlines, default=target)
                self._cond.notify_all()
                if self._micros >= target:
                    self._settle()
                    return

    def wait_for_waiters(self, count: int) -> None:
        """Block (in real time, bounded) until `count` threads are waiting on the clock."""
        limit = time.monotonic() + SETTLE_LIMIT
        with self._cond:
            while len(self._asleep) < count:
                if time.monotonic() > limit:
                    raise AssertionError(
                        f"{len(self._asleep)} thread(s) wait on the clock, not {count}"
                    )
                self._cond.wait(POLL)

    def _busy(self) -> list[threading.Thread]:
        """Known threads that are not (or not for long) waiting on the clock."""
        self._known = {t for t in self._known if t.is_alive()}
        busy = []
        for thread in self._known:
            entry = self._asleep.get(thread)
            if entry is None or entry[1].is_set() or entry[0] <= self._micros:
                busy.append(thread)
        return busy

    def _settle(self) -> None:
        """Wait (holding the condition, which waiting releases) until no known thread
        is busy."""
        limit = time.monotonic() + SETTLE_LIMIT
        while busy := self._busy():
            if time.monotonic() > limit:
                names = ", ".join(t.name for t in busy)
                raise AssertionError(f"thread(s) did not come back to the clock: {names}")
            self._cond.wait(POLL)
