"""Joining a cluster, as etcd's runtime-reconfiguration advice has it: add the new member as
a learner (it does not count for quorum), start it with the initial-cluster the cluster
returned, wait until it has caught up, then promote it. Any failure after the add removes
the member again, so no half-added member is ever left behind.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ... import validation
from ...config import Settings, parse_endpoints
from ...errors import (
    AlreadyExists,
    BadInput,
    LearnerNotInSync,
    MaomaoError,
    MemberNotReady,
    Unavailable,
    UnhealthyCluster,
)
from ...etcdvalues import Member
from ...frozen import frozen
from ...ports import ConnectAdmin, EtcdAdmin
from .membership import check_host, kill, member_health, netlocs, refuse_if_member, spawn
from .pki import install_ca, issue_member_certs
from .rules import caught_up, initial_cluster, join_conflicts, join_risks
from .state import (
    ClusterPaths,
    MemberConfig,
    member_tls,
    save_member,
    write_endpoints,
    write_token,
)
from .waiting import Clock, retrying, when_healthy

Progress = Callable[[str], None]

# etcd refuses a promotion while the learner lags behind the leader, and for a few seconds
# after the last membership change; both pass by themselves.
PROMOTION_WAITS = (LearnerNotInSync, MemberNotReady, UnhealthyCluster)

CONFLICT_HINT = "pick another --name, or remove the stale member (`etcdctl member remove ID`)"


class _Conflict(BadInput):
    """Another member already holds this one's name or peer URL: nothing of ours to undo."""


@frozen
class Joined:
    member: MemberConfig
    pid: int
    members: list[str]
    endpoints_file: Path
    paths: ClusterPaths


def join(
    settings: Settings,
    connect_admin: ConnectAdmin,
    clock: Clock,
    endpoint: str,
    *,
    token: Path | None = None,
    ca_cert: Path | None = None,
    ca_key: Path | None = None,
    listen: str | None = None,
    client_port: int = 2379,
    peer_port: int = 2380,
    name: str | None = None,
    tls: bool = True,
    force: bool = False,
    wait: float = 120.0,
    progress: Progress = lambda _: None,
) -> Joined:
    """Join the cluster at `endpoint` as a learner, catch up, then become a voter."""
    endpoints = list(parse_endpoints(endpoint))
    member_name = validation.name(name or settings.member, "--name")
    paths = ClusterPaths.of(settings)
    refuse_if_member(paths)
    tls = _install_join_ca(paths, token, ca_cert, ca_key, tls)
    host = check_host(listen) if listen else _route_source(endpoints[0])
    if tls:
        issue_member_certs(paths, member_name, host)
    member = MemberConfig(
        name=member_name,
        host=host,
        client_port=client_port,
        peer_port=peer_port,
        tls=tls,
        initial_cluster="",
        initial_state="existing",
        cluster_token="",
    )
    with connect_admin(endpoints, member_tls(paths, member), timeout=5.0) as admin:
        progress(f"checking the cluster at {', '.join(endpoints)}")
        current = admin.members()
        _check_joinable(admin, current, member, force)
        # Members talk to the whole cluster from now on, not only to the given endpoint.
        admin.endpoints = [
            e for m in current if not m.is_learner for e in netlocs(m.client_urls)
        ] or admin.endpoints
        progress(f"adding {member_name} ({member.peer_url}) as a learner")
        member, pid = _add_and_promote(admin, paths, member, wait, progress, clock)
        members = admin.members()
    save_member(paths, member)
    known = [e for m in members for e in netlocs(m.client_urls)] or [member.endpoint]
    write_endpoints(paths, known)
    write_token(paths, member, known)
    return Joined(member, pid, [m.name for m in members], paths.endpoints, paths)


def _install_join_ca(
    paths: ClusterPaths, token: Path | None, ca_cert: Path | None, ca_key: Path | None, tls: bool
) -> bool:
    """Install the collaboration's CA from the token or the given files; whether the
    cluster uses TLS (the token says so)."""
    if token is not None:
        given = _read_token(token)
        tls = bool(given.get("tls", True))
        if tls and not (ca_cert or ca_key):
            paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            with tempfile.TemporaryDirectory() as tmp:
                cert_file, key_file = Path(tmp) / "ca.crt", Path(tmp) / "ca.key"
                cert_file.write_text(str(given.get("ca_cert", "")))
                key_file.write_text(str(given.get("ca_key", "")))
                install_ca(paths, cert_file, key_file)
    elif tls and (ca_cert is None or ca_key is None):
        raise BadInput(
            "joining needs the collaboration's CA: give --token FILE, or --ca-cert and --ca-key",
            hint="the founder's `maomao etcd init` wrote the join token and printed its path",
        )
    if tls and (ca_cert or ca_key):
        paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        install_ca(paths, ca_cert, ca_key)
    return tls


