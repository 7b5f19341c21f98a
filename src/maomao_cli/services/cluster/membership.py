"""This machine's membership: found a cluster, leave it, start and stop its member.

Joining, the longest of the changes, is in joining.py; it shares the helpers here.
"""

from __future__ import annotations

import ipaddress
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import field, replace
from pathlib import Path

from ... import validation
from ...config import Settings
from ...errors import BadInput, NotFound, Unavailable
from ...etcdvalues import Member, netloc
from ...frozen import frozen
from ...ports import ConnectAdmin, EtcdAdmin
from .. import etcdprocess
from .pki import install_ca, issue_member_certs
from .rules import MemberHealth, initial_cluster, leave_refusals
from .state import (
    ClusterPaths,
    MemberConfig,
    etcd_spec,
    load_member,
    member_tls,
    read_endpoints,
    save_member,
    worker_config,
    write_endpoints,
    write_token,
)
from .waiting import Clock, when_healthy

# ---------------------------------------------------------------- shared by the changes


def member_pid(paths: ClusterPaths) -> int | None:
    return etcdprocess.running_pid(paths.etcd_files)


def spawn(paths: ClusterPaths, member: MemberConfig, *, wait: float) -> int:
    """Start this member's etcd; its pid once its client port listens."""
    return etcdprocess.start(paths.etcd_files, etcd_spec(paths, member), wait=wait)


def kill(paths: ClusterPaths) -> int | None:
    return etcdprocess.stop(paths.etcd_files)


