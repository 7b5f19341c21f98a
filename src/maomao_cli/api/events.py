"""`GET /v1/events`: new spikes and run state changes as server-sent events.

Two etcd watches (runs and spikes prefixes) feed one asyncio queue from their threads.
A run is sent when its status changes (not on every log-tail update); a spike when it
is written. Each event's id is its etcd revision, so a client that reconnects with
Last-Event-ID resumes exactly where it stopped (within etcd's compaction window).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator

from ..errors import MaomaoError
from ..keys import Keys
from ..models import Run, Spike
from ..store.base import Event, Store, Watch

log = logging.getLogger("maomao.serve")

KEEPALIVE_SECONDS = 15.0  # a comment line this often lets proxies and clients see a live stream


def open_watches(store: Store, keys: Keys, last_event_id: str | None) -> list[Watch]:
    """Blocking: start both watches (raises Unavailable when etcd cannot be reached)."""
    start = None
    if last_event_id and last_event_id.isdigit():
        start = int(last_event_id) + 1
    runs = store.watch(keys.runs(), start_revision=start)
    try:
        spikes = store.watch(keys.spikes(), start_revision=start)
    except BaseException:
        runs.cancel()
        raise
    return [runs, spikes]


def _format(kind: str, revision: int, data: dict[str, object]) -> str:
    return f"id: {revision}\nevent: {kind}\ndata: {json.dumps(data, sort_keys=True)}\n\n"


async def stream(watches: list[Watch], keys: Keys) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Event | str] = asyncio.Queue()

    def deliver(item: Event | str) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the client is gone
            loop.call_soon_threadsafe(inbox.put_nowait, item)

    def pump(watch: Watch) -> None:
        try:
            for event in watch:
                deliver(event)
        except MaomaoError as exc:
            deliver(exc.message)
        except Exception as exc:  # never let a watch thread die silently
            deliver(f"event stream failed: {exc}")

    for watch in watches:
        threading.Thread(target=pump, args=(watch,), name="maomao-sse", daemon=True).start()

    runs_prefix, spikes_prefix = keys.runs(), keys.spikes()
    statuses: dict[str, str] = {}
    try:
        yield ": maomao events\n\n"
        while True:
            try:
                item = await asyncio.wait_for(inbox.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if isinstance(item, str):
                # The watch broke (etcd lost): say so and end; the client reconnects
                # with Last-Event-ID and misses nothing.
                yield f"event: error\ndata: {json.dumps({'message': item})}\n\n"
                return
            if item.type != "put" or item.value is None:
                continue
            if item.key.startswith(runs_prefix):
                try:
                    run = Run.from_json(item.value)
                except MaomaoError:
                    continue
                if statuses.get(run.id) == run.status:
                    continue
                statuses[run.id] = run.status
                if len(statuses) > 10_000:  # bound the memory of a long-lived stream
                    statuses.clear()
                yield _format("run", item.revision, run.to_dict())
            elif item.key.startswith(spikes_prefix):
                try:
                    spike = Spike.from_json(item.value)
                except MaomaoError:
                    continue
                yield _format("spike", item.revision, spike.to_dict())
    finally:
        for watch in watches:
            watch.cancel()
