"""Feeds: the records of one kind as an etcd watch delivers them, typed and in order, across
lost connections: a broken watch is opened again (the store's client moves to another
endpoint) from the revision after the last one seen, so nothing is missed or repeated."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Generic

from ..errors import Compacted, RecordError, Unavailable
from ..models import R
from ..store.base import Store, Watch

# Seconds between attempts to open a broken watch again; after the last, the feed gives
# up and raises (about 30 s: a member's failover takes 2 s, a restart about 10).
RECONNECT_DELAYS: Sequence[float] = (0.1, 0.25, 0.5, 1, 1, 2, 2, 3, 5, 5, 5, 5)

Notice = Callable[[str], None]


class Feed(Generic[R]):
    """`(revision, record)` for each record written under a watched prefix from
    start_revision (default: now); deletions are left out, and a record that cannot be read
    is logged and skipped (as `records.decode` does). The watch is open once the feed
    exists (Unavailable is raised there), so nothing written after that is missed.

    When the watch breaks, it is opened again from the revision after the last event
    seen; if etcd compacted that revision away, `notice` says so and the feed resumes
    from the current revision. Unavailable is raised only when no endpoint answers for
    the whole of RECONNECT_DELAYS. `cancel()` (from any thread) ends the iteration."""

    def __init__(
        self,
        store: Store,
        prefix: str,
        cls: type[R],
        log: logging.Logger,
        *,
        start_revision: int | None = None,
        notice: Notice | None = None,
        retry_delays: Sequence[float] | None = None,
    ) -> None:
        self._store = store
        self._prefix = prefix
        self._cls = cls
        self._log = log
        self._notice = notice or (lambda text: log.warning("%s", text))
        self._delays = RECONNECT_DELAYS if retry_delays is None else retry_delays
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        if start_revision is None:
            # "From now" must be a revision too, or a reconnection could not resume.
            start_revision = store.scan_page(prefix, limit=1, keys_only=True).revision + 1
        self._next = start_revision  # the first revision not yet delivered
        self._watch: Watch = store.watch(prefix, start_revision=start_revision)

    @property
    def next_revision(self) -> int:
        """The revision the feed would resume from."""
        return self._next

    def __iter__(self) -> Iterator[tuple[int, R]]:
        while not self._cancelled.is_set():
            try:
                yield from self._events(self._watch)
                return  # the watch ended: cancelled
            except Unavailable as exc:
                if self._cancelled.is_set():
                    return
                self._log.warning("the watch of %s broke (%s); reconnecting", self._prefix, exc)
                self._reopen(exc)

    def _events(self, watch: Watch) -> Iterator[tuple[int, R]]:
        for event in watch:
            if event.revision < self._next:
                continue  # delivered before the reconnection
            self._next = event.revision + 1
            if event.type != "put" or event.value is None:
                continue
            try:
                record = self._cls.from_json(event.value)
            except RecordError as exc:
                # Written by a newer or broken member: say so, never end the feed.
                self._log.warning("skipping %s: %s", event.key, exc)
                continue
            yield event.revision, record

    def _reopen(self, failure: Unavailable) -> None:
        with self._lock:
            self._watch.cancel()
        for delay in self._delays:
            if self._cancelled.wait(delay):
                return
            try:
                watch = self._store.watch(self._prefix, start_revision=self._next)
            except Compacted as exc:
                self._notice(
                    f"revisions {self._next} to {exc.revision - 1} of {self._prefix} were "
                    "compacted while the watch was down: what was written then is not "
                    "shown; resuming from the current revision"
                )
                self._next = self._store.scan_page(self._prefix, limit=1).revision + 1
                continue
            except Unavailable as exc:
                failure = exc
                continue
            with self._lock:
                if self._cancelled.is_set():
                    watch.cancel()
                    return
                self._watch = watch
            return
        raise failure

    def cancel(self) -> None:
        self._cancelled.set()
        with self._lock:
            self._watch.cancel()
