"""A watch on an etcd prefix, as the store port's iterator of events.

python3-etcd3 calls back on its own thread; the events are handed over through a queue.
A broken stream marks its endpoint failed, so the next watch opens on another member.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import etcd3
import etcd3.watch

from ..errors import BadInput, Compacted
from .base import Event
from .etcd_paging import range_end

if TYPE_CHECKING:
    from .etcd import EtcdStore


class _SixValues:
    """python3-etcd3 0.13's watch thread calls `six.itervalues` without importing six,
    so a broken watch stream never reaches its callbacks; give it the one function."""

    @staticmethod
    def itervalues(mapping: dict[Any, Any]) -> Iterator[Any]:
        return iter(mapping.values())


if not hasattr(etcd3.watch, "six"):
    etcd3.watch.six = _SixValues


class EtcdWatch:
    def __init__(self, store: EtcdStore, prefix: str, start_revision: int | None) -> None:
        self._store = store
        self._queue: queue.Queue[Any] = queue.Queue()
        self._cancelled = threading.Event()
        kwargs: dict[str, Any] = {"range_end": range_end(prefix)}
        if start_revision is not None:
            kwargs["start_revision"] = start_revision
        self._watcher: Any = cast(Any, None)  # set by add(), on the stream it uses

        def add(c: Any) -> int:
            # Remember the stream it lives on: a new token opens a new one for later watches.
            self._watcher = c.watcher
            return int(c.add_watch_callback(prefix, self._queue.put, **kwargs))

        self._watch_id = store._call(add)
        if self._watch_id < 0 and store._settings.user is not None:
            # etcd refuses a watch on a stream whose token expired only by cancelling it
            # at once (id -1): authenticate again and open it on a new stream.
            with contextlib.suppress(Exception):
                self._watcher.cancel(self._watch_id)
            store._reauthenticate()
            self._watch_id = store._call(add)
        if self._watch_id < 0:
            raise BadInput(
                f"etcd at {store.endpoint} refused to watch {prefix}",
                hint="check the etcd user's role: it needs read access to the maomao prefix",
            )

    def __iter__(self) -> Iterator[Event]:
        while not self._cancelled.is_set():
            response = self._queue.get()
            if response is None or self._cancelled.is_set():
                return
            if isinstance(response, BaseException):
                error = self._store._translate(response)
                if not isinstance(error, Compacted):
                    self._store._watch_broke(self._watcher)
                raise error
            for event in response.events:
                is_put = isinstance(event, etcd3.events.PutEvent)
                yield Event(
                    type="put" if is_put else "delete",
                    key=event.key.decode(),
                    value=bytes(event.value) if is_put else None,
                    revision=int(event.mod_revision),
                )

    def cancel(self) -> None:
        if self._cancelled.is_set():
            return
        self._cancelled.set()
        self._queue.put(None)
        # The connection may already be gone; there is nothing to cancel then.
        with contextlib.suppress(Exception):
            self._watcher.cancel(self._watch_id)
