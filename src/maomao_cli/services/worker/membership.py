"""Membership: this worker's entry under <prefix>/members/, on a lease it keeps alive.

The entry exists exactly as long as the lease does, so "who is alive" is etcd's own
answer. A beat refreshes the lease and the entry's heartbeat; an expired lease (a long
pause, an etcd outage) is replaced, so the member comes back as new.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

from ... import __version__
from ...errors import MaomaoError
from ...keys import Keys
from ...models import Member
from ...ports import Clock
from ...processes import pid_alive
from ...store.base import Lease, Store
from ..records import load

log = logging.getLogger("maomao.worker")


class Membership:
    def __init__(
        self,
        keys: Keys,
        name: str,
        labels: dict[str, str],
        *,
        lease_ttl: int,
        clock: Clock,
        running: Callable[[], int],
    ) -> None:
        self._keys = keys
        self.name = name
        self._labels = labels
        self._lease_ttl = lease_ttl
        self._clock = clock
        self._running = running
        self.started = clock.now()
        self._lease: Lease | None = None

    @property
    def lease_id(self) -> int | None:
        """The member lease, which also carries this member's overlap guards."""
        return self._lease.id if self._lease is not None else None

    @property
    def keepalive_interval(self) -> float:
        return max(self._lease_ttl / 3, 0.5)

    def register(self, store: Store) -> None:
        """Join the member list on a new lease. MaomaoError if a live process already
        holds this member's name; the entry of a crashed one of ours is replaced."""
        key = self._keys.member(self.name)
        existing = load(store, key, Member)
        if existing is not None and existing.pid != os.getpid():
            self._refuse_if_alive(existing)
            # A crashed worker of ours: its runs are lost; its key goes with its lease.
            store.delete(key)
        self._lease = store.grant_lease(self._lease_ttl)
        self.put(store)

    def _refuse_if_alive(self, existing: Member) -> None:
        same_host_dead = existing.host == socket.gethostname() and not pid_alive(
            existing.pid, b"maomao"
        )
        if not same_host_dead:
            raise MaomaoError(
                f"member {self.name!r} is already running (host {existing.host}, pid {existing.pid})",
                hint="stop it, or give this worker another name with MAOMAO_MEMBER or [worker] member",
            )

    def record(self) -> Member:
        return Member(
            name=self.name,
            host=socket.gethostname(),
            version=__version__,
            started=self.started,
            labels=self._labels,
            running=self._running(),
            pid=os.getpid(),
            heartbeat=self._clock.now(),
        )

    def put(self, store: Store) -> None:
        lease = self._lease
        if lease is None:
            return
        store.put(self._keys.member(self.name), self.record().to_json(), lease=lease.id)

    def beat(self, store: Store) -> None:
        """Keep the lease alive and the entry current (raises Unavailable)."""
        if self._lease is None:
            return
        if not self._lease.refresh():
            # The lease expired (a long pause or an etcd outage): come back as new.
            log.warning("member lease expired; registering again")
            self._lease = store.grant_lease(self._lease_ttl)
        self.put(store)

    def leave(self) -> None:
        """Revoke the lease: the entry and this member's guards go at once."""
        if self._lease is not None:
            self._lease.revoke()


def remove_leftover_containers(remove: Callable[[str], int] | None, member: str) -> None:
    """Containers of this member left by a killed process of it: nobody waits for them
    (their runs are marked lost and retried), so they go before we run anything."""
    if remove is None:
        return
    try:
        removed = remove(member)
    except MaomaoError as exc:
        log.warning("could not remove containers left by a previous worker: %s", exc)
        return
    if removed:
        log.warning("removed %d container(s) left by a previous worker %s", removed, member)


def check_health(
    store: Store, keys: Keys, member: str, lease_ttl: int, now: float
) -> tuple[bool, str]:
    """For `maomao worker --check`: is this host's worker registered and alive?"""
    record = load(store, keys.member(member), Member)
    if record is None:
        return False, f"no live worker named {member!r}"
    if record.host == socket.gethostname() and not pid_alive(record.pid, b"maomao"):
        return False, f"worker {member!r} (pid {record.pid}) is not running"
    if now - record.heartbeat > 3 * lease_ttl:
        return False, f"worker {member!r} has not reported for {now - record.heartbeat:.0f}s"
    return True, f"worker {member!r} alive (pid {record.pid}, {record.running} running)"
