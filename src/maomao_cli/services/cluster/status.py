"""The cluster as it is now: every member's health, version and raft position, the leader,
the quorum and how many more failures it tolerates."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from ...config import Settings
from ...errors import MaomaoError
from ...etcdvalues import EndpointStatus, Member, netloc
from ...frozen import frozen
from ...ports import ConnectAdmin, EtcdAdmin
from .membership import member_pid
from .rules import fault_tolerance, quorum
from .state import ClusterPaths, load_member, member_tls, read_endpoints, settings_tls


@frozen
class MemberStatus:
    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool
    reachable: bool
    healthy: bool
    is_leader: bool
    version: str | None
    db_size: int | None
    raft_index: int | None
    raft_term: int | None
    errors: tuple[str, ...]
    problem: str | None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["id"] = f"{self.id:x}"
        data["peer_urls"] = list(self.peer_urls)
        data["client_urls"] = list(self.client_urls)
        data["errors"] = list(self.errors)
        return data


@frozen
class ClusterStatus:
    members: list[MemberStatus]
    leader: int
    voters: int
    healthy_voters: int
    quorum: int
    fault_tolerance: int
    this_member: str | None  # this machine's member name, when it is one
    local_pid: int | None
    endpoints: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "members": [m.as_dict() for m in self.members],
            "leader": f"{self.leader:x}",
            "voters": self.voters,
            "healthy_voters": self.healthy_voters,
            "quorum": self.quorum,
            "fault_tolerance": self.fault_tolerance,
            "this_member": self.this_member,
            "local_pid": self.local_pid,
            "endpoints": self.endpoints,
        }


def status(settings: Settings, connect_admin: ConnectAdmin) -> ClusterStatus:
    """Members with their health, versions and raft positions, through this machine's
    member settings when it is one, else through the configured endpoints."""
    paths = ClusterPaths.of(settings)
    member = load_member(paths)
    if member is not None:
        endpoints = read_endpoints(paths) or [member.endpoint]
        if member.endpoint not in endpoints:
            endpoints.insert(0, member.endpoint)
        tls = member_tls(paths, member)
    else:
        endpoints = list(settings.etcd.endpoints)
        tls = settings_tls(settings)
    with connect_admin(endpoints, tls, timeout=min(settings.etcd.timeout, 5.0)) as admin:
        rows = [_probe(admin, m) for m in admin.members()]
    leader = next((r.leader for r in rows if r.leader), 0)
    statuses = [replace(r.status, is_leader=r.status.id == leader) for r in rows]
    voters = sum(not s.is_learner for s in statuses)
    healthy_voters = sum(s.healthy and not s.is_learner for s in statuses)
    return ClusterStatus(
        members=statuses,
        leader=leader,
        voters=voters,
        healthy_voters=healthy_voters,
        quorum=quorum(voters),
        fault_tolerance=fault_tolerance(voters, healthy_voters),
        this_member=member.name if member else None,
        local_pid=member_pid(paths) if member else None,
        endpoints=endpoints,
    )


@frozen
class _Probed:
    status: MemberStatus
    leader: int  # the leader this member knows of, 0 when it did not answer


def _probe(admin: EtcdAdmin, member: Member) -> _Probed:
    """Ask the member itself, through its first client URL that answers."""
    reachable = healthy = False
    problem: str | None = None
    found: EndpointStatus | None = None
    for url in member.client_urls:
        try:
            found = admin.status(netloc(url), timeout=2.0)
            reachable = True
            healthy = member.is_learner or admin.healthy(netloc(url), timeout=2.0)
            break
        except MaomaoError as exc:
            problem = exc.message
    if not member.client_urls:
        problem = "not started yet"
    if found is not None:
        problem = None if healthy else "no quorum through this member"
    row = MemberStatus(
        id=member.id,
        name=member.name,
        peer_urls=member.peer_urls,
        client_urls=member.client_urls,
        is_learner=member.is_learner,
        reachable=reachable,
        healthy=healthy,
        is_leader=False,
        version=found.version if found else None,
        db_size=found.db_size if found else None,
        raft_index=found.raft_index if found else None,
        raft_term=found.raft_term if found else None,
        errors=found.errors if found else (),
        problem=problem,
    )
    return _Probed(row, found.leader if found else 0)
