"""Spike detection after a run, stored once, and the notification hooks delivered for real
(a shell command, a webhook server on loopback): JSON, bounded by a timeout, never blocking
the run. Real processes and a real server, so these wait (bounded) for the delivery."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from maomao_cli.config import Settings, SpikeSettings
from maomao_cli.keys import Keys
from maomao_cli.models import Run, Spike, Tool
from maomao_cli.services.spikes import SpikeService
from maomao_cli.store.memory import MemoryStore

KEYS = Keys("/maomao")
TOOL = Tool(name="t", image="img")


def write_series(folder: Path, values: list[float]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, value in enumerate(values):
        (folder / f"control-2026-01-{i + 1:02d}.csv").write_text(f"value\n{value}\n")


def service(store: MemoryStore, **spikes: object) -> SpikeService:
    settings = Settings(spikes=replace(SpikeSettings(min_history=4), **spikes))  # type: ignore[arg-type]
    return SpikeService(store, KEYS, settings, "member-a")


def run(run_id: str) -> Run:
    return Run(id=run_id, tool="t", member="member-a", status="succeeded")


def wait_until(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_newest_spike_is_stored_once_with_run_and_member(tmp_path: Path) -> None:
    store = MemoryStore()
    spikes = service(store)
    write_series(tmp_path, [100, 101, 99, 100, 100.5, 1000])
    spikes.check_after_run(TOOL, run("r6"), tmp_path)
    spikes.check_after_run(TOOL, run("r6-again"), tmp_path)  # the same point: not twice
    stored = [Spike.from_json(e.value) for e in store.scan(KEYS.spikes("t"))]
    assert [(s.sortable, s.run_id, s.member, s.direction) for s in stored] == [
        ("2026-01-06", "r6", "member-a", "up")
    ]


def test_no_spike_no_record(tmp_path: Path) -> None:
    store = MemoryStore()
    write_series(tmp_path, [100, 101, 99, 100, 100.5, 100.2])
    service(store).check_after_run(TOOL, run("r"), tmp_path)
    assert store.scan(KEYS.spikes()) == []


def test_hook_command_gets_the_spike_as_json_on_stdin(tmp_path: Path) -> None:
    received = tmp_path / "received.json"
    spikes = service(MemoryStore(), hook_command=f"cat > {received}")
    write_series(tmp_path / "data", [100, 101, 99, 100, 100.5, 1000])
    spikes.check_after_run(TOOL, run("r6"), tmp_path / "data")
    assert wait_until(lambda: received.exists() and received.read_text().strip())
    payload = json.loads(received.read_text())
    assert payload["tool"] == "t" and payload["value"] == 1000 and payload["run_id"] == "r6"


def test_webhook_gets_a_json_post(tmp_path: Path) -> None:
    bodies: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            bodies.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/spikes"
        spikes = service(MemoryStore(), webhook_url=url)
        write_series(tmp_path, [100, 101, 99, 100, 100.5, 20])
        spikes.check_after_run(TOOL, run("r6"), tmp_path)
        assert wait_until(lambda: bodies)
    finally:
        server.shutdown()
        server.server_close()
    assert bodies[0]["direction"] == "down" and bodies[0]["tool"] == "t"


def test_a_hanging_hook_never_blocks_and_is_logged_after_its_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spikes = service(MemoryStore(), hook_command="sleep 30", hook_timeout=0.5)
    write_series(tmp_path, [100, 101, 99, 100, 100.5, 1000])
    caplog.set_level(logging.WARNING, logger="maomao.spikes")
    returned = threading.Event()

    def check() -> None:
        spikes.check_after_run(TOOL, run("r6"), tmp_path)
        returned.set()

    threading.Thread(target=check, daemon=True).start()
    # The check returns while the hook still hangs (it runs beside the worker).
    assert returned.wait(5)
    assert wait_until(lambda: "hook command failed" in caplog.text)
    assert "timed out" in caplog.text


def test_a_failing_hook_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spikes = service(MemoryStore(), hook_command="exit 3")
    write_series(tmp_path, [100, 101, 99, 100, 100.5, 1000])
    caplog.set_level(logging.WARNING, logger="maomao.spikes")
    spikes.check_after_run(TOOL, run("r6"), tmp_path)
    assert wait_until(lambda: "hook command failed" in caplog.text)


def test_hook_command_gets_a_data_warning_with_its_kind(tmp_path: Path) -> None:
    received = tmp_path / "received.json"
    spikes = service(MemoryStore(), hook_command=f"cat > {received}")
    data = tmp_path / "data"
    write_series(data, [100, 101])
    (data / "control-2026-01-03.csv").write_text("not a number\n")
    started = Run(id="r3", tool="t", member="member-a", status="succeeded", started=0.0)
    updated = spikes.check_after_run(TOOL, started, data)
    assert updated is not None and updated.data_warning == "bad-control"
    assert wait_until(lambda: received.exists() and received.read_text().strip())
    payload = json.loads(received.read_text())
    assert payload["kind"] == "bad-control" and payload["run_id"] == "r3"
    assert "control-2026-01-03.csv" in payload["message"]


def test_the_spike_hook_payload_says_its_kind_and_rule(tmp_path: Path) -> None:
    received = tmp_path / "received.json"
    spikes = service(MemoryStore(), hook_command=f"cat > {received}")
    write_series(tmp_path / "data", [630, 600, 900])
    spikes.check_after_run(TOOL, run("r3"), tmp_path / "data")
    assert wait_until(lambda: received.exists() and received.read_text().strip())
    payload = json.loads(received.read_text())
    assert (payload["kind"], payload["rule"], payload["value"]) == ("spike", "seed", 900)
