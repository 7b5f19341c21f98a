"""Quorum arithmetic and the join/leave refusal rules, as tables."""

from __future__ import annotations

import pytest

from maomao_cli.services.cluster import (
    MemberHealth,
    caught_up,
    fault_tolerance,
    initial_cluster,
    join_conflicts,
    join_refusals,
    join_risks,
    leave_refusals,
    quorum,
)
from maomao_cli.services.cluster.rules import health, tolerance_warning, voters_for_tolerance


def voter(name: str, healthy: bool = True) -> MemberHealth:
    return MemberHealth(name, (f"https://{name}:2380",), False, healthy)


def learner(name: str) -> MemberHealth:
    return MemberHealth(name, (f"https://{name}:2380",), True, True)


@pytest.mark.parametrize(
    ("voters", "expected"), [(0, 0), (1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)]
)
def test_quorum(voters: int, expected: int) -> None:
    assert quorum(voters) == expected


@pytest.mark.parametrize(
    ("voters", "healthy", "expected"),
    [
        (0, 0, -1),
        (1, 1, 0),
        (1, 0, -1),
        (2, 2, 0),
        (3, 3, 1),
        (3, 2, 0),
        (3, 1, -1),
        (4, 4, 1),
        (5, 5, 2),
        (5, 3, 0),
    ],
)
def test_fault_tolerance(voters: int, healthy: int, expected: int) -> None:
    assert fault_tolerance(voters, healthy) == expected


@pytest.mark.parametrize(
    ("members", "refused_because"),
    [
        ([voter("a")], None),
        ([voter("a"), voter("b")], None),
        ([voter("a"), voter("b"), voter("c")], None),
        ([voter("a"), voter("b", healthy=False), voter("c")], "unhealthy"),
        ([voter("a", healthy=False)], "unhealthy"),
        ([voter("a"), learner("b")], "learner is already pending"),
        ([voter("a"), voter("new")], "named 'new' already exists"),
        ([voter("a"), MemberHealth("x", ("https://new:2380",), False, True)], "peer URL"),
    ],
)
def test_join_refusals(members: list[MemberHealth], refused_because: str | None) -> None:
    reasons = join_refusals(members, "new", "https://new:2380")
    if refused_because is None:
        assert reasons == []
    else:
        assert any(refused_because in r for r in reasons), reasons


def test_conflicts_are_what_force_cannot_override() -> None:
    members = [voter("new"), voter("b", healthy=False), learner("c")]
    conflicts = join_conflicts(members, "new", "https://b:2380")
    assert conflicts == [
        "a member named 'new' already exists",
        "a member with peer URL https://b:2380 already exists",
    ]
    risks = join_risks(members)
    assert risks and not any("already exists" in r for r in risks)
    assert join_refusals(members, "new", "https://b:2380") == [*conflicts, *risks]


@pytest.mark.parametrize(
    ("members", "me", "refused_because"),
    [
        ([voter("a")], "a", "last voting member"),
        ([voter("a"), voter("b")], "a", None),
        ([voter("a"), voter("b"), voter("c")], "a", None),
        ([voter("a"), voter("b"), voter("c", healthy=False)], "a", "below the quorum"),
        ([voter("a", healthy=False), voter("b"), voter("c")], "a", None),
        ([voter("a"), voter("b", healthy=False), voter("c", healthy=False)], "a", "no quorum"),
        ([voter("a"), learner("b")], "b", None),
        ([voter("a"), voter("b", healthy=False)], "a", "below the quorum"),
        ([voter("a"), voter("b")], "unknown", None),
    ],
)
def test_leave_refusals(members: list[MemberHealth], me: str, refused_because: str | None) -> None:
    reasons = leave_refusals(members, me)
    if refused_because is None:
        assert reasons == []
    else:
        assert any(refused_because in r for r in reasons), reasons


def test_initial_cluster_lists_every_peer_url() -> None:
    text = initial_cluster([("a", ["https://1:2380"]), ("b", ["https://2:2380", "https://3:2380"])])
    assert text == "a=https://1:2380,b=https://2:2380,b=https://3:2380"


@pytest.mark.parametrize(
    ("learner_index", "leader_index", "expected"),
    [
        (0, 0, False),
        (0, 5, False),
        (5, 5, True),
        (95, 100, True),
        (50, 100, False),
        (101, 100, True),
    ],
)
def test_caught_up(learner_index: int, leader_index: int, expected: bool) -> None:
    assert caught_up(learner_index, leader_index) is expected


@pytest.mark.parametrize(
    ("voters", "healthy", "expected"),
    [
        (3, 3, "healthy"),
        (3, 2, "degraded"),
        (3, 1, "no-quorum"),
        (2, 1, "no-quorum"),
        (1, 1, "healthy"),
        (5, 3, "degraded"),
    ],
)
def test_health_codes(voters: int, healthy: int, expected: str) -> None:
    assert health(voters, healthy) == expected


@pytest.mark.parametrize(
    ("voters", "warned"),
    [(1, True), (2, True), (3, False), (4, False), (5, False)],
)
def test_tolerance_warning_names_the_members_for_tolerance_one(voters: int, warned: bool) -> None:
    warning = tolerance_warning(voters)
    assert (warning is not None) is warned
    if warning is not None:
        assert (
            f"{voters} voting member" in warning and "3 members give fault tolerance 1" in warning
        )
    assert voters_for_tolerance(1) == 3 and voters_for_tolerance(2) == 5
