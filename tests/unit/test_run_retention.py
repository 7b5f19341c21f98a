"""Bounded run records and their retention: the tail capped in bytes, the newest N read
without reading the rest, pruning by count and age reading only the tool it prunes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from maomao_cli.config import DataSettings, Settings, WorkerSettings
from maomao_cli.keys import Keys
from maomao_cli.models import TAIL_BYTES, Run, cap_tail
from maomao_cli.services.runs import RunService
from maomao_cli.store.base import Page
from maomao_cli.store.memory import MemoryStore

DAY = 86400.0


class CountingStore(MemoryStore):
    """Counts what each read returns, by prefix."""

    def __init__(self) -> None:
        super().__init__()
        self.paged: list[tuple[str, int]] = []
        self.gets: list[str] = []

    def scan_page(self, prefix: str, **options: Any) -> Page:
        page = super().scan_page(prefix, **options)
        self.paged.append((prefix, len(page.entries)))
        return page

    def scan_with_revision(self, prefix: str) -> Any:
        raise AssertionError(f"a whole-prefix read of {prefix}")

    def get(self, key: str) -> Any:
        self.gets.append(key)
        return super().get(key)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def service(tmp_path: Path, store: MemoryStore, clock: Clock, **worker: Any) -> RunService:
    settings = Settings(data=DataSettings(importdir=str(tmp_path)), worker=WorkerSettings(**worker))
    return RunService(store, Keys("/t"), settings, None, "m", clock=clock)  # type: ignore[arg-type]


def record(svc: RunService, tool: str, started: float, status: str = "succeeded") -> Run:
    run = Run(id=f"{int(started)}-{tool}", tool=tool, member="m", status="running", started=started)
    svc.save(run)  # first write: indexed
    final = Run(
        id=run.id, tool=tool, member="m", status=status, started=started,  # type: ignore[arg-type]
        finished=started + 1,
    )  # fmt: skip
    svc.save(final)
    return final


@pytest.mark.parametrize(
    ("lines", "kept_lines", "note"),
    [
        ([], 0, False),
        (["short"] * 10, 10, False),
        (["x" * 2000] * 100, 8, True),  # the noisy tool: 200 KB of output
        (["é" * 2000] * 100, 1, True),  # escaped as \\u00e9 in JSON: six bytes a character
    ],
)
def test_tail_fits_its_byte_budget_as_json(lines: list[str], kept_lines: int, note: bool) -> None:
    tail = cap_tail(lines)
    assert len(json.dumps(tail)) <= TAIL_BYTES
    body = tail[1:] if note else tail
    assert len(body) == kept_lines
    assert body == lines[len(lines) - kept_lines :]  # the newest lines, oldest first
    assert bool(tail) and tail[0].startswith("…[") if note else not any("…[" in t for t in tail)
    if note:
        assert f"{len(lines) - kept_lines} earlier lines left out" in tail[0]


def test_one_line_larger_than_the_budget_keeps_its_start() -> None:
    tail = cap_tail(["y" * 100_000])
    assert len(json.dumps(tail)) <= TAIL_BYTES
    assert tail[-1].startswith("yyyy") and tail[-1].endswith("…[line cut]")


def test_newest_runs_are_read_a_page_at_a_time(tmp_path: Path) -> None:
    store, clock = CountingStore(), Clock(1_000 * DAY)
    svc = service(tmp_path, store, clock)
    for i in range(200):
        record(svc, "a" if i % 2 else "b", 999 * DAY + i)
    store.paged.clear()

    newest = svc.list(limit=5)

    assert [r.started for r in newest] == [999 * DAY + i for i in range(199, 194, -1)]
    assert store.paged == [("/t/runs/", 32)]  # one page, not 200 records

    store.paged.clear()
    store.gets.clear()
    of_a = svc.list("a", limit=3)
    assert [r.started for r in of_a] == [999 * DAY + i for i in (199, 197, 195)]
    assert {prefix for prefix, _ in store.paged} == {"/t/runindex/a/"}
    assert len(store.gets) == 3


def test_prune_by_count_and_age_reads_only_its_tool(tmp_path: Path) -> None:
    store, clock = CountingStore(), Clock(100 * DAY)
    svc = service(tmp_path, store, clock, runs_kept=3, runs_max_age=10 * DAY)
    old = [record(svc, "a", 80 * DAY + i) for i in range(2)]  # 20 days old
    young = [record(svc, "a", 99 * DAY + i) for i in range(5)]
    running = record(svc, "a", 50 * DAY, status="running")  # never pruned while it runs
    other = [record(svc, "b", 50 * DAY + i) for i in range(4)]
    store.paged.clear()

    removed = svc.prune("a")

    assert removed == 4  # the two old ones, and the young ones beyond the newest 3
    assert {p for p, _ in store.paged} == {"/t/runindex/a/"}
    kept = {r.id for r in svc.list("a")}
    assert kept == {r.id for r in young[2:]} | {running.id}
    assert not kept & {r.id for r in old}
    assert len(svc.list("b")) == len(other)  # another tool's records are not touched
    assert store.count("/t/runindex/a/") == 4


def test_an_index_key_without_its_record_is_dropped(tmp_path: Path) -> None:
    store, clock = CountingStore(), Clock(100 * DAY)
    svc = service(tmp_path, store, clock, runs_kept=1, runs_max_age=0)
    runs = [record(svc, "a", 99 * DAY + i) for i in range(3)]
    store.delete("/t/runs/" + runs[0].id)

    assert svc.prune("a") == 1
    assert store.count("/t/runindex/a/") == 1


def test_records_from_before_the_index_are_listed_and_then_indexed(tmp_path: Path) -> None:
    store, clock = CountingStore(), Clock(100 * DAY)
    svc = service(tmp_path, store, clock, runs_kept=2, runs_max_age=0)
    for i in range(4):  # written by an older maomao: no index keys
        run = Run(id=f"old-{i}", tool="a", member="m", status="succeeded", started=99 * DAY + i)
        store.put("/t/runs/" + run.id, run.to_json())

    assert [r.id for r in svc.list("a")] == ["old-3", "old-2", "old-1", "old-0"]
    assert svc.prune("a") == 2  # the first prune indexes them, then prunes by the index
    assert [r.id for r in svc.list("a")] == ["old-3", "old-2"]
    store.paged.clear()
    svc.prune("a")
    assert {prefix for prefix, _ in store.paged} == {"/t/runindex/a/"}
