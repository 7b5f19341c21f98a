"""One event stream driven through ASGI in the test's own event loop (TestClient hands a
response over only once it has ended; an event stream never ends)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

from fastapi import FastAPI

Message = MutableMapping[str, Any]
TIMEOUT = 20.0


class EventStream:
    """One GET /v1/events in flight: its response start, then its lines as they come."""

    def __init__(self, app: FastAPI, headers: dict[str, str] | None = None) -> None:
        self._sent: asyncio.Queue[Message] = asyncio.Queue()
        self._gone = asyncio.Event()
        self._asked = False
        self._buffer = ""
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": "/v1/events", "raw_path": b"/v1/events",
            "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        }  # fmt: skip
        self._task = asyncio.create_task(app(scope, self._receive, self._sent.put))

    async def _receive(self) -> Message:
        if not self._asked:
            self._asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def start(self) -> Message:
        message = await asyncio.wait_for(self._sent.get(), TIMEOUT)
        assert message["type"] == "http.response.start", message
        return message

    async def lines(self) -> AsyncIterator[str]:
        while True:
            while "\n" in self._buffer:
                line, self._buffer = self._buffer.split("\n", 1)
                yield line
            message = await asyncio.wait_for(self._sent.get(), TIMEOUT)
            if not message.get("more_body", False) and not message.get("body"):
                return
            self._buffer += message.get("body", b"").decode()

    async def body(self) -> bytes:
        """The whole body of a response that ends (an error instead of a stream)."""
        chunks = []
        while True:
            message = await asyncio.wait_for(self._sent.get(), TIMEOUT)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def close(self) -> None:
        """The client goes away: the stream ends and cancels its feeds."""
        self._gone.set()
        await asyncio.wait_for(self._task, TIMEOUT)


async def events_until(stream: EventStream, done: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, id, data) of each event, until done(events) says enough."""
    seen: list[tuple[str, str, dict[str, Any]]] = []
    kind, event_id = "", ""
    async for line in stream.lines():
        if line.startswith("id: "):
            event_id = line.removeprefix("id: ")
        elif line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            seen.append((kind, event_id, json.loads(line.removeprefix("data: "))))
            if done(seen):
                break
    return seen
