"""Membership: this worker's entry under <prefix>/members/, on a lease it keeps alive.

The entry exists exactly as long as the lease does, so "who is alive" is etcd's own
answer. A beat refreshes the lease and the entry's heartbeat; an expired lease (a long
pause, an etcd outage) is replaced, so the member comes back as new.
"""

from __future__ import annotations

import contextlib
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
from ..records import decode, load
from .clockoffset import describe

log = logging.getLogger("maomao.worker")


class NameTaken(MaomaoError):
    """Another live process holds this member name: two workers of one name must not run."""


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
        clock_offset: Callable[[], float | None] = lambda: None,
    ) -> None:
        self._keys = keys
        self.name = name
        self._labels = labels
        self._lease_ttl = lease_ttl
        self._clock = clock
        self._running = running
        self._clock_offset = clock_offset
        self.started = clock.now()
        self._lease: Lease | None = None
        self._lease_store: Store | None = None  # the client the lease object talks through

    @property
    def lease_id(self) -> int | None:
        """The member lease, which also carries this member's overlap guards."""
        return self._lease.id if self._lease is not None else None

    @property
    def keepalive_interval(self) -> float:
        return max(self._lease_ttl / 3, 0.5)

    def register(self, store: Store) -> None:
        """Join the member list on a new lease, in one transaction: the entry is created
        only if absent, so of any number of workers started at once under one name exactly
        one comes up. MaomaoError if a live process holds the name (the lease granted for
        this attempt is revoked); the entry of a crashed process of this host is replaced."""
        key = self._keys.member(self.name)
        lease = store.grant_lease(self._lease_ttl)
        try:
            while not store.create(key, self._record_json(), lease=lease.id):
                existing = store.get(key)
                if existing is None:
                    continue  # it went between our create and our read: try again
                member = decode(Member, existing)
                if member is None:  # a newer member's record, or a broken one: not ours to drop
                    raise NameTaken(
                        f"member {self.name!r} is held by a record this worker cannot read",
                        hint="give this worker another name with MAOMAO_MEMBER or [worker] member",
                    )
                self._refuse_if_alive(member)
                # A crashed worker of ours: its runs are lost. Only that entry goes: a
                # namesake that replaced it meanwhile is found by the next create.
                store.delete_if(key, mod_revision=existing.mod_revision)
        except BaseException:
            with contextlib.suppress(MaomaoError):
                lease.revoke()
            raise
        self._lease = lease
        self._lease_store = store

    def _refuse_if_alive(self, existing: Member) -> None:
        same_host_dead = existing.host == socket.gethostname() and not pid_alive(
            existing.pid, b"maomao"
        )
        # Our own pid: an earlier worker of this process (started before us) is replaced;
        # a twin started at the same moment is not.
        ours_earlier = existing.pid == os.getpid() and existing.started < self.started
        if ours_earlier:
            return
        if not same_host_dead or existing.pid == os.getpid():
            raise NameTaken(
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
            clock_offset=self._clock_offset(),
        )

    def _record_json(self) -> bytes:
        return self.record().to_json()

    def put(self, store: Store) -> None:
        lease = self._lease
        if lease is None:
            return
        store.put(self._keys.member(self.name), self._record_json(), lease=lease.id)

    def beat(self, store: Store) -> None:
        """Keep the lease alive and the entry current (raises Unavailable; MaomaoError if
        a namesake took the name while our lease was expired)."""
        if self._lease is not None and self._lease_store is not store:
            # A new client (made from the cluster's current endpoints): same lease.
            self._lease = store.lease_of(self._lease.id, self._lease.ttl)
            self._lease_store = store
        if self._lease is not None and not self._lease.refresh():
            # The lease expired (a long pause or an etcd outage): come back as new.
            log.warning("member lease expired; registering again")
            self._lease = None
        if self._lease is None:
            self.register(store)
            return
        self.put(store)

    def leave(self) -> None:
        """Revoke the lease: the entry and this member's guards go at once."""
        if self._lease is not None:
            self._lease.revoke()
            self._lease = None


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
    store: Store, keys: Keys, member: str, lease_ttl: int, now: float, max_clock_offset: float
) -> tuple[bool, str]:
    """For `maomao worker --check`: is this host's worker registered, alive, and within
    the clock bound (beyond it, it claims nothing)?"""
    record = load(store, keys.member(member), Member)
    if record is None:
        return False, f"no live worker named {member!r}"
    if record.host == socket.gethostname() and not pid_alive(record.pid, b"maomao"):
        return False, f"worker {member!r} (pid {record.pid}) is not running"
    if now - record.heartbeat > 3 * lease_ttl:
        return False, f"worker {member!r} has not reported for {now - record.heartbeat:.0f}s"
    offset = record.clock_offset
    clock = "clock offset unknown" if offset is None else f"clock {describe(offset)}"
    if offset is not None and abs(offset) > max_clock_offset:
        return False, (
            f"worker {member!r} claims no firings: its {clock} of the collaboration's "
            f"(max_clock_offset {max_clock_offset:g} s); fix its time sync"
        )
    return True, f"worker {member!r} alive (pid {record.pid}, {record.running} running, {clock})"
