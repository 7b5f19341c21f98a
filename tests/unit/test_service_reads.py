"""The service methods the HTTP API reads through: run-now with a chosen id and a start
callback, one spike, the feeds of runs and spikes, the live members."""

from __future__ import annotations

import logging
import threading
from itertools import islice
from pathlib import Path

import pytest

from maomao_cli.adapters.containers import ScriptedRunner
from maomao_cli.config import DataSettings, DockerSettings, Settings
from maomao_cli.errors import BadInput, NotFound
from maomao_cli.keys import Keys
from maomao_cli.models import Member, Run, Spike, Tool
from maomao_cli.services.members import MemberService
from maomao_cli.services.runs import RunService
from maomao_cli.services.spikes import SpikeService
from maomao_cli.store.memory import MemoryStore, MemoryWatch

KEYS = Keys("/t")
TOOL = Tool(name="dummy", image="img")


def spike(sortable: str, tool: str = "probe") -> Spike:
    return Spike(
        tool=tool, sortable=sortable, value=9.0, baseline=1.0, deviation=8.0,
        deviation_pct=800.0, score=5.0, direction="up",
    )  # fmt: skip


def settings(tmp_path: Path) -> Settings:
    return Settings(
        data=DataSettings(importdir=str(tmp_path / "data")), docker=DockerSettings(network="none")
    )


def run_service(tmp_path: Path, store: MemoryStore, runner: ScriptedRunner) -> RunService:
    return RunService(store, KEYS, settings(tmp_path), runner, "member-a")


# RunService.execute(run_id=, on_start=) --------------------------------------------


def test_on_start_gets_the_saved_running_record_under_the_chosen_id(tmp_path: Path) -> None:
    store = MemoryStore()
    service = run_service(tmp_path, store, ScriptedRunner())
    seen: list[tuple[Run, Run | None]] = []

    final = service.execute(
        TOOL,
        run_id="20240101T000000Z-abc123",
        on_start=lambda r: seen.append((r, service.get(r.id))),
    )

    assert len(seen) == 1
    started, stored = seen[0]
    assert started.id == final.id == "20240101T000000Z-abc123"
    assert started.status == "running" and stored == started  # in the store when called
    assert final.status == "succeeded" and service.get(final.id) == final


def test_while_running_works_on_its_own_thread_while_the_container_runs(
    tmp_path: Path,
) -> None:
    runner = ScriptedRunner(block=True)
    service = run_service(tmp_path, MemoryStore(), runner)
    meanwhile: list[tuple[str, bool]] = []

    def work() -> None:
        # Let the container start first, then note where this ran and that it had.
        runner.started.wait(5)
        meanwhile.append((threading.current_thread().name, runner.started.is_set()))
        runner.release()  # the container ends only after this work: it overlapped it

    final = service.execute(TOOL, while_running=work)
    assert final.status == "succeeded"
    assert meanwhile == [("maomao-meanwhile", True)]


def test_prepare_hooks_readies_each_hook_that_named_a_preparation(tmp_path: Path) -> None:
    service = run_service(tmp_path, MemoryStore(), ScriptedRunner())
    readied: list[str] = []
    service.add_hook(lambda tool, run, data_dir: None, prepare=lambda: readied.append("a"))
    service.add_hook(lambda tool, run, data_dir: None)
    service.add_hook(lambda tool, run, data_dir: None, prepare=lambda: readied.append("c"))
    service.prepare_hooks()
    assert readied == ["a", "c"]


def test_while_running_is_not_called_when_no_container_starts(tmp_path: Path) -> None:
    service = run_service(tmp_path, MemoryStore(), ScriptedRunner(image_error="no such image"))
    called: list[bool] = []
    final = service.execute(TOOL, while_running=lambda: called.append(True))
    assert final.status == "failed" and called == []


def test_an_invalid_run_id_writes_nothing(tmp_path: Path) -> None:
    store = MemoryStore()
    service = run_service(tmp_path, store, ScriptedRunner())
    called: list[Run] = []
    with pytest.raises(BadInput, match="invalid run id"):
        service.execute(TOOL, run_id="../x", on_start=called.append)
    assert called == [] and store.count(KEYS.runs()) == 0


def test_a_failing_on_start_leaves_a_failed_record(tmp_path: Path) -> None:
    service = run_service(tmp_path, MemoryStore(), ScriptedRunner())

    def refuse(run: Run) -> None:
        raise RuntimeError("caller gone")

    with pytest.raises(RuntimeError):
        service.execute(TOOL, run_id="r1", on_start=refuse)
    recorded = service.get("r1")
    assert (recorded.status, recorded.error) == ("failed", "caller gone")


