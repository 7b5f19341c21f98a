"""Claim building and the values of claims and overlap guards (tables)."""

from __future__ import annotations

import pytest

from maomao_cli.keys import Keys
from maomao_cli.models import Schedule
from maomao_cli.services.worker.claims import (
    BusyValue,
    ClaimPlan,
    ClaimValue,
    GuardValue,
    plan_claim,
    takes_part,
)
from maomao_cli.services.worker.timetable import Due

KEYS = Keys("/maomao")
T0 = 1_900_000_000.0


def schedule(**fields: object) -> Schedule:
    fields.setdefault("cron", "* * * * * *")
    return Schedule(name="s", tool="t", **fields)  # type: ignore[arg-type]


def due(fire_time: float = T0, *, attempt: int = 1, trigger: str = "schedule") -> Due:
    return Due(fire_time, 0, "s", fire_time, 1, attempt, trigger, nonce="n0nce")


def plan(
    s: Schedule, d: Due, *, now: float = T0, labels: dict[str, str] | None = None
) -> ClaimPlan | None:
    return plan_claim(s, d, member="m1", labels=labels or {}, now=now, grace=60.0, keys=KEYS)


# The values are compared byte for byte by etcd (a claim retried with the same value is
# ours), so their exact encoding is part of the protocol between members.
@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (
            ClaimValue("m1", "n0nce", "schedule"),
            b'{"member": "m1", "nonce": "n0nce", "trigger": "schedule"}',
        ),
        (
            ClaimValue("m1", "n0nce", "retry"),
            b'{"member": "m1", "nonce": "n0nce", "trigger": "retry"}',
        ),
        (BusyValue("m1", "n0nce"), b'{"member": "m1", "nonce": "n0nce", "skipped": "overlap"}'),
        (GuardValue("m1", T0), b'{"member": "m1", "fire_time": 1900000000.0}'),
        (GuardValue("m1", T0 + 0.5), b'{"member": "m1", "fire_time": 1900000000.5}'),
    ],
)
def test_values_encode_exactly(value: ClaimValue | BusyValue | GuardValue, encoded: bytes) -> None:
    assert value.encode() == encoded


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (GuardValue("m1", T0).encode(), GuardValue("m1", T0)),
        (b'{"member": "m1", "fire_time": 1900000000}', GuardValue("m1", T0)),
        (b'{"member": "m1", "fire_time": 1, "other": 2}', GuardValue("m1", 1.0)),
        (b"not json", None),
        (b"[1, 2]", None),
        (b'{"fire_time": 1.0}', None),
        (b'{"member": 3, "fire_time": 1.0}', None),
        (b'{"member": "m1", "fire_time": "soon"}', None),
        (b'{"member": "m1"}', None),
    ],
)
def test_guard_values_decode(raw: bytes, expected: GuardValue | None) -> None:
    assert GuardValue.decode(raw) == expected


@pytest.mark.parametrize(
    ("fields", "labels", "expected"),
    [
        ({}, {}, True),
        ({"paused": True}, {}, False),
        ({"on": {"gpu": "yes"}}, {"gpu": "yes", "zone": "a"}, True),
        ({"on": {"gpu": "yes"}}, {"gpu": "no"}, False),
        ({"on": {"gpu": "yes"}}, {}, False),
        ({"on": {"gpu": "yes"}, "paused": True}, {"gpu": "yes"}, False),
    ],
)
def test_takes_part(fields: dict[str, object], labels: dict[str, str], expected: bool) -> None:
    assert takes_part(schedule(**fields), labels) is expected
    assert (plan(schedule(**fields), due(), labels=labels) is not None) is expected


@pytest.mark.parametrize(
    ("fields", "attempt", "key", "guard"),
    [
        ({}, 1, "/maomao/firings/s/1900000000", "/maomao/active/s"),
        ({}, 3, "/maomao/firings/s/1900000000.r3", "/maomao/active/s"),
        ({"mode": "everywhere"}, 1, "/maomao/firings/s/1900000000@m1", "/maomao/active/s@m1"),
        ({"mode": "everywhere"}, 2, "/maomao/firings/s/1900000000@m1.r2", "/maomao/active/s@m1"),
        ({"overlap": True}, 1, "/maomao/firings/s/1900000000", None),
    ],
)
def test_keys_of_a_claim(
    fields: dict[str, object], attempt: int, key: str, guard: str | None
) -> None:
    trigger = "schedule" if attempt == 1 else "retry"
    planned = plan(schedule(**fields), due(T0 + 0.7, attempt=attempt, trigger=trigger))
    assert planned is not None
    assert (planned.key, planned.guard) == (key, guard)  # the epoch is the whole second


@pytest.mark.parametrize(
    ("late_by", "trigger", "late"),
    [
        (0.0, "schedule", False),
        (60.0, "schedule", False),  # at the edge of the grace window: still on time
        (60.5, "schedule", True),
        (3600.0, "catch-up", True),
        (3600.0, "retry", False),  # a retry is late by design
    ],
)
def test_a_firing_beyond_the_grace_window_is_late_and_unguarded(
    late_by: float, trigger: str, late: bool
) -> None:
    planned = plan(schedule(), due(T0, trigger=trigger), now=T0 + late_by)
    assert planned is not None
    assert planned.late is late
    assert (planned.guard is None) is late, "a late firing is only recorded: no guard"


def test_a_short_grace_window_still_allows_a_second() -> None:
    d = due(T0)
    s = schedule()
    on_time = plan_claim(s, d, member="m1", labels={}, now=T0 + 1.0, grace=0.0, keys=KEYS)
    late = plan_claim(s, d, member="m1", labels={}, now=T0 + 1.1, grace=0.0, keys=KEYS)
    assert on_time is not None and not on_time.late
    assert late is not None and late.late


def test_a_plan_becomes_the_claim_sent_to_the_store() -> None:
    planned = plan(schedule(), due(T0, trigger="catch-up"))
    assert planned is not None
    claim = planned.claim(lease=7, guard_lease=9)
    assert claim.key == "/maomao/firings/s/1900000000"
    assert claim.value == ClaimValue("m1", "n0nce", "catch-up").encode()
    assert claim.busy_value == BusyValue("m1", "n0nce").encode()
    assert (claim.guard, claim.guard_value) == ("/maomao/active/s", GuardValue("m1", T0).encode())
    assert (claim.lease, claim.guard_lease) == (7, 9)


def test_the_same_due_entry_plans_the_same_claim() -> None:
    d = due(T0)
    first, again = plan(schedule(), d), plan(schedule(), d)
    assert first is not None and again is not None
    assert first.claim(lease=1, guard_lease=None) == again.claim(lease=1, guard_lease=None)


def test_claim_batches_never_write_one_key_twice_and_stay_small() -> None:
    from maomao_cli.store.base import Claim
    from maomao_cli.store.etcd_claims import batches

    def claim(key: str, guard: str | None = None) -> Claim:
        return Claim(key, b"v", guard=guard)

    # Two firings of one schedule share its guard: never in one transaction.
    same_guard = [claim("f/s/1", "g/s"), claim("f/t/1", "g/t"), claim("f/s/2", "g/s")]
    assert batches(same_guard) == [[0, 1], [2]]
    # A full batch starts the next; the order inside a batch is the claims' order.
    assert batches([claim(f"f/{i}") for i in range(5)], size=2) == [[0, 1], [2, 3], [4]]
    # A claim goes to the first batch with room and no shared key.
    mixed = [claim("a", "g"), claim("b", "g"), claim("c"), claim("d", "g")]
    assert batches(mixed) == [[0, 2], [1], [3]]
    assert batches([]) == []
