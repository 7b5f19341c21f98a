"""A store wrapper that never loses a run record while etcd is unreachable.

Run records are last-writer-wins puts: when one fails because etcd is down, it is
kept in order and written when the worker reconnects (`flush`). Reads and every
other operation pass through and fail as usual, so claims are never faked. With a
journal (services/outboxjournal.py) what is kept is on disk too, fsync'd, and a new
outbox on the same journal starts with what an earlier process kept.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace

from ..errors import MaomaoError, Unavailable
from ..models import Run
from ..store.base import (
    PAGE_SIZE,
    Claim,
    ClaimOutcome,
    Entry,
    Lease,
    Page,
    Store,
    StoreStatus,
    Watch,
)
from .outboxjournal import OutboxJournal
from .records import decode

log = logging.getLogger("maomao.worker")


class Outbox:
    def __init__(
        self,
        target: Store,
        *,
        runs_prefix: str | None = None,
        journal: OutboxJournal | None = None,
    ) -> None:
        self.target = target
        # Run records under this prefix never overwrite a `lost` mark (see _write).
        self._runs_prefix = runs_prefix
        # key -> (value, lease, sequence number in the journal)
        self._pending: OrderedDict[str, tuple[bytes, int | None, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._journal = journal
        self._seq = 0
        if journal is not None:
            for key, (value, seq) in journal.load().items():
                self._pending[key] = (value, None, seq)
                self._seq = max(self._seq, seq)
            if self._pending:
                log.info("%d run record(s) kept by an earlier worker to write", len(self._pending))

    # Everything but put goes straight to the current store.
    @property
    def endpoint(self) -> str:
        return self.target.endpoint

    def get(self, key: str) -> Entry | None:
        return self.target.get(key)

    def scan(self, prefix: str) -> list[Entry]:
        return self.target.scan(prefix)

    def scan_with_revision(self, prefix: str) -> tuple[list[Entry], int]:
        return self.target.scan_with_revision(prefix)

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
        return self.target.scan_page(
            prefix,
            limit=limit,
            cursor=cursor,
            descending=descending,
            keys_only=keys_only,
            revision=revision,
        )

    def count(self, prefix: str) -> int:
        return self.target.count(prefix)

    def create(self, key: str, value: bytes, *, lease: int | None = None) -> bool:
        return self.target.create(key, value, lease=lease)

    def claim(self, claims: Sequence[Claim]) -> list[ClaimOutcome | MaomaoError]:
        return self.target.claim(claims)

    def replace(self, key: str, value: bytes, *, mod_revision: int) -> bool:
        return self.target.replace(key, value, mod_revision=mod_revision)

    def delete(self, key: str) -> bool:
        return self.target.delete(key)

    def delete_if(self, key: str, *, mod_revision: int) -> bool:
        return self.target.delete_if(key, mod_revision=mod_revision)

    def delete_prefix(self, prefix: str) -> int:
        return self.target.delete_prefix(prefix)

    def grant_lease(self, ttl: int) -> Lease:
        return self.target.grant_lease(ttl)

    def lease_of(self, lease_id: int, ttl: int) -> Lease:
        return self.target.lease_of(lease_id, ttl)

    def watch(self, prefix: str, *, start_revision: int | None = None) -> Watch:
        return self.target.watch(prefix, start_revision=start_revision)

    def status(self) -> StoreStatus:
        return self.target.status()

    def close(self) -> None:
        self.target.close()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def put(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        with self._lock:
            if key in self._pending:  # keep order: a newer write replaces the queued one
                self._keep(key, value, lease)
                return 0
        try:
            return self._write(key, value, lease)
        except Unavailable:
            with self._lock:
                self._keep(key, value, lease)
            return 0

    def _keep(self, key: str, value: bytes, lease: int | None) -> None:
        """Queue a write (caller holds the lock); on disk first, if it can outlive us (a
        write on a lease cannot: the lease is this process's)."""
        self._seq += 1
        if self._journal is not None and lease is None:
            try:
                self._journal.kept(self._seq, key, value)
            except OSError as exc:
                log.warning("could not keep %s on disk (%s); kept in memory only", key, exc)
        self._pending.pop(key, None)
        self._pending[key] = (value, lease, self._seq)

    def flush(self) -> int:
        """Write what was kept; returns how many records were written."""
        written = 0
        while True:
            with self._lock:
                if not self._pending:
                    self._clear_journal()
                    return written
                key, (value, lease, seq) = next(iter(self._pending.items()))
            self._write(key, value, lease)
            with self._lock:
                if self._pending.get(key) == (value, lease, seq):
                    self._pending.pop(key)
                    self._mark_written(seq)
            written += 1

    def _mark_written(self, seq: int) -> None:
        if self._journal is None:
            return
        try:
            self._journal.written(seq)
        except OSError as exc:  # written twice at worst: the puts are idempotent
            log.warning("could not note a written record on disk: %s", exc)

    def _clear_journal(self) -> None:
        if self._journal is None:
            return
        try:
            self._journal.clear()
        except OSError as exc:
            log.warning("could not empty the outbox journal: %s", exc)

    def _write(self, key: str, value: bytes, lease: int | None) -> int:
        """Put, except over a run record another member marked `lost` while we were cut
        off: that mark decided a retry, so it stays, and our late outcome becomes a
        warning on it (otherwise the firing would show two successful runs, unmarked)."""
        if self._runs_prefix is None or not key.startswith(self._runs_prefix):
            return self.target.put(key, value, lease=lease)
        while True:
            current = self.target.get(key)
            marked = decode(Run, current) if current is not None else None
            if current is None or marked is None or marked.status != "lost":
                return self.target.put(key, value, lease=lease)
            late = decode(Run, Entry(key, value, 0, 0))
            if late is None or late.status in ("lost", "running"):
                return 0
            note = f"finished after being marked lost: {late.status}"
            if late.exit_code is not None:
                note += f" (exit {late.exit_code})"
            if marked.warning is not None and note in marked.warning:
                return 0
            kept = replace(marked, warning=f"{marked.warning}; {note}" if marked.warning else note)
            if self.target.replace(key, kept.to_json(), mod_revision=current.mod_revision):
                log.warning("run %s was marked lost meanwhile; kept the mark (%s)", late.id, note)
                return 0
