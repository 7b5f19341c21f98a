"""The member lease's keep-alive: its own thread and its own etcd client.

Nothing else the worker does (claiming thousands of firings, flushing records, sweeping
lost runs) shares this client or this thread, so nothing can delay a refresh: the member
stays alive exactly as long as its process and etcd are. The keep-alive runs from the
first registration to the very end of shutdown, after every run is recorded, and then
revokes the lease. gRPC channels are thread-safe; the client is made in this process
(never carried across a fork).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from ...errors import MaomaoError
from ...ports import Clock
from ...store.base import Store
from .membership import Membership, NameTaken

log = logging.getLogger("maomao.worker")


class KeepAlive:
    def __init__(
        self,
        membership: Membership,
        *,
        store_factory: Callable[[], Store],
        clock: Clock,
        on_unreachable: Callable[[MaomaoError], None],
        on_displaced: Callable[[], None],
    ) -> None:
        self._membership = membership
        self._store_factory = store_factory
        self._clock = clock
        self._on_unreachable = on_unreachable
        self._on_displaced = on_displaced
        self._store: Store | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The shortest round trip of a beat seen: half of it estimates the one-way delay
        # of a heartbeat through etcd (for the clock offset).
        self.round_trip: float | None = None

    def register(self) -> None:
        """Join the member list on this client (MaomaoError: the name is taken) and keep
        the lease alive from this moment: whatever the worker does next to start up (the
        leftover containers, the schedules) may take longer than the lease."""
        self._membership.register(self._client())
        self._thread = threading.Thread(target=self._loop, name="keepalive", daemon=True)
        self._thread.start()

    def _client(self) -> Store:
        if self._store is None:
            self._store = self._store_factory()
        return self._store

    def _close_client(self) -> None:
        # After a failed beat the next one makes a new client: the factory reads the
        # cluster's current endpoints, while this client knows only those it started
        # with (all of which may be gone). The lease is carried over by its id.
        store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(Exception):
                store.close()

    def _loop(self) -> None:
        while not self._clock.wait(self._stop, self._membership.keepalive_interval):
            try:
                self.beat()
            except Exception:  # if this thread ended, the member would silently vanish
                log.exception("member keep-alive failed; trying again on a new client")
                self._close_client()

    def beat(self) -> None:
        started = self._clock.monotonic()
        try:
            self._membership.beat(self._client())
        except NameTaken as exc:
            # Our lease expired and a namesake took the name: two of us must not run.
            log.error("%s; stopping this worker", exc)
            self._on_displaced()
            return
        except MaomaoError as exc:
            # Unreachable, or any other failure of etcd (a stream reset as its member
            # stops): again on a new client, as for an outage. Only a taken name stops us.
            log.debug("member lease refresh failed: %s", exc)
            self._close_client()
            self._on_unreachable(exc)
            return
        took = (self._clock.monotonic() - started) / 2  # a refresh and a put
        self.round_trip = took if self.round_trip is None else min(self.round_trip, took)

    def leave(self) -> None:
        """At the very end: stop refreshing, then revoke the lease (the entry and this
        member's guards go at once). Raises MaomaoError if etcd did not take it."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(30)
        try:
            self._membership.leave()
        finally:
            self._close_client()
