"""The cluster's safety rules: quorum arithmetic and when to refuse a join or a leave.

Pure functions of what the members look like, no I/O, so they are tested as tables.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...frozen import frozen


def quorum(voters: int) -> int:
    """Members that must agree for the cluster to make progress."""
    return voters // 2 + 1 if voters > 0 else 0


def fault_tolerance(voters: int, healthy_voters: int) -> int:
    """How many more voting members may fail before the cluster loses quorum; -1 when
    it has already lost it."""
    if voters == 0:
        return -1
    spare = healthy_voters - quorum(voters)
    return spare if spare >= 0 else -1


def voters_for_tolerance(failures: int) -> int:
    """The fewest voting members that keep a quorum through `failures` failures."""
    return 2 * failures + 1


def health(voters: int, healthy_voters: int) -> str:
    """healthy (every voting member), degraded (one down, quorum holds) or no-quorum."""
    if fault_tolerance(voters, healthy_voters) < 0:
        return "no-quorum"
    return "healthy" if healthy_voters == voters else "degraded"


def tolerance_warning(voters: int) -> str | None:
    """What to say after a change leaves `voters` voting members, all healthy."""
    if voters == 0 or fault_tolerance(voters, voters) > 0:
        return None
    return (
        f"{voters} voting member{'s' if voters > 1 else ''} tolerate no failure: "
        f"one member down stops the cluster; {voters_for_tolerance(1)} members give "
        "fault tolerance 1"
    )


@frozen
class MemberHealth:
    """What the rules need to know about one member."""

    name: str
    peer_urls: tuple[str, ...]
    is_learner: bool
    healthy: bool


def join_conflicts(members: Sequence[MemberHealth], name: str, peer_url: str) -> list[str]:
    """Why `name` at `peer_url` cannot join at all: that member already exists."""
    conflicts: list[str] = []
    for member in members:
        if member.name == name and name:
            conflicts.append(f"a member named {name!r} already exists")
        if peer_url in member.peer_urls:
            conflicts.append(f"a member with peer URL {peer_url} already exists")
    return conflicts


def join_risks(members: Sequence[MemberHealth]) -> list[str]:
    """Why adding a member now would be unsafe (empty: go ahead).

    The learner does not count for quorum, but once promoted the cluster needs one more
    vote; if any member is already down, a failure of the newcomer during the change
    could stop the cluster. etcd allows only one learner at a time, and a pending one
    is usually a join that is still running (or a stale one to remove first)."""
    reasons: list[str] = []
    voters = [m for m in members if not m.is_learner]
    learners = [m for m in members if m.is_learner]
    if learners:
        names = ", ".join(m.name or m.peer_urls[0] for m in learners)
        reasons.append(f"a learner is already pending ({names}); wait for it or remove it")
    unhealthy = [m.name or m.peer_urls[0] for m in voters if not m.healthy]
    if unhealthy:
        reasons.append(
            f"{len(unhealthy)} of {len(voters)} voting members unhealthy ({', '.join(unhealthy)}): "
            "a failure during the change could cost the quorum"
        )
    if voters and fault_tolerance(len(voters) + 1, sum(m.healthy for m in voters) + 1) < 0:
        reasons.append("the cluster would lose its quorum once the new member counts")
    return reasons


def join_refusals(members: Sequence[MemberHealth], name: str, peer_url: str) -> list[str]:
    """Every reason not to add `name` at `peer_url` now: conflicts, then risks."""
    return [*join_conflicts(members, name, peer_url), *join_risks(members)]


def leave_refusals(members: Sequence[MemberHealth], self_name: str) -> list[str]:
    """Why removing `self_name` now would be unsafe (empty: go ahead)."""
    me = next((m for m in members if m.name == self_name), None)
    if me is None:
        return []
    if me.is_learner:
        return []  # a learner never counts for quorum
    voters = [m for m in members if not m.is_learner]
    if len(voters) == 1:
        return ["this is the last voting member: removing it would end the cluster and its data"]
    reasons: list[str] = []
    healthy = sum(m.healthy for m in voters)
    if fault_tolerance(len(voters), healthy) < 0:
        reasons.append(f"the cluster has no quorum now ({healthy} of {len(voters)} healthy)")
    remaining = len(voters) - 1
    remaining_healthy = healthy - (1 if me.healthy else 0)
    if fault_tolerance(remaining, remaining_healthy) < 0:
        reasons.append(
            f"the {remaining} remaining members would have {remaining_healthy} healthy, "
            f"below the quorum of {quorum(remaining)}"
        )
    return reasons


def initial_cluster(members: Sequence[tuple[str, Sequence[str]]]) -> str:
    """etcd's --initial-cluster: name=peerurl for every peer URL of every member."""
    return ",".join(f"{name}={url}" for name, urls in members for url in urls)


def caught_up(learner_index: int, leader_index: int, *, slack: int = 10) -> bool:
    """A learner is close enough to promote (etcd itself wants 90 % of the leader's log)."""
    return learner_index > 0 and leader_index - learner_index <= slack
