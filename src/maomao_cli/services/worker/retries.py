"""Retries waiting for their backoff, recorded in etcd.

A member that queues a retry writes `retries/<schedule>/<epoch>[@<member>].r<n>` with the
attempt's due time, on its claim lease (so a forgotten record expires with the claims).
The retry is claimed like a firing (`firings/...r<n>`, create-only), so whoever retries
it, it runs once; the record goes when its claim is decided. If the queuing member dies
first, any live member adopts the record and claims the retry when it is due; in mode
`everywhere` the retry belongs to its member, and only that member (back again) adopts it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable

from ...frozen import frozen
from ...keys import Keys
from ...models import Schedule
from ...store.base import Store
from .claims import claim_owner

log = logging.getLogger("maomao.worker")

# Queues attempt `attempt` of schedule `name`'s firing at `fire_time`, `delay` s from now.
Queue = Callable[[str, float, int, float], object]


@frozen
class PendingRetry:
    member: str
    process: float  # when the queuing process of the member started
    schedule: str
    fire_time: float
    attempt: int
    at: float  # when the attempt is due (epoch seconds)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "member": self.member,
                "process": self.process,
                "schedule": self.schedule,
                "fire_time": self.fire_time,
                "attempt": self.attempt,
                "at": self.at,
            }
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> PendingRetry | None:
        """The record a value describes; None if it is not one (another member's bytes)."""
        try:
            held = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(held, dict):
            return None
        member, schedule, attempt = held.get("member"), held.get("schedule"), held.get("attempt")
        numbers = [held.get(k) for k in ("process", "fire_time", "at")]
        if not isinstance(member, str) or not isinstance(schedule, str):
            return None
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 2:
            return None
        if not all(_finite(n) for n in numbers):
            return None
        process, fire_time, at = (float(n) for n in numbers)  # type: ignore[arg-type]
        return cls(member, process, schedule, fire_time, attempt, at)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def retry_key(keys: Keys, schedule: Schedule, fire_time: float, attempt: int, member: str) -> str:
    return keys.pending_retry(schedule.name, int(fire_time), attempt, claim_owner(schedule, member))


def adopt(
    store: Store,
    keys: Keys,
    *,
    member: str,
    process: float,
    live: set[str],
    schedule_of: Callable[[str], Schedule | None],
    queue: Queue,
    now: float,
) -> int:
    """Queue here the recorded retries whose member is gone (or is an earlier process of
    this member); returns how many."""
    adopted = 0
    for entry in store.scan(keys.retries()):
        pending = PendingRetry.decode(entry.value)
        if pending is None:
            continue
        schedule = schedule_of(pending.schedule)
        if schedule is None or not _orphaned(pending, schedule, member, process, live):
            continue
        if entry.key != retry_key(
            keys, schedule, pending.fire_time, pending.attempt, pending.member
        ):
            continue  # a record under another key than its own: not ours to trust
        queue(pending.schedule, pending.fire_time, pending.attempt, max(0.0, pending.at - now))
        log.info(
            "adopted retry %d of %s @ %.0f queued by %s",
            pending.attempt,
            pending.schedule,
            pending.fire_time,
            pending.member,
        )
        adopted += 1
    return adopted


def _orphaned(
    pending: PendingRetry, schedule: Schedule, member: str, process: float, live: set[str]
) -> bool:
    if pending.member == member:
        return pending.process != process  # an earlier process of ours queued it
    # A member's own firing in mode everywhere: nobody else retries it.
    return schedule.mode != "everywhere" and pending.member not in live