def check_host(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        raise BadInput(
            f"--listen must be an IP address of this machine, not {host!r}",
            hint="the other members connect to it: use the address they can reach",
        ) from None


def refuse_if_member(paths: ClusterPaths) -> None:
    if paths.member.exists():
        raise BadInput(
            f"this machine is already a cluster member ({paths.member})",
            hint="`maomao etcd start` restarts it; `maomao etcd leave` leaves the cluster",
        )


def require_member(paths: ClusterPaths) -> MemberConfig:
    member = load_member(paths)
    if member is None:
        raise NotFound("this machine is not a cluster member")
    return member


def member_health(admin: EtcdAdmin, members: Sequence[Member]) -> list[MemberHealth]:
    result = []
    for member in members:
        healthy = bool(member.client_urls) and any(
            admin.healthy(netloc(url), timeout=2.0) for url in member.client_urls
        )
        result.append(MemberHealth(member.name, member.peer_urls, member.is_learner, healthy))
    return result


def netlocs(urls: Sequence[str]) -> list[str]:
    return [netloc(u) for u in urls]


def wait_healthy(admin: EtcdAdmin, endpoint: str, wait: float, clock: Clock) -> None:
    deadline = clock.monotonic() + wait
    while clock.monotonic() < deadline:
        if admin.healthy(endpoint, timeout=1.0):
            return
        clock.sleep(0.2)
    raise Unavailable(f"etcd at {endpoint} did not become healthy within {wait:g}s")


# ---------------------------------------------------------------- found


@frozen
class Founded:
    member: MemberConfig
    pid: int
    token_file: Path
    endpoints_file: Path
    created_ca: bool
    paths: ClusterPaths

    def config_snippet(self) -> str:
        return worker_config(self.paths, self.member)


def init(
    settings: Settings,
    connect_admin: ConnectAdmin,
    clock: Clock,
    *,
    listen: str,
    client_port: int = 2379,
    peer_port: int = 2380,
    name: str | None = None,
    ca_cert: Path | None = None,
    ca_key: Path | None = None,
    tls: bool = True,
    wait: float = 30.0,
) -> Founded:
    """Found a collaboration: a one-member cluster that others can join."""
    host = check_host(listen)
    member_name = validation.name(name or settings.member, "--name")
    paths = ClusterPaths.of(settings)
    refuse_if_member(paths)
    if paths.data.exists() and any(paths.data.iterdir()):
        raise BadInput(f"{paths.data} holds old etcd data", hint="remove it first")
    paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    created = False
    if tls:
        created = install_ca(paths, ca_cert, ca_key)
        issue_member_certs(paths, member_name, host)
    member = MemberConfig(
        name=member_name,
        host=host,
        client_port=client_port,
        peer_port=peer_port,
        tls=tls,
        initial_cluster="",
        initial_state="new",
        cluster_token=f"maomao-{secrets.token_hex(6)}",
    )
    member = replace(member, initial_cluster=initial_cluster([(member_name, [member.peer_url])]))
    pid = spawn(paths, member, wait=wait)
    try:
        with connect_admin([member.endpoint], member_tls(paths, member)) as admin:
            wait_healthy(admin, member.endpoint, wait, clock)
            member = replace(member, member_id=admin.status(member.endpoint).member_id)
    except BaseException:
        kill(paths)
        shutil.rmtree(paths.data, ignore_errors=True)
        raise
    save_member(paths, member)
    write_endpoints(paths, [member.endpoint])
    write_token(paths, member, [member.endpoint])
    return Founded(member, pid, paths.token, paths.endpoints, created, paths)


# ---------------------------------------------------------------- leave


@frozen
class Left:
    name: str
    member_id: int
    remaining: list[str]
    stopped_pid: int | None
    removed_files: list[str] = field(default_factory=list)


def leave(
    settings: Settings, connect_admin: ConnectAdmin, clock: Clock, *, force: bool = False
) -> Left:
    paths = ClusterPaths.of(settings)
    member = load_member(paths)
    if member is None:
        raise NotFound(
            "this machine is not a cluster member (no member.json)",
            hint="`maomao etcd init` founds a cluster, `maomao etcd join` joins one",
        )
    # Ask the others first: this member may be the one that is down.
    others = [e for e in read_endpoints(paths) if e != member.endpoint]
    with connect_admin([*others, member.endpoint], member_tls(paths, member), timeout=5.0) as admin:
        members = admin.members()
        me = next(
            (m for m in members if m.id == member.member_id or member.peer_url in m.peer_urls),
            None,
        )
        if me is not None:
            members = _remove_self(admin, members, me, member, force, clock)
    stopped = kill(paths)
    # A removed member's data can never rejoin; a later join starts afresh.
    shutil.rmtree(paths.data, ignore_errors=True)
    paths.member.unlink(missing_ok=True)
    removed_files = _remove_secrets(paths)
    remaining = [m for m in members if me is None or m.id != me.id]
    # The worker here may stay a client of the cluster through the remaining members.
    write_endpoints(paths, [e for m in remaining for e in netlocs(m.client_urls)])
    return Left(member.name, member.member_id, [m.name for m in remaining], stopped, removed_files)


def _remove_secrets(paths: ClusterPaths) -> list[str]:
    """A member that left must not be able to mint certificates for the cluster or let
    others join it: its CA key and join token go. The CA certificate and this machine's
    client certificate stay, so its worker may remain a client through the others."""
    removed = []
    for secret in (paths.ca_key, paths.token):
        if secret.exists():
            secret.unlink()
            removed.append(str(secret))
    return removed


def _remove_self(
    admin: EtcdAdmin,
    members: Sequence[Member],
    me: Member,
    member: MemberConfig,
    force: bool,
    clock: Clock,
) -> list[Member]:
    """Remove this member, unless that is unsafe; the members after the change."""
    reasons = leave_refusals(member_health(admin, members), me.name or member.name)
    if reasons and not force:
        raise BadInput(
            f"refusing to leave: {'; '.join(reasons)}",
            hint="fix the cluster first (`maomao etcd status`), or --force",
        )
    admin.endpoints = [e for e in admin.endpoints if e != member.endpoint] or [member.endpoint]
    return when_healthy(lambda: admin.remove_member(me.id), clock)


# ---------------------------------------------------------------- start, stop


def start_member(settings: Settings, wait: float = 30.0) -> tuple[MemberConfig, int, bool]:
    """Restart this machine's member from member.json; (member, pid, started now)."""
    paths = ClusterPaths.of(settings)
    member = require_member(paths)
    pid = member_pid(paths)
    if pid is not None:
        return member, pid, False
    return member, spawn(paths, member, wait=wait), True


def stop_member(settings: Settings) -> tuple[MemberConfig, int | None]:
    paths = ClusterPaths.of(settings)
    member = require_member(paths)
    return member, kill(paths)
