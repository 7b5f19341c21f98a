"""`GET /v1/events`: new spikes and run state changes as server-sent events.

Two feeds (the run service's and the spike service's, each an etcd watch) fill one
asyncio queue from their threads. A run is sent when its status changes (not on every
log-tail update); a spike when it is written. The two threads deliver in no common order
(a spike of revision 10 may come before a run of revision 9), so an event's id is where
each feed stood when it was sent, `RUNS.SPIKES` (the last revision delivered from each):
a client that reconnects with Last-Event-ID resumes each feed after its own position and
misses nothing (within etcd's compaction window). A plain revision N resumes both after N.

Each stream holds two feed threads and two etcd watches, so at most `[serve] max_streams`
are open at once (503 beyond); a stream's slot is given back as soon as its client goes
away, whether or not the stream had started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from ..composition import Services
from ..errors import MaomaoError
from ..frozen import frozen
from ..models import Run, Spike
from ..services.feeds import Feed
from .deps import ServicesDep
from .errors import Refused

log = logging.getLogger("maomao.api")

KEEPALIVE_SECONDS = 15.0  # a comment line this often lets proxies and clients see a live stream
STATUSES_KEPT = 10_000  # bounds the memory of a long-lived stream
RETRY_AFTER_SECONDS = 10

router = APIRouter(tags=["events"])


class StreamSlots:
    """At most `limit` event streams at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            if self.open >= self.limit:
                raise Refused(
                    503,
                    "too-many-streams",
                    f"{self.open} event streams are open, the most [serve] max_streams allows",
                    retry_after=RETRY_AFTER_SECONDS,
                )
            self.open += 1

    def give_back(self) -> None:
        with self._lock:
            self.open -= 1


class EventStreamResponse(StreamingResponse):
    """A stream that ends when its client goes away (listened for, not only noticed at
    the next send), then cancels its feeds and gives its slot back, exactly once."""

    def __init__(self, feeds: Feeds, slots: StreamSlots) -> None:
        super().__init__(
            stream(feeds),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._feeds = feeds
        self._slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def until_done(part: Callable[[], Awaitable[None]]) -> None:
                    await part()
                    group.cancel_scope.cancel()

                group.start_soon(until_done, partial(self.stream_response, send))
                await until_done(partial(self.listen_for_disconnect, receive))
        except* OSError:
            pass  # the client went away while an event was being sent
        finally:
            self._feeds.cancel()
            self._slots.give_back()


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Event stream"}},
)
async def stream_events(request: Request, services: ServicesDep) -> StreamingResponse:
    """Server-sent events: `run` (a run's status changed) and `spike` (a new spike)."""
    slots: StreamSlots = request.app.state.stream_slots  # set by create_app
    slots.take()
    try:
        feeds = await run_in_threadpool(open_feeds, services, request.headers.get("last-event-id"))
        return EventStreamResponse(feeds, slots)
    except BaseException:
        slots.give_back()
        raise


@frozen
class Feeds:
    runs: Feed[Run]
    spikes: Feed[Spike]

    def cancel(self) -> None:
        self.runs.cancel()
        self.spikes.cancel()


def resume_points(last_event_id: str | None) -> tuple[int | None, int | None]:
    """The revisions the runs and the spikes feeds resume from (None: from now), for a
    Last-Event-ID of `RUNS.SPIKES` or of one revision; anything else starts from now."""
    parts = (last_event_id or "").split(".")
    if not 1 <= len(parts) <= 2 or not all(p.isdigit() and len(p) <= 19 for p in parts):
        return None, None
    runs, spikes = int(parts[0]), int(parts[-1])
    return runs + 1, spikes + 1


def event_id(runs: int, spikes: int) -> str:
    return f"{runs}.{spikes}"


def open_feeds(services: Services, last_event_id: str | None) -> Feeds:
    """Blocking: open both feeds (raises Unavailable when etcd cannot be reached)."""
    runs_start, spikes_start = resume_points(last_event_id)
    runs = services.run_records.feed(start_revision=runs_start, logger=log)
    try:
        spikes = services.spikes.feed(start_revision=spikes_start, logger=log)
    except BaseException:
        runs.cancel()
        raise
    return Feeds(runs, spikes)


def _format(kind: str, position: str, data: dict[str, object]) -> str:
    return f"id: {position}\nevent: {kind}\ndata: {json.dumps(data, sort_keys=True)}\n\n"


Item = tuple[int, Run | Spike] | str  # a record with its revision, or why a feed ended


def _pump(feed: Feed[Run] | Feed[Spike], deliver: Callable[[Item], None]) -> None:
    try:
        for revision, record in feed:
            deliver((revision, record))
    except MaomaoError as exc:
        deliver(exc.message)
    except Exception as exc:  # never let a feed thread die silently
        deliver(f"event stream failed: {exc}")


async def stream(feeds: Feeds) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Item] = asyncio.Queue()

    def deliver(item: Item) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the client is gone
            loop.call_soon_threadsafe(inbox.put_nowait, item)

    # The last revision delivered from each feed (each feed is in order on its own).
    runs_at, spikes_at = feeds.runs.next_revision - 1, feeds.spikes.next_revision - 1
    for feed in (feeds.runs, feeds.spikes):
        threading.Thread(target=_pump, args=(feed, deliver), name="maomao-sse", daemon=True).start()

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
                # A feed broke (etcd lost): say so and end; the client reconnects with
                # Last-Event-ID and misses nothing.
                yield f"event: error\ndata: {json.dumps({'message': item})}\n\n"
                return
            revision, record = item
            if isinstance(record, Spike):
                spikes_at = revision
                yield _format("spike", event_id(runs_at, spikes_at), record.to_dict())
                continue
            runs_at = revision  # a run not sent (same status) moves the position too
            if statuses.get(record.id) != record.status:
                statuses[record.id] = record.status
                if len(statuses) > STATUSES_KEPT:
                    statuses.clear()
                yield _format("run", event_id(runs_at, spikes_at), record.to_dict())
    finally:
        feeds.cancel()
