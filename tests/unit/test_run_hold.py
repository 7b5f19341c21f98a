"""Manual runs hold a lease of their own: a lost-run sweep (a worker starting, a member
leaving) leaves a running manual run alone, and marks it lost once its process is gone."""

from __future__ import annotations

import threading
from pathlib import Path

from fakes.clock import FakeClock
from maomao_cli.adapters.containers import ScriptedRunner
from maomao_cli.config import DataSettings, DockerSettings, Settings, WorkerSettings
from maomao_cli.keys import Keys
from maomao_cli.models import Run, Tool
from maomao_cli.services.runs import RunService
from maomao_cli.services.worker.recovery import LostRuns
from maomao_cli.store.memory import MemoryStore

KEYS = Keys("/t")
TOOL = Tool(name="dummy", image="img")


def sweep(store: MemoryStore, member: str, clock: FakeClock) -> list[tuple[str, int]]:
    """A worker's sweep, as one starting up (named `member`) makes it; the retries asked."""
    retried: list[tuple[str, int]] = []
    LostRuns(KEYS, member, started=clock.now(), settings=WorkerSettings(), clock=clock).sweep(
        store, schedule_of=lambda name: None, retry=lambda n, f, a: retried.append((n, a))
    )
    return retried


def statuses(store: MemoryStore) -> list[str]:
    return [Run.from_json(e.value).status for e in store.scan(KEYS.runs())]


def test_a_running_manual_run_is_not_taken_for_lost(tmp_path: Path) -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock.monotonic)
    settings = Settings(
        data=DataSettings(importdir=str(tmp_path / "data")),
        docker=DockerSettings(network="none"),
        worker=WorkerSettings(lease_ttl=3),
    )
    runner = ScriptedRunner(block=True)
    service = RunService(store, KEYS, settings, runner, "member-a", hold_runs=True)
    done: list[Run] = []
    thread = threading.Thread(target=lambda: done.append(service.execute(TOOL)))
    thread.start()
    try:
        assert runner.started.wait(10)
        [held] = store.scan(KEYS.held_runs())
        assert held.lease != 0, "the key lives on the run's own lease"
        # A worker of the same member name starts after the run did, and another sweeps
        # as a member leaves: neither takes the run for lost.
        sweep(store, "member-a", clock)
        sweep(store, "member-b", clock)
        assert statuses(store) == ["running"]
    finally:
        runner.release()
        thread.join(10)
    assert [r.status for r in done] == ["succeeded"]
    assert statuses(store) == ["succeeded"]
    assert store.scan(KEYS.held_runs()) == [], "released with the final record"
    assert not store._leases, "its lease was revoked"
    # Its container is no worker's leftover: a worker of this member name keeps off it.
    [spec] = runner.specs
    assert spec.labels["maomao.member"] == "member-a" and "maomao.worker" not in spec.labels


def test_a_manual_run_whose_process_died_is_marked_lost(tmp_path: Path) -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock.monotonic)
    lease = store.grant_lease(3)
    store.put(KEYS.held_run("r1"), b"{}", lease=lease.id)
    run = Run(id="r1", tool="dummy", member="member-a", status="running", started=clock.now())
    store.put(KEYS.run("r1"), run.to_json())
    sweep(store, "member-b", clock)
    assert statuses(store) == ["running"], "held: still going"
    clock.advance(4)  # the process died: nobody refreshes its lease
    store.scan(KEYS.held_runs())  # (the memory store expires leases as it is read)
    sweep(store, "member-b", clock)
    assert statuses(store) == ["lost"]
