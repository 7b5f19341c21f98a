"""The store port: the few key-value operations maomao needs from etcd.

Services depend on this protocol only. Two adapters implement it and pass the same
contract suite (tests/contract/test_store_contract.py): EtcdStore, the real one, and
MemoryStore, for pure tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal, Protocol

from ..errors import MaomaoError
from ..frozen import frozen


@frozen
class Entry:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int = 0
    lease: int = 0


@frozen
class Event:
    type: Literal["put", "delete"]
    key: str
    value: bytes | None
    revision: int


@frozen
class Claim:
    """Create `key` only if absent; with a guard, also create `guard` (only if absent) in
    the same transaction. Claiming again with the same value counts as won, so a claim
    whose answer was lost in a network failure can be retried safely."""

    key: str
    value: bytes
    lease: int | None = None
    guard: str | None = None
    guard_value: bytes = b""
    guard_lease: int | None = None
    # Written to `key` instead of `value` when the guard is held, so the claim is still
    # taken once (the winner records the skip) and a retry can tell it was busy.
    busy_value: bytes = b""
    # Put in the same transaction as the won claim, or as the busy one: the firing's first
    # run record, so no claim is ever left without one (a claimant killed right after
    # its claim leaves a `running` record, which the lost-run sweep finds).
    with_won: tuple[tuple[str, bytes], ...] = ()
    with_busy: tuple[tuple[str, bytes], ...] = ()
    # (key, mod_revision): claim only while `key` is still at that revision, i.e. the
    # schedule is as the claimant last saw it. A pause that landed just before the firing,
    # while the claimant's watch had not delivered it yet, then stops the claim.
    unless_changed: tuple[str, int] | None = None


# won: this claim created the key; taken: someone else holds the key;
# busy: this claim took the key but the guard is held (e.g. the previous run still runs);
# changed: nothing was written, `unless_changed`'s key is no longer at its revision.
ClaimOutcome = Literal["won", "taken", "busy", "changed"]


def recognised(claim: Claim, held: bytes, otherwise: ClaimOutcome) -> ClaimOutcome:
    """The outcome of `claim` when its key holds `held`: ours already (won, or busy if we
    took it as busy: a claim answered again), else `otherwise`."""
    if held == claim.value:
        return "won"
    if claim.guard is not None and held == claim.busy_value:
        return "busy"
    return otherwise


@frozen
class Page:
    """One page of a scan: `cursor` continues it (None: this was the last page), and
    `revision` is the store revision it was read at (pass it on to read the next pages at
    the same revision, so a paged scan is one consistent snapshot)."""

    entries: list[Entry]
    revision: int
    cursor: str | None


# Entries per page of a scan. A run record is at most about 20 KiB (its log tail is capped
# in bytes, models.TAIL_BYTES), so a page stays well under 1 MiB; etcd refuses requests
# over 1.5 MiB and gRPC's client refuses responses over its receive limit.
PAGE_SIZE = 32


@frozen
class StoreStatus:
    endpoint: str
    version: str
    leader: int
    member_id: int
    raft_index: int
    db_size: int
    revision: int = 0
    alarms: tuple[str, ...] = ()  # e.g. ("NOSPACE",)
    quota: int | None = None  # the backend quota in bytes, when etcd says
    compact_revision: int | None = None  # -1: never compacted; None: unknown


class Lease(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def ttl(self) -> int: ...

    def refresh(self) -> bool:
        """Keep the lease alive; False when it has already expired (keys are gone)."""
        ...

    def revoke(self) -> None: ...


class Watch(Protocol):
    """Events under a prefix, in revision order. Iteration raises Unavailable when the
    connection is lost; the consumer then re-reads and watches again."""

    def __iter__(self) -> Iterator[Event]: ...

    def cancel(self) -> None: ...


class Store(Protocol):
    @property
    def endpoint(self) -> str: ...

    def get(self, key: str) -> Entry | None: ...

    def scan(self, prefix: str) -> list[Entry]:
        """Entries under prefix, sorted by key."""
        ...

    def scan_with_revision(self, prefix: str) -> tuple[list[Entry], int]:
        """Entries under prefix and the store revision they were read at (to watch from).
        Read in pages at one revision (`paged_scan`): no single response grows with the
        prefix."""
        ...

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
        """At most `limit` entries under prefix, by key (descending: last key first),
        from `cursor` (a previous page's) on; keys_only leaves the values empty. With
        `revision`, the page is read at that revision (Unavailable if it was compacted)."""
        ...

    def count(self, prefix: str) -> int: ...

    def put(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        """Write key; returns the new revision."""
        ...

    def create(self, key: str, value: bytes, *, lease: int | None = None) -> bool:
        """Write key only if it is absent, in one transaction; True if this call created it."""
        ...

    def claim(self, claims: Sequence[Claim]) -> list[ClaimOutcome | MaomaoError]:
        """One transaction per claim, all sent at once; per claim its outcome, or the
        error that left its outcome unknown (retry it after reconnecting)."""
        ...

    def replace(self, key: str, value: bytes, *, mod_revision: int) -> bool:
        """Write key only if it was not modified since mod_revision."""
        ...

    def delete(self, key: str) -> bool: ...

    def delete_if(self, key: str, *, mod_revision: int) -> bool:
        """Delete key only if it was not modified since mod_revision."""
        ...

    def delete_prefix(self, prefix: str) -> int: ...

    def grant_lease(self, ttl: int) -> Lease: ...

    def lease_of(self, lease_id: int, ttl: int) -> Lease:
        """A lease granted earlier, on any client, to refresh or revoke through this one
        (a client made anew from the cluster's current endpoints keeps the same lease)."""
        ...

    def watch(self, prefix: str, *, start_revision: int | None = None) -> Watch: ...

    def status(self) -> StoreStatus: ...

    def close(self) -> None: ...


def scan_pages(
    store: Store,
    prefix: str,
    *,
    descending: bool = False,
    keys_only: bool = False,
    page_size: int = PAGE_SIZE,
) -> Iterator[Entry]:
    """Every entry under prefix, one page at a time, all pages at the first page's revision;
    stop iterating to stop reading (the newest N cost N/page_size reads)."""
    cursor: str | None = None
    revision: int | None = None
    while True:
        page = store.scan_page(
            prefix,
            limit=page_size,
            cursor=cursor,
            descending=descending,
            keys_only=keys_only,
            revision=revision,
        )
        yield from page.entries
        if page.cursor is None:
            return
        cursor, revision = page.cursor, page.revision


# A whole-prefix read (`paged_scan`) grows its pages while they stay small, up to this
# many entries: each page makes etcd walk its index to the end of the range, so 32 at a
# time made loading 100,000 schedules quadratic. Bounded, as entries another member
# wrote may be large: at most MAX_PAGE of them (etcd's 1.5 MiB each) in one response.
MAX_PAGE = 128
PAGE_BYTES = 512 * 1024


def paged_scan(store: Store, prefix: str) -> tuple[list[Entry], int]:
    """`scan_with_revision` from `scan_page`: every page at the first page's revision,
    pages doubling (up to MAX_PAGE) while one holds less than half of PAGE_BYTES, back
    to PAGE_SIZE after one over it."""
    entries: list[Entry] = []
    limit = PAGE_SIZE
    page = store.scan_page(prefix, limit=limit)
    while True:
        entries.extend(page.entries)
        if page.cursor is None:
            return entries, page.revision
        size = sum(len(entry.key) + len(entry.value) for entry in page.entries)
        if size > PAGE_BYTES:
            limit = PAGE_SIZE
        elif size * 2 <= PAGE_BYTES:
            limit = min(limit * 2, MAX_PAGE)
        page = store.scan_page(prefix, limit=limit, cursor=page.cursor, revision=page.revision)
