"""The store port: the few key-value operations maomao needs from etcd.

Services depend on this protocol only. Two adapters implement it and pass the same
contract suite (tests/contract/test_store_contract.py): EtcdStore, the real one, and
MemoryStore, for pure tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ..errors import MaomaoError


@dataclass(frozen=True)
class Entry:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int = 0
    lease: int = 0


@dataclass(frozen=True)
class Event:
    type: Literal["put", "delete"]
    key: str
    value: bytes | None
    revision: int


@dataclass(frozen=True)
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


# won: this claim created the key; taken: someone else holds the key;
# busy: this claim took the key but the guard is held (e.g. the previous run still runs).
ClaimOutcome = Literal["won", "taken", "busy"]


@dataclass(frozen=True)
class StoreStatus:
    endpoint: str
    version: str
    leader: int
    member_id: int
    raft_index: int
    db_size: int


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
        """Entries under prefix and the store revision they were read at (to watch from)."""
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

    def watch(self, prefix: str, *, start_revision: int | None = None) -> Watch: ...

    def status(self) -> StoreStatus: ...

    def close(self) -> None: ...