def _read_token(token: Path) -> dict[str, Any]:
    try:
        given = json.loads(token.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read the join token {token}: {exc}") from None
    if not isinstance(given, dict):
        raise BadInput(f"cannot read the join token {token}: not a JSON object")
    return given


def _route_source(endpoint: str) -> str:
    """The local address this machine uses to reach `endpoint` (no packet is sent)."""
    host = endpoint.rpartition(":")[0].strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((host, 9))
            return str(sock.getsockname()[0])
    except OSError:
        raise BadInput(
            f"cannot tell which local address reaches {endpoint}",
            hint="give this machine's address with --listen",
        ) from None


def _check_joinable(
    admin: EtcdAdmin, current: list[Member], member: MemberConfig, force: bool
) -> None:
    health = member_health(admin, current)
    conflicts = join_conflicts(health, member.name, member.peer_url)
    if conflicts:
        raise BadInput(f"cannot join: {'; '.join(conflicts)}", hint=CONFLICT_HINT)
    risks = join_risks(health)
    if risks and not force:
        raise BadInput(
            f"refusing to join: {'; '.join(risks)}",
            hint="fix the cluster first (`maomao etcd status`), or --force to join anyway",
        )


def _add_and_promote(
    admin: EtcdAdmin,
    paths: ClusterPaths,
    member: MemberConfig,
    wait: float,
    progress: Progress,
    clock: Clock,
) -> tuple[MemberConfig, int]:
    """Add this member as a learner, start it, promote it once caught up; undone on any
    failure after the add. The member as added (its ID, initial cluster) and its pid."""
    added_id = 0
    try:
        added, after = _add_learner(admin, member, clock)
        added_id = added.id
        member = replace(
            member,
            member_id=added.id,
            initial_cluster=initial_cluster(
                [(m.name or member.name if m.id == added.id else m.name, m.peer_urls)
                 for m in after]
            ),
        )  # fmt: skip
        progress("starting etcd as a learner")
        pid = spawn(paths, member, wait=min(wait, 30.0))
        deadline = clock.monotonic() + wait
        _catch_up(admin, member, deadline, wait, clock)
        progress("caught up; promoting to a voting member")
        _promote(admin, member, deadline, wait, clock)
    except _Conflict:
        raise
    except BaseException as failure:
        _undo_join(admin, paths, member, added_id, failure)
        raise
    return member, pid


def _add_learner(
    admin: EtcdAdmin, member: MemberConfig, clock: Clock
) -> tuple[Member, list[Member]]:
    try:
        return when_healthy(lambda: admin.add_member([member.peer_url], learner=True), clock)
    except AlreadyExists:
        # Added by someone else since the check above.
        raise _Conflict(
            f"cannot join: a member with peer URL {member.peer_url} already exists",
            hint=CONFLICT_HINT,
        ) from None


def _catch_up(
    admin: EtcdAdmin, member: MemberConfig, deadline: float, wait: float, clock: Clock
) -> None:
    last_error = "no answer yet"
    while clock.monotonic() < deadline:
        try:
            mine = admin.status(member.endpoint, timeout=2.0)
            leader = next((admin.status(e, timeout=2.0) for e in admin.endpoints), None)
            leader_index = leader.raft_index if leader else 0
            if caught_up(mine.raft_index, leader_index):
                return
            last_error = f"learner at raft index {mine.raft_index}, leader at {leader_index}"
        except MaomaoError as exc:
            last_error = exc.message
        clock.sleep(0.3)
    raise Unavailable(f"the new member did not catch up within {wait:g}s: {last_error}")


def _promote(
    admin: EtcdAdmin, member: MemberConfig, deadline: float, wait: float, clock: Clock
) -> None:
    try:
        retrying(
            lambda: admin.promote_member(member.member_id),
            retry_on=PROMOTION_WAITS,
            deadline=deadline,
            interval=0.5,
            clock=clock,
        )
    except PROMOTION_WAITS as exc:
        raise Unavailable(
            f"etcd did not accept the promotion within {wait:g}s: {exc.message}"
        ) from None


def _undo_join(
    admin: EtcdAdmin,
    paths: ClusterPaths,
    member: MemberConfig,
    added_id: int,
    failure: BaseException,
) -> None:
    """Leave nothing half-added: remove the member (found by peer URL when the add's
    answer was lost), stop the local etcd, drop its data."""
    kill(paths)
    shutil.rmtree(paths.data, ignore_errors=True)
    problem = ""
    try:
        ids = {added_id} - {0}
        if not ids:
            ids = {m.id for m in admin.members() if member.peer_url in m.peer_urls}
        for member_id in ids:
            admin.remove_member(member_id)
    except MaomaoError as exc:
        problem = exc.message
    if problem and isinstance(failure, MaomaoError):
        failure.message += f"; removing the half-added member {added_id:x} failed too ({problem})"
        failure.hint = f"remove it by hand: etcdctl member remove {added_id:x}"
    elif isinstance(failure, MaomaoError):
        failure.message += "; the half-added member was removed"
