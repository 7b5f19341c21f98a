"""Requested firings: the ones an operator asked for (`schedule trigger`, `schedule
backfill`), kept under <prefix>/requests/ and followed through a watch.

A request becomes a due entry of the timetable with trigger `manual` or `backfill` and
its own nominal time, and from there takes the normal claim path: the firing key of that
nominal time is created once, so a requested firing and a regular one can never both run.
A backfill entry is offered only while this member has a free run thread and holds one
of the schedule's `max_parallel` backfill slots (create-only keys on the member's lease),
so the backfill spreads over the free members and never runs more at once than asked.
Mode `once`: the first member to learn the claim's outcome deletes the request. Mode
`everywhere`: each member claims its own firing; the request expires with its lease.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable

from ...errors import RecordError, Unavailable
from ...jitter import fraction
from ...keys import Keys
from ...models import FiringRequest, Schedule
from ...store.base import Entry, Store
from .claims import selects
from .timetable import Due

log = logging.getLogger("maomao.worker")

# While every slot is taken, look again this often (seconds).
SLOT_RETRY = 0.5


class Requests:
    def __init__(
        self,
        keys: Keys,
        member: str,
        labels: dict[str, str],
        *,
        grace: Callable[[Schedule], float],
    ) -> None:
        self._keys = keys
        self._member = member
        self._labels = labels
        # A trigger older than the schedule's grace window is not run (a member that
        # starts hours later must not fire it); a backfill is past by nature.
        self._grace = grace
        self._lock = threading.Lock()
        self._pending: dict[str, FiringRequest] = {}
        self._offered: set[str] = set()  # offered by this member (never twice)
        self._slots_full_until = 0.0

    def load(self, entries: list[Entry]) -> None:
        """Everything requested (after a (re)connect)."""
        with self._lock:
            self._pending = {}
            for entry in entries:
                self._put(entry.key, entry.value)

    def on_event(self, key: str, value: bytes | None) -> None:
        with self._lock:
            if value is None:
                self._pending.pop(key, None)
                self._offered.discard(key)
            else:
                self._put(key, value)

    def _put(self, key: str, value: bytes) -> None:
        try:
            self._pending[key] = FiringRequest.from_json(value)
        except RecordError as exc:
            log.warning("skipping request %s: %s", key, exc)

    def waiting(self) -> bool:
        with self._lock:
            return any(key not in self._offered for key in self._pending)

    def take(
        self,
        store: Store,
        *,
        now: float,
        free: int,
        schedule_of: Callable[[str], Schedule | None],
        lease: int | None,
    ) -> list[Due]:
        """The requests to claim now, as due entries: every manual one, and backfill ones
        while this member has a free run thread and gets a slot."""
        with self._lock:
            waiting = [(k, r) for k, r in self._pending.items() if k not in self._offered]
        # Members try the backfill's nominal times in orders of their own, so they rarely
        # reach for the same one.
        waiting.sort(key=lambda kr: (kr[1].trigger != "manual", fraction(self._member, kr[0])))
        dues: list[Due] = []
        full: set[str] = set()
        for key, request in waiting:
            schedule = schedule_of(request.schedule)
            if schedule is None:
                continue
            stale = request.trigger == "manual" and now - request.at > self._grace(schedule)
            if stale or not selects(schedule, self._labels):  # not ours: never offered
                with self._lock:
                    self._offered.add(key)
                continue
            slot = None
            if request.trigger == "backfill":
                if free <= 0 or now < self._slots_full_until or request.schedule in full:
                    continue
                slot = self._slot(store, request, lease)
                if slot is None:
                    full.add(request.schedule)
                    continue
                free -= 1
            dues.append(_due(key, request, now, slot))
            with self._lock:
                self._offered.add(key)
        if full:
            self._slots_full_until = now + SLOT_RETRY
        return dues

    def _slot(self, store: Store, request: FiringRequest, lease: int | None) -> str | None:
        value = json.dumps({"member": self._member}).encode()
        for number in range(max(1, request.max_parallel)):
            key = self._keys.backfill_slot(request.schedule, number)
            if store.create(key, value, lease=lease):
                return key
        return None

    def claimed(self, store: Store, due: Due, schedule: Schedule, *, started: bool) -> None:
        """The claim's outcome is known: the request is done with, and a backfill slot
        goes back unless a run holds it."""
        with contextlib.suppress(Unavailable):
            if schedule.mode == "once" and due.request is not None:
                store.delete(due.request)
            if not started:
                self.finished(store, due)

    def finished(self, store: Store, due: Due) -> None:
        """The run of a requested firing is over: free its backfill slot."""
        if due.slot is not None:
            with contextlib.suppress(Unavailable):
                store.delete(due.slot)
            # A slot we freed is one we may take at once: no waiting out SLOT_RETRY (a
            # member that lost a claim would otherwise leave its slot empty for that long).
            self._slots_full_until = 0.0


def _due(key: str, request: FiringRequest, now: float, slot: str | None) -> Due:
    due = Due(now, 0, request.schedule, request.fire_time, 0, request.attempt, request.trigger)
    due.request = key
    # A backfill is limited by its slots, not by the overlap guard (each of its firings
    # would otherwise find the previous one running and be skipped).
    due.force = request.force or request.trigger == "backfill"
    due.slot = slot
    return due
