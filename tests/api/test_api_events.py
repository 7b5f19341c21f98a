"""`GET /v1/events` in-process: the app driven through ASGI in this test's event loop
(TestClient hands a response over only once it has ended; an event stream never ends)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from maomao_cli.api.app import create_app
from maomao_cli.api.events import resume_points
from maomao_cli.errors import Unavailable
from maomao_cli.models import Run, Spike
from maomao_cli.services import feeds
from maomao_cli.services.registry import ToolSpec
from maomao_cli.store.base import Event, Watch
from maomao_cli.store.memory import MemoryStore

from .conftest import Api
from .streams import EventStream, Message, events_until


class SpyWatch:
    """A memory watch that says whether it was cancelled, and can break as a lost etcd
    connection breaks a watch (the iteration raises Unavailable)."""

    def __init__(self, inner: Watch) -> None:
        self.inner = inner
        self.cancelled = False
        self.broken = False

    def __iter__(self) -> Iterator[Event]:
        yield from self.inner
        if self.broken:
            raise Unavailable("etcd at memory is unreachable: the watch broke")

    def cancel(self) -> None:
        self.cancelled = True
        self.inner.cancel()

    def break_(self) -> None:
        self.broken = True
        self.inner.cancel()


class SpyStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.watches: list[SpyWatch] = []

    def watch(self, prefix: str, *, start_revision: int | None = None) -> SpyWatch:  # type: ignore[override]
        watch = SpyWatch(super().watch(prefix, start_revision=start_revision))
        self.watches.append(watch)
        return watch


@pytest.fixture
def store() -> SpyStore:
    return SpyStore()


def spy(api: Api) -> SpyStore:
    assert isinstance(api.store, SpyStore)
    return api.store


SPIKE = Spike(
    tool="dummy", sortable="2024-05-01", value=3.0, baseline=1.0, deviation=2.0,
    deviation_pct=200.0, score=4.0, direction="up",
)  # fmt: skip


RUN = Run(id="20240501T101500Z-aaaaaa", tool="dummy", member="m", status="running")


def run_statuses(seen: list[tuple[str, str, dict[str, Any]]], run_id: str) -> list[str]:
    return [d["status"] for k, _, d in seen if k == "run" and d["id"] == run_id]


@pytest.mark.timeout(60)
def test_events_stream_run_changes_and_spikes(api: Api) -> None:
    app = create_app(api.services)
    api.services.registry.register_tool(ToolSpec(name="dummy", image="img"))

    async def scenario() -> tuple[Message, list[tuple[str, str, dict[str, Any]]], str]:
        stream = EventStream(app)
        start = await stream.start()
        lines = stream.lines()
        assert (await anext(lines)).startswith(":")  # the stream is open: the feeds are set
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            started = await client.post("/v1/runs", json={"tool": "dummy"})
        assert started.status_code == 202, started.text
        run_id: str = started.json()["run_id"]
        api.store.put(api.keys.spike("dummy", "2024-05-01"), SPIKE.to_json())
        seen = await events_until(
            stream,
            lambda seen: (
                "failed" in run_statuses(seen, run_id) and any(k == "spike" for k, _, _ in seen)
            ),
        )
        await stream.close()
        return start, seen, run_id

    start, seen, run_id = asyncio.run(scenario())
    headers = dict(start["headers"])
    assert headers[b"content-type"].startswith(b"text/event-stream")
    assert headers[b"cache-control"] == b"no-cache"
    assert run_statuses(seen, run_id) == ["running", "failed"]  # one event per status change
    assert [d["sortable"] for k, _, d in seen if k == "spike"] == ["2024-05-01"]
    # Each id is where the runs and the spikes feeds stood: neither ever goes back.
    positions = [tuple(int(p) for p in i.split(".")) for _, i, _ in seen]
    assert all(len(p) == 2 for p in positions)
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(positions))
    watches = spy(api).watches
    assert len(watches) == 2 and all(w.cancelled for w in watches)  # the client left


def test_last_event_id_resumes_after_it_and_unreadable_records_are_logged(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(api.services)
    first = api.store.put(api.keys.spike("dummy", "2024-05-01"), SPIKE.to_json())
    api.store.put(api.keys.run("broken"), b"{not json")
    later = Spike(**{**SPIKE.to_dict(), "sortable": "2024-05-02"})
    api.store.put(api.keys.spike("dummy", "2024-05-02"), later.to_json())

    def api_records() -> list[logging.LogRecord]:
        # The API's own (a stray thread of an earlier test may log elsewhere meanwhile).
        return [r for r in caplog.records if r.name.startswith("maomao.api")]

    async def scenario() -> list[tuple[str, str, dict[str, Any]]]:
        stream = EventStream(app, {"Last-Event-ID": str(first)})
        await stream.start()
        seen = await events_until(stream, lambda seen: len(seen) == 1)
        # The runs feed reads (and logs) on its own, maybe after the spike came out.
        for _ in range(1000):
            if api_records():
                break
            await asyncio.sleep(0.01)
        await stream.close()
        return seen

    with caplog.at_level(logging.WARNING, "maomao.api"):
        seen = asyncio.run(scenario())
    assert [(k, d["sortable"]) for k, _, d in seen] == [("spike", "2024-05-02")]
    assert [(r.name, r.getMessage().split(":")[0]) for r in api_records()] == [
        ("maomao.api", f"skipping {api.keys.run('broken')}")
    ]


@pytest.mark.timeout(60)
def test_each_feed_resumes_after_its_own_position(api: Api) -> None:
    """The feeds deliver in no common order: after a spike at revision S the client may
    not yet have the run at R < S. An id `R0.S` (runs before R, spikes up to S) resumes
    with that run and without the spike."""
    app = create_app(api.services)
    api.services.registry.register_tool(ToolSpec(name="dummy", image="img"))
    before = api.store.put(api.keys.tool("other"), b"{}")
    run = api.store.put(api.keys.run("20240501T101500Z-aaaaaa"), RUN.to_json())
    spike = api.store.put(api.keys.spike("dummy", "2024-05-01"), SPIKE.to_json())
    assert before < run < spike

    async def scenario() -> list[tuple[str, str, dict[str, Any]]]:
        stream = EventStream(app, {"Last-Event-ID": f"{before}.{spike}"})
        await stream.start()
        seen = await events_until(stream, lambda seen: len(seen) == 1)
        later = Spike(**{**SPIKE.to_dict(), "sortable": "2024-05-02"})
        api.store.put(api.keys.spike("dummy", "2024-05-02"), later.to_json())
        seen += await events_until(stream, lambda seen: len(seen) == 1)
        await stream.close()
        return seen

    seen = asyncio.run(scenario())
    assert [(k, d.get("id") or d.get("sortable")) for k, _, d in seen] == [
        ("run", RUN.id),
        ("spike", "2024-05-02"),
    ]
    assert seen[0][1] == f"{run}.{spike}"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("41.57", (42, 58)),
        ("41", (42, 42)),
        (None, (None, None)),
        ("", (None, None)),
        ("41.57.3", (None, None)),
        ("-1", (None, None)),
        ("4.x", (None, None)),
        ("9" * 40, (None, None)),
    ],
)
def test_resume_points_from_last_event_id(
    header: str | None, expected: tuple[int | None, int | None]
) -> None:
    assert resume_points(header) == expected


def test_a_broken_feed_ends_the_stream_with_an_error_event(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken watch is opened again (services/feeds.py); when etcd stays away for all the
    reconnection delays the stream says so and ends."""
    monkeypatch.setattr(feeds, "RECONNECT_DELAYS", (0.0,))
    app = create_app(api.services)

    async def scenario() -> list[str]:
        stream = EventStream(app)
        await stream.start()
        lines = stream.lines()
        assert (await anext(lines)).startswith(":")
        spy(api).down = True  # etcd went away
        for watch in spy(api).watches:
            watch.break_()
        rest = [line async for line in lines]
        await stream.close()
        return rest

    rest = asyncio.run(scenario())
    message = json.dumps({"message": "etcd at memory is unreachable: simulated outage"})
    assert rest == ["", "event: error", f"data: {message}", ""]  # then the stream ends