# SpikeService.get -------------------------------------------------------------------


def test_get_one_spike(tmp_path: Path) -> None:
    store = MemoryStore()
    service = SpikeService(store, KEYS, settings(tmp_path), "member-a")
    store.put(KEYS.spike("probe", "2024-01-02"), spike("2024-01-02").to_json())
    assert service.get("probe", "2024-01-02") == spike("2024-01-02")
    with pytest.raises(NotFound, match="no spike '2024-01-03' for tool 'probe'"):
        service.get("probe", "2024-01-03")
    for bad in ("", ".", "..", "a/b"):
        with pytest.raises(BadInput, match="invalid spike key"):
            service.get("probe", bad)
    with pytest.raises(BadInput, match="invalid tool name"):
        service.get("Probe", "2024-01-02")


# Feeds ------------------------------------------------------------------------------


def test_spike_feed_replays_from_a_revision_and_logs_what_it_cannot_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    service = SpikeService(store, KEYS, settings(tmp_path), "member-a")
    store.put(KEYS.spike("probe", "2024-01-01"), spike("2024-01-01").to_json())
    start = store.put(KEYS.spike("probe", "2024-01-02"), spike("2024-01-02").to_json())
    store.put(KEYS.spike("probe", "2024-01-09"), b"{not json")
    store.delete(KEYS.spike("probe", "2024-01-01"))
    store.put(KEYS.spike("other", "2024-01-03"), spike("2024-01-03", "other").to_json())
    last = store.put(KEYS.spike("probe", "2024-01-04"), spike("2024-01-04").to_json())
    logger = logging.getLogger("maomao.test-feed")

    feed = service.feed(start_revision=start, logger=logger)
    got = list(islice(feed, 3))
    feed.cancel()

    assert got == [
        (start, spike("2024-01-02")),
        (last - 1, spike("2024-01-03", "other")),
        (last, spike("2024-01-04")),
    ]
    assert [(r.name, r.getMessage().split(":")[0]) for r in caplog.records] == [
        ("maomao.test-feed", f"skipping {KEYS.spike('probe', '2024-01-09')}")
    ]
    only_probe = service.feed("probe", start_revision=start)
    assert [s.sortable for _, s in islice(only_probe, 2)] == ["2024-01-02", "2024-01-04"]
    only_probe.cancel()
    assert list(only_probe) == []  # a cancelled feed ends


def test_run_feed_has_every_write_of_a_run_record(tmp_path: Path) -> None:
    store = MemoryStore()
    service = run_service(tmp_path, store, ScriptedRunner())
    final = service.execute(TOOL, run_id="r1")
    feed = service.feed(start_revision=1)
    got = [run.status for _, run in islice(feed, 2)]
    feed.cancel()
    assert got == ["running", final.status]


class WritesWhenWatched(MemoryStore):
    """Writes one more spike as soon as a watch is open: what a worker does meanwhile."""

    def watch(self, prefix: str, *, start_revision: int | None = None) -> MemoryWatch:
        opened = super().watch(prefix, start_revision=start_revision)
        self.put(KEYS.spike("probe", "2024-02-01"), spike("2024-02-01").to_json())
        return opened


def test_follow_yields_only_spikes_stored_after_it_starts(tmp_path: Path) -> None:
    store = WritesWhenWatched()
    store.put(KEYS.spike("probe", "2024-01-01"), spike("2024-01-01").to_json())
    service = SpikeService(store, KEYS, settings(tmp_path), "member-a")
    followed = service.follow("probe")
    assert next(followed) == spike("2024-02-01")
    followed.close()


# MemberService ----------------------------------------------------------------------


def test_members_live_and_one() -> None:
    store = MemoryStore()
    for name in ("lab-b", "lab-a"):
        member = Member(name=name, host=name, version="0.1.0", started=1.0)
        store.put(KEYS.member(name), member.to_json())
    members = MemberService(store, KEYS)
    assert [m.name for m in members.live()] == ["lab-a", "lab-b"]
    assert members.get("lab-b").host == "lab-b"
    with pytest.raises(NotFound, match="no live member named 'lab-c'"):
        members.get("lab-c")
    with pytest.raises(BadInput, match="invalid member name"):
        members.get("Lab")
