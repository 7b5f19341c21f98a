"""Collector health through the run service (ScriptedRunner, memory store): a run that
exits 0 but wrote no control file, a broken one, or nothing at all is recorded with a
data warning and notified once, through the same hooks as a spike."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from maomao_cli.adapters.containers import ScriptedRunner
from maomao_cli.config import DataSettings, DockerSettings, Settings
from maomao_cli.keys import Keys
from maomao_cli.models import Tool
from maomao_cli.services.runs import RunService
from maomao_cli.services.spikes import SpikeService
from maomao_cli.store.memory import MemoryStore

TOOL = Tool(name="collector", image="img")


class Harness:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        settings = Settings(
            data=DataSettings(importdir=str(tmp_path / "data")),
            docker=DockerSettings(network="none"),
        )
        self.runner = ScriptedRunner()
        store = MemoryStore()
        keys = Keys("/t")
        # The real clock: the first check of a tool tells the run's files by their times.
        self.runs = RunService(store, keys, settings, self.runner, "member-a", clock=time.time)
        self.spikes = SpikeService(store, keys, settings, "member-a")
        self.runs.add_hook(self.spikes.check_after_run)
        self.events: list[dict[str, Any]] = []
        monkeypatch.setattr(self.spikes, "_deliver", self.events.append)

    def run(self, files: dict[str, str]) -> tuple[str | None, list[str]]:
        self.runner.files = dict(files)
        self.events.clear()
        record = self.runs.execute(TOOL)
        assert record.status == "succeeded"
        assert self.runs.get(record.id) == record  # saved as returned
        return record.data_warning, [e["kind"] for e in self.events]


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    return Harness(tmp_path, monkeypatch)


def test_a_healthy_run_has_no_data_warning(harness: Harness) -> None:
    assert harness.run({"data-1.txt": "x", "control-2026-01-01.csv": "630\n"}) == (None, [])
    assert harness.run({"data-2.txt": "y", "control-2026-01-02.csv": "600\n"}) == (None, [])


def test_each_kind_is_recorded_and_notified_once(harness: Harness) -> None:
    assert harness.run({"control-2026-01-01.csv": "630\n"}) == (None, [])
    assert harness.run({}) == ("no-new-data", ["no-new-data"])
    assert harness.run({"data-3.txt": "z"}) == ("missing-control", ["missing-control"])
    assert harness.run({"control-2026-01-04.csv": "lots\n"}) == ("bad-control", ["bad-control"])
    assert harness.run({"control-2026-01-05.csv": "610\n"}) == (None, [])


def test_the_first_run_on_a_member_is_judged_by_file_times(harness: Harness) -> None:
    assert harness.run({"data-1.txt": "x"}) == ("missing-control", ["missing-control"])


def test_the_warning_is_on_the_record_with_its_reason(harness: Harness) -> None:
    harness.run({"control-2026-01-01.csv": "630\n"})
    harness.run({})
    newest = harness.runs.list(TOOL.name)[0]
    assert newest.data_warning == "no-new-data"
    assert newest.warning is not None and newest.warning.startswith("no-new-data: ")


def test_a_spike_and_its_notification_still_come_with_the_rule(harness: Harness) -> None:
    harness.run({"control-2026-01-01.csv": "630\n"})
    harness.run({"control-2026-01-02.csv": "600\n"})
    assert harness.run({"control-2026-01-03.csv": "900\n"}) == (None, ["spike"])
    assert harness.events[0]["rule"] == "seed" and harness.events[0]["direction"] == "up"
