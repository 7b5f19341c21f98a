"""The worker's outbox: run records kept through an outage never undo a `lost` mark."""

from __future__ import annotations

from dataclasses import replace

from maomao_cli.models import Run
from maomao_cli.services.outbox import Outbox
from maomao_cli.store.memory import MemoryStore

KEY = "/p/runs/r1"
RUNNING = Run(id="r1", tool="t", member="w3", status="running", schedule="s", fire_time=10.0)


def test_a_late_outcome_keeps_the_lost_mark_and_becomes_a_warning() -> None:
    store = MemoryStore()
    outbox = Outbox(store, runs_prefix="/p/runs/")
    outbox.put(KEY, RUNNING.to_json())
    store.down = True  # cut off: the outcome waits in the outbox
    outbox.put(KEY, replace(RUNNING, status="succeeded", exit_code=0).to_json())
    assert outbox.pending == 1
    store.down = False
    # Meanwhile another member marked it lost (and retried it).
    store.put(KEY, replace(RUNNING, status="lost", error="member w3 stopped").to_json())
    assert outbox.flush() == 1
    entry = store.get(KEY)
    assert entry is not None
    kept = Run.from_json(entry.value)
    assert kept.status == "lost"
    assert kept.error == "member w3 stopped"
    assert kept.warning == "finished after being marked lost: succeeded (exit 0)"


def test_other_records_and_unmarked_runs_are_plain_puts() -> None:
    store = MemoryStore()
    outbox = Outbox(store, runs_prefix="/p/runs/")
    outbox.put(KEY, RUNNING.to_json())
    outbox.put(KEY, replace(RUNNING, status="failed", error="x").to_json())
    entry = store.get(KEY)
    assert entry is not None and Run.from_json(entry.value).status == "failed"
    outbox.put("/p/members/w3", b"{}")
    assert store.get("/p/members/w3") is not None
