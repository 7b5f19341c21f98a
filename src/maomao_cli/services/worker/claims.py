"""Claim building: what this member attempts for one due firing.

`plan_claim` is a pure function of the schedule, the due entry, the member, its labels
and the time. The values written to the firing key and to the overlap guard are defined
here, one type each, and nowhere else.
"""

from __future__ import annotations

import json

from ...frozen import frozen
from ...keys import Keys
from ...models import Schedule
from ...scheduling import paused_during, paused_now
from ...store.base import Claim
from .timetable import Due

Writes = tuple[tuple[str, bytes], ...]  # keys and values put with a claim's outcome


@frozen
class ClaimValue:
    """The firing key's value when this member took the firing. Retried with the same
    value, a claim whose answer was lost is still recognised as ours."""

    member: str
    nonce: str
    trigger: str

    def encode(self) -> bytes:
        return json.dumps(
            {"member": self.member, "nonce": self.nonce, "trigger": self.trigger}
        ).encode()


@frozen
class BusyValue:
    """The firing key's value when the overlap guard was held: the firing is still taken
    once, and its taker records it as skipped."""

    member: str
    nonce: str

    def encode(self) -> bytes:
        return json.dumps(
            {"member": self.member, "nonce": self.nonce, "skipped": "overlap"}
        ).encode()


@frozen
class GuardValue:
    """The overlap guard's value: which member runs which firing of the schedule."""

    member: str
    fire_time: float

    def encode(self) -> bytes:
        return json.dumps({"member": self.member, "fire_time": self.fire_time}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> GuardValue | None:
        """The guard a value describes; None if it is not one (then nobody can own it)."""
        try:
            held = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(held, dict):
            return None
        member, fire_time = held.get("member"), held.get("fire_time")
        if not isinstance(member, str) or not isinstance(fire_time, int | float):
            return None
        return cls(member, float(fire_time))


def claim_owner(schedule: Schedule, member: str) -> str | None:
    """Whose firing a claim is: per member in mode `everywhere`, shared (None) otherwise."""
    return member if schedule.mode == "everywhere" else None


def guard_key(keys: Keys, schedule: Schedule, member: str) -> str:
    """The overlap guard of `member`'s runs of `schedule`."""
    return keys.active(schedule.name, claim_owner(schedule, member))


@frozen
class ClaimPlan:
    key: str
    value: ClaimValue
    busy: BusyValue
    # Set when overlap is forbidden: created with the claim only if the previous run is over.
    guard: str | None
    guard_value: GuardValue
    # Due longer ago than the grace window: claimed, then recorded as skipped, not run.
    late: bool
    # The schedule's key and revision as this member saw them: a schedule firing is
    # claimed only if its schedule has not changed since (a pause not seen yet).
    unless_changed: tuple[str, int] | None = None

    def claim(
        self,
        *,
        lease: int,
        guard_lease: int | None,
        writes: tuple[Writes, Writes] = ((), ()),
    ) -> Claim:
        """The store's claim; `writes`: what it puts when won, and when busy (records)."""
        with_won, with_busy = writes
        return Claim(
            self.key,
            self.value.encode(),
            lease=lease,
            guard=self.guard,
            guard_value=self.guard_value.encode(),
            busy_value=self.busy.encode(),
            guard_lease=guard_lease,
            with_won=with_won,
            with_busy=with_busy if self.guard is not None else (),
            unless_changed=self.unless_changed,
        )


# Firings an operator asked for: run even while paused and however late (the request is
# the reason), never recorded as missed.
REQUESTED = frozenset({"manual", "backfill"})


def selects(schedule: Schedule, labels: dict[str, str]) -> bool:
    """Does the schedule's label selector pick a member with these labels?"""
    return all(labels.get(k) == v for k, v in schedule.on.items())


def takes_part(schedule: Schedule, labels: dict[str, str], now: float | None = None) -> bool:
    """Does a member with these labels run this schedule's firings (at `now`: a pause
    with an end is over once it passes; without `now`, any pause counts)?"""
    paused = schedule.paused if now is None else paused_now(schedule, now)
    return not paused and selects(schedule, labels)


def plan_claim(
    schedule: Schedule,
    due: Due,
    *,
    member: str,
    labels: dict[str, str],
    now: float,
    grace: float,
    keys: Keys,
    revision: int = 0,
) -> ClaimPlan | None:
    """The claim `member` attempts for `due`, or None when it takes no part (paused now
    or at the nominal time, or its labels do not match the schedule's selector).
    `revision`: the schedule's record as seen (0: unknown, not compared); an operator's
    request is claimed whatever the schedule became, as it runs even while paused."""
    requested = due.trigger in REQUESTED
    if requested:
        if not selects(schedule, labels):
            return None
    elif not takes_part(schedule, labels, now) or paused_during(schedule, due.fire_time):
        return None
    epoch = int(due.fire_time)
    owner = claim_owner(schedule, member)
    key = (
        keys.firing(schedule.name, epoch, owner)
        if due.attempt == 1
        else keys.retry_claim(schedule.name, epoch, due.attempt, owner)
    )
    started = due.fire_time + due.jitter  # a jittered start is late from its own time
    late = now - started > max(grace, 1.0) and due.trigger != "retry" and not requested
    guarded = not schedule.overlap and not late and not due.force
    return ClaimPlan(
        key=key,
        value=ClaimValue(member, due.nonce, due.trigger),
        busy=BusyValue(member, due.nonce),
        guard=guard_key(keys, schedule, member) if guarded else None,
        guard_value=GuardValue(member, due.fire_time),
        late=late,
        unless_changed=(
            (keys.schedule(schedule.name), revision) if revision and not requested else None
        ),
    )
