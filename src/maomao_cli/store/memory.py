"""An in-process store with etcd's semantics, for pure tests and benchmarks.

Revisions, create-only transactions, leases that expire on a (fake-able) clock and
watches behave as in etcd, so the contract suite runs unchanged against both adapters.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from ..errors import Compacted, MaomaoError, Unavailable
from .base import PAGE_SIZE, Claim, ClaimOutcome, Entry, Event, Page, StoreStatus, recognised


@dataclass
class _Lease:
    id: int
    ttl: int
    expires: float
    keys: set[str] = field(default_factory=set)


class MemoryLease:
    def __init__(self, store: MemoryStore, lease_id: int, ttl: int) -> None:
        self._store = store
        self._id = lease_id
        self._ttl = ttl

    @property
    def id(self) -> int:
        return self._id

    @property
    def ttl(self) -> int:
        return self._ttl

    def refresh(self) -> bool:
        return self._store._refresh(self._id)

    def revoke(self) -> None:
        self._store._revoke(self._id)


class MemoryWatch:
    def __init__(self, store: MemoryStore, prefix: str) -> None:
        self._store = store
        self.prefix = prefix
        self.queue: queue.Queue[Event | MaomaoError | None] = queue.Queue()
        self._cancelled = False

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self.queue.get()
            if event is None or self._cancelled:
                return
            if isinstance(event, MaomaoError):  # break_watches(): the connection was lost
                raise event
            yield event

    def cancel(self) -> None:
        self._cancelled = True
        self._store._unwatch(self)
        self.queue.put(None)


class MemoryStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._data: dict[str, Entry] = {}
        self._revision = 1
        self._history: list[Event] = []
        self._leases: dict[int, _Lease] = {}
        self._next_lease = 1000
        self._watches: list[MemoryWatch] = []
        self.down = False  # set by tests to simulate an unreachable cluster
        self.compacted = 0  # watches from this revision or older are refused, as in etcd

    @property
    def endpoint(self) -> str:
        return "memory"

    def _check(self) -> None:
        if self.down:
            raise Unavailable("etcd at memory is unreachable: simulated outage")
        self._expire()

    def _expire(self) -> None:
        now = self._clock()
        for lease in [lease for lease in self._leases.values() if lease.expires <= now]:
            self._drop_lease(lease)

    def _drop_lease(self, lease: _Lease) -> None:
        del self._leases[lease.id]
        for key in sorted(lease.keys):
            if key in self._data and self._data[key].lease == lease.id:
                self._delete_locked(key)

    def _emit(self, event: Event) -> None:
        self._history.append(event)
        for watch in list(self._watches):
            if event.key.startswith(watch.prefix):
                watch.queue.put(event)

    def _put_locked(self, key: str, value: bytes, lease: int | None) -> int:
        if lease is not None and lease not in self._leases:
            raise Unavailable(f"lease {lease} not found")
        self._revision += 1
        old = self._data.get(key)
        if old is not None and old.lease and old.lease in self._leases:
            self._leases[old.lease].keys.discard(key)
        self._data[key] = Entry(
            key=key,
            value=value,
            mod_revision=self._revision,
            create_revision=old.create_revision if old else self._revision,
            lease=lease or 0,
        )
        if lease:
            self._leases[lease].keys.add(key)
        self._emit(Event("put", key, value, self._revision))
        return self._revision

    def _delete_locked(self, key: str) -> bool:
        if key not in self._data:
            return False
        self._revision += 1
        del self._data[key]
        self._emit(Event("delete", key, None, self._revision))
        return True

    def get(self, key: str) -> Entry | None:
        with self._lock:
            self._check()
            return self._data.get(key)

    def scan(self, prefix: str) -> list[Entry]:
        return self.scan_with_revision(prefix)[0]

    def scan_with_revision(self, prefix: str) -> tuple[list[Entry], int]:
        with self._lock:
            self._check()
            entries = sorted(
                (e for k, e in self._data.items() if k.startswith(prefix)), key=lambda e: e.key
            )
            return entries, self._revision

    def scan_page(
        self,
        prefix: str,
        *,
        limit: int = PAGE_SIZE,
        cursor: str | None = None,
        descending: bool = False,
        keys_only: bool = False,
        revision: int | None = None,
    ) -> Page:
        with self._lock:
            self._check()
            data = self._data if revision in (None, self._revision) else self._at(revision)
            keys = sorted((k for k in data if k.startswith(prefix)), reverse=descending)
            if (
                cursor is not None
            ):  # as in etcd: [cursor, end) ascending, [prefix, cursor) descending
                keys = [k for k in keys if (k < cursor if descending else k >= cursor)]
            chosen = keys[: max(limit, 1)]
            entries = [replace(data[k], value=b"") if keys_only else data[k] for k in chosen]
            more = len(keys) > len(chosen)
            next_cursor = None
            if more:
                next_cursor = chosen[-1] if descending else chosen[-1] + "\0"
            return Page(entries, revision or self._revision, next_cursor)

    def _at(self, revision: int) -> dict[str, Entry]:
        """The keys as they were at `revision`, replayed from the history (leases left out)."""
        data: dict[str, Entry] = {}
        for event in self._history:
            if event.revision > revision:
                break
            if event.type == "delete" or event.value is None:
                data.pop(event.key, None)
                continue
            old = data.get(event.key)
            created = old.create_revision if old else event.revision
            data[event.key] = Entry(event.key, event.value, event.revision, created)
        return data

    def count(self, prefix: str) -> int:
        with self._lock:
            self._check()
            return sum(1 for key in self._data if key.startswith(prefix))

    def put(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        with self._lock:
            self._check()
            return self._put_locked(key, value, lease)

    def create(self, key: str, value: bytes, *, lease: int | None = None) -> bool:
        with self._lock:
            self._check()
            if key in self._data:
                return False
            self._put_locked(key, value, lease)
            return True

    def claim(self, claims: Sequence[Claim]) -> list[ClaimOutcome | MaomaoError]:
        outcomes: list[ClaimOutcome | MaomaoError] = []
        for claim in claims:
            with self._lock:
                try:
                    self._check()
                except MaomaoError as exc:
                    outcomes.append(exc)
                    continue
                held = self._data.get(claim.key)
                mine = held is not None and recognised(claim, held.value, "taken") != "taken"
                if claim.unless_changed is not None and not mine:
                    key, revision = claim.unless_changed
                    current = self._data.get(key)
                    if (current.mod_revision if current else 0) != revision:
                        outcomes.append("changed")
                        continue
                if held is not None:
                    outcomes.append(recognised(claim, held.value, "taken"))
                elif claim.guard is not None and claim.guard in self._data:
                    self._put_locked(claim.key, claim.busy_value, claim.lease)
                    for key, value in claim.with_busy:
                        self._put_locked(key, value, None)
                    outcomes.append("busy")
                else:
                    self._put_locked(claim.key, claim.value, claim.lease)
                    if claim.guard is not None:
                        self._put_locked(claim.guard, claim.guard_value, claim.guard_lease)
                    for key, value in claim.with_won:
                        self._put_locked(key, value, None)
                    outcomes.append("won")
        return outcomes

    def replace(self, key: str, value: bytes, *, mod_revision: int) -> bool:
        with self._lock:
            self._check()
            current = self._data.get(key)
            if (current.mod_revision if current else 0) != mod_revision:
                return False
            self._put_locked(key, value, None)
            return True

    def delete(self, key: str) -> bool:
        with self._lock:
            self._check()
            return self._delete_locked(key)

    def delete_if(self, key: str, *, mod_revision: int) -> bool:
        with self._lock:
            self._check()
            current = self._data.get(key)
            if current is None or current.mod_revision != mod_revision:
                return False
            return self._delete_locked(key)

    def delete_prefix(self, prefix: str) -> int:
        with self._lock:
            self._check()
            keys = [k for k in self._data if k.startswith(prefix)]
            for key in sorted(keys):
                self._delete_locked(key)
            return len(keys)

    def grant_lease(self, ttl: int) -> MemoryLease:
        with self._lock:
            self._check()
            self._next_lease += 1
            self._leases[self._next_lease] = _Lease(self._next_lease, ttl, self._clock() + ttl)
            return MemoryLease(self, self._next_lease, ttl)

    def lease_of(self, lease_id: int, ttl: int) -> MemoryLease:
        return MemoryLease(self, lease_id, ttl)

    def _refresh(self, lease_id: int) -> bool:
        with self._lock:
            self._check()
            lease = self._leases.get(lease_id)
            if lease is None:
                return False
            lease.expires = self._clock() + lease.ttl
            return True

    def _revoke(self, lease_id: int) -> None:
        with self._lock:
            self._check()
            lease = self._leases.get(lease_id)
            if lease is not None:
                self._drop_lease(lease)

    def watch(self, prefix: str, *, start_revision: int | None = None) -> MemoryWatch:
        with self._lock:
            self._check()
            if start_revision is not None and start_revision <= self.compacted:
                raise Compacted(
                    f"etcd at memory: revision {start_revision} was compacted",
                    self.compacted + 1,
                )
            watch = MemoryWatch(self, prefix)
            if start_revision is not None:
                for event in self._history:
                    if event.revision >= start_revision and event.key.startswith(prefix):
                        watch.queue.put(event)
            self._watches.append(watch)
            return watch

    def break_watches(self) -> None:
        """Tests: every open watch fails as on a lost connection (its iteration raises)."""
        with self._lock:
            broken, self._watches = self._watches, []
        for watch in broken:
            watch.queue.put(Unavailable("etcd at memory is unreachable: the watch broke"))

    def _unwatch(self, watch: MemoryWatch) -> None:
        with self._lock:
            if watch in self._watches:
                self._watches.remove(watch)

    def status(self) -> StoreStatus:
        with self._lock:
            self._check()
            return StoreStatus("memory", "memory", 1, 1, self._revision, 0, self._revision)

    def close(self) -> None:
        with self._lock:
            for watch in list(self._watches):
                watch.cancel()
