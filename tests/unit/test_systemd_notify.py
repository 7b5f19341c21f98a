"""systemd's notify protocol from a worker on the memory store and a fake clock, read from
a fake NOTIFY_SOCKET (a datagram socket this test binds): READY=1 after the schedules are
loaded and the member registered, WATCHDOG=1 at half of WATCHDOG_USEC from the loop that
claims, STATUS= with schedules and running runs, STOPPING=1 on shutdown."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_worker_memory import FakeRuns, Journal, inline_pool, settings

from fakes.clock import FakeClock
from maomao_cli.adapters.systemd import SystemdNotify, watchdog_interval
from maomao_cli.keys import Keys
from maomao_cli.models import Schedule, Tool
from maomao_cli.services.worker import Worker
from maomao_cli.store.memory import MemoryStore

KEYS = Keys("/maomao")


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def lines(messages: list[str]) -> list[str]:
    return [line for message in messages for line in message.split("\n")]


def test_ready_watchdog_status_and_stopping(tmp_path: Path, notify_socket: socket.socket) -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock.monotonic)
    store.put(KEYS.tool("t"), Tool(name="t", image="img").to_json())
    store.put(
        KEYS.schedule("s"),
        Schedule(name="s", tool="t", cron="* * * * * *", created=clock.now()).to_json(),
    )
    environ = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "4000000"}
    notify = SystemdNotify.from_environment(environ, monotonic=clock.monotonic)
    assert notify is not None
    journal = Journal()
    worker = Worker(
        settings(),
        store_factory=lambda: store,
        make_runs=lambda s: FakeRuns(s, "a", journal, clock),
        member="a",
        clock=clock,
        make_pool=inline_pool,
        observer=notify,
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    assert worker.ready.wait(10)
    clock.wait_for_waiters(3)  # loop, keep-alive, outbox flush
    first = lines(received(notify_socket))
    assert first[:2] == ["READY=1", "STATUS=1 schedule(s), 0 run(s) in progress"]
    assert first[2:] == ["WATCHDOG=1"]
    for second in range(1, 11):
        clock.advance(1.0)
        pings = lines(received(notify_socket)).count("WATCHDOG=1")
        # Half of 4 s: a ping every 2 s of the loop's turns, none in between.
        assert pings == (1 if second % 2 == 0 else 0), second
    assert len(journal.executions) == 10  # the loop that pinged was claiming all along
    stop.set()
    for _ in range(20):
        if not thread.is_alive():
            break
        clock.advance(0.5)
    thread.join(10)
    assert not thread.is_alive()
    last = lines(received(notify_socket))
    assert "STOPPING=1" in last
    assert "READY=1" not in last
    notify.close()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # another process's
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(environ) == expected


def test_no_notify_socket_no_notifier() -> None:
    assert SystemdNotify.from_environment({}) is None


def test_abstract_socket_name(notify_socket: socket.socket) -> None:
    name = f"maomao-test-{id(notify_socket)}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    server.settimeout(5)
    try:
        notify = SystemdNotify.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notify is not None
        notify.stopping()
        assert server.recv(4096).decode().startswith("STOPPING=1")
        notify.close()
    finally:
        server.close()
