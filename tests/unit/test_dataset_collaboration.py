"""Collaboration data, in-process: members sharing one dataset (FakeGit) and one store.

Each member is the run service and the dataset service wired as composition.py wires
them, with its own importdir and statedir. Tables of members and firings, no sleeping
(the push backoff goes to a list), no Docker.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from test_worker_memory import KEYS as WKEYS
from test_worker_memory import FakeRuns, Journal, inline_pool, put_schedule, settings

from fakes.clock import START, FakeClock
from fakes.git import FakeGit
from maomao_cli.adapters.containers import ScriptedRunner
from maomao_cli.config import DataSettings, DockerSettings, GitSettings, Settings, WorkerSettings
from maomao_cli.errors import GitError
from maomao_cli.gitmodels import GitAuth
from maomao_cli.keys import Keys
from maomao_cli.models import Dataset, Run, Schedule, Tool
from maomao_cli.services.datasetnotes import commit_message
from maomao_cli.services.datasets import DatasetService
from maomao_cli.services.registry import Registry
from maomao_cli.services.runrecords import mark_pushed
from maomao_cli.services.runs import RunService
from maomao_cli.services.worker import Worker
from maomao_cli.store.memory import MemoryStore

URL = "git://git.example.org/shared.git"
KEYS = Keys("/t")
FIRE = 1_800_000_003.0  # 2027-01-15T08:00:03Z


@dataclass
class Member:
    name: str
    runs: RunService
    datasets: DatasetService
    waits: list[float]
    root: Path


def member(
    tmp_path: Path, name: str, store: MemoryStore, git: FakeGit, runner: ScriptedRunner
) -> Member:
    root = tmp_path / name
    settings = Settings(
        data=DataSettings(importdir=str(root / "data"), statedir=str(root / "state")),
        docker=DockerSettings(network="none"),
        worker=WorkerSettings(member=name),
        git=GitSettings(timeout=5.0),
    )
    runs = RunService(store, KEYS, settings, runner, name)
    datasets = DatasetService(settings, Registry(store, KEYS), name, git)
    datasets.on_pushed = lambda ids: mark_pushed(store, KEYS, ids)
    waits: list[float] = []
    datasets.sleep = waits.append
    datasets.random = lambda: 0.5
    runs.set_data_dir_resolver(datasets.data_dir)
    runs.set_run_guard(datasets.run_lock)
    runs.add_hook(datasets.after_run)
    return Member(name, runs, datasets, waits, root)


@pytest.fixture
def store() -> MemoryStore:
    store = MemoryStore()
    store.put(KEYS.dataset("shared"), Dataset(name="shared", url=URL, push=True).to_json())
    return store


@pytest.fixture
def git() -> FakeGit:
    git = FakeGit()
    git.add_remote(URL)  # empty: the first push creates main
    return git


def register(store: MemoryStore, tool: Tool, *, everywhere: bool = False) -> Tool:
    store.put(KEYS.tool(tool.name), tool.to_json())
    schedule = Schedule(
        name=tool.name,
        tool=tool.name,
        cron="* * * * * */3",
        mode="everywhere" if everywhere else "once",
    )
    store.put(KEYS.schedule(tool.name), schedule.to_json())
    return tool


# The tool writes the same names on every member (as the 2019 example did).
def same_names() -> ScriptedRunner:
    return ScriptedRunner(files={"control-latest.csv": "1{n}\n", "state.txt": "{n}\n"})


@pytest.mark.parametrize(
    ("member_folders", "everywhere", "expected"),
    [
        (None, True, {"obs/a/control-latest.csv", "obs/b/control-latest.csv"}),
        (True, False, {"obs/a/control-latest.csv", "obs/b/control-latest.csv"}),
        (None, False, {"obs/control-latest.csv"}),
        (False, True, {"obs/control-latest.csv"}),
    ],
)
def test_member_folders_by_default_for_everywhere_and_as_an_option(
    tmp_path: Path,
    store: MemoryStore,
    git: FakeGit,
    member_folders: bool | None,
    everywhere: bool,
    expected: set[str],
) -> None:
    tool = register(
        store,
        Tool(
            name="t", image="i", dataset="shared", data_subdir="obs", member_folders=member_folders
        ),
        everywhere=everywhere,
    )
    a, b = (member(tmp_path, n, store, git, same_names()) for n in ("a", "b"))
    for m in (a, b):
        run = m.runs.execute(tool, trigger="schedule", schedule="t", fire_time=FIRE)
        assert run.status == "succeeded"
    controls = {p for p in git.remote_files(URL) if p.endswith(".csv")}
    assert controls == expected


def test_members_firing_together_all_reach_the_remote_after_rejected_pushes(
    tmp_path: Path, store: MemoryStore, git: FakeGit
) -> None:
    """Both members commit the same firing before either pushes (the race of issue 18):
    the second push is rejected, fetched, merged and pushed again at once."""
    tool = register(store, Tool(name="t", image="i", dataset="shared"), everywhere=True)
    a, b = (member(tmp_path, n, store, git, same_names()) for n in ("a", "b"))
    first = a.runs.execute(tool, trigger="schedule", schedule="t", fire_time=FIRE)
    # b cloned before a pushed: its first push is rejected, then it merges (member
    # folders: no file changed on both sides) and pushes.
    git.commit_on_remote(URL, {"elsewhere/x.csv": "9\n"})  # a third member, meanwhile
    second = b.runs.execute(tool, trigger="schedule", schedule="t", fire_time=FIRE)
    assert (first.pushed, second.pushed) == (True, True)
    assert first.warning is None and second.warning is None
    messages = [c.message for c in git.commits.values()]
    for run in (first, second):
        assert sum(f"maomao-run: {run.id}" in m for m in messages) == 1
    assert {"a/control-latest.csv", "b/control-latest.csv"} <= set(git.remote_files(URL))


class RacingGit(FakeGit):
    """Another member pushes just before each of this member's first `lose` pushes."""

    def __init__(self, lose: int) -> None:
        super().__init__()
        self.lose = lose
        self.pushes = 0

    def push(self, repo_dir: Path, *, branch: str | None, auth: GitAuth, timeout: float) -> None:
        self.pushes += 1
        if self.pushes <= self.lose:
            self.commit_on_remote(URL, {f"other/{self.pushes}.csv": "1\n"})
        super().push(repo_dir, branch=branch, auth=auth, timeout=timeout)


@pytest.mark.parametrize(
    ("lose", "pushed", "waits"),
    [
        (0, True, []),
        (1, True, [0.25]),
        (3, True, [0.25, 0.5, 1.0]),
        (6, False, [0.25, 0.5, 1.0, 2.0, 4.0]),  # six attempts, then it waits for the next run
    ],
)
def test_rejected_pushes_are_retried_at_once_with_a_bounded_backoff(
    tmp_path: Path,
    store: MemoryStore,
    lose: int,
    pushed: bool,
    waits: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    git = RacingGit(lose)
    git.add_remote(URL, {"README.md": "seed\n"})
    tool = register(store, Tool(name="t", image="i", dataset="shared"))
    a = member(tmp_path, "a", store, git, ScriptedRunner(files={"c-{n}.csv": "1\n"}))
    with caplog.at_level(logging.WARNING, logger="maomao.datasets"):
        run = a.runs.execute(tool)
    assert run.pushed is pushed and run.dataset_commit is not None
    assert a.waits == waits
    rejected = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) == lose  # every failed push is a log line
    status = a.datasets.status("shared")
    assert status.unpushed_runs == (() if pushed else (run.id,))
    assert (status.ahead == 0) is pushed


def test_an_unpushed_run_is_marked_until_the_next_push_takes_it(
    tmp_path: Path, store: MemoryStore, git: FakeGit
) -> None:
    tool = register(store, Tool(name="t", image="i", dataset="shared"))
    a = member(tmp_path, "a", store, git, ScriptedRunner(files={"c-{n}.csv": "1\n"}))
    a.datasets.clone("shared")
    git.remotes[URL].reachable = False
    lost = a.runs.execute(tool)
    assert lost.status == "succeeded" and lost.pushed is False
    assert "not pushed" in (lost.warning or "")
    assert a.runs.get(lost.id).pushed is False
    assert a.datasets.status("shared").unpushed_runs == (lost.id,)

    git.remotes[URL].reachable = True
    later = a.runs.execute(tool)
    assert later.pushed is True
    assert a.runs.get(lost.id).pushed is True  # the next successful push cleared it
    assert a.datasets.status("shared").unpushed_runs == ()
    on_remote = {p for p in git.remote_files(URL) if p.startswith("c-")}
    assert on_remote == {"c-1.csv", "c-2.csv"}  # no local commit lost


def test_a_manual_push_clears_the_marks_too(
    tmp_path: Path, store: MemoryStore, git: FakeGit
) -> None:
    tool = register(store, Tool(name="t", image="i", dataset="shared"))
    a = member(tmp_path, "a", store, git, ScriptedRunner(files={"c-{n}.csv": "1\n"}))
    a.datasets.clone("shared")
    git.remotes[URL].reachable = False
    lost = a.runs.execute(tool)
    git.remotes[URL].reachable = True
    a.datasets.push("shared")
    assert a.runs.get(lost.id).pushed is True
    assert a.datasets.status("shared").unpushed_runs == ()


def test_a_conflict_is_not_retried_and_keeps_the_commit(
    tmp_path: Path, store: MemoryStore, git: FakeGit
) -> None:
    tool = register(store, Tool(name="t", image="i", dataset="shared", member_folders=False))
    a = member(tmp_path, "a", store, git, ScriptedRunner(files={"control-latest.csv": "1\n"}))
    a.runs.execute(tool)
    git.commit_on_remote(URL, {"control-latest.csv": "2\n"})
    a.datasets._pull_before_run = lambda *args: None  # type: ignore[method-assign]
    a.runs.runner = ScriptedRunner(files={"control-latest.csv": "333\n"})
    run = a.runs.execute(tool)
    assert run.pushed is False and "control-latest.csv" in (run.warning or "")
    assert a.waits == []  # a conflict needs a person, not a retry
    assert a.datasets.status("shared").ahead == 1


def test_commit_trailers_carry_the_run_the_member_and_the_nominal_fire_time() -> None:
    run = Run(
        id="20270115T080004Z-abcdef",
        tool="t",
        member="lab-a",
        status="succeeded",
        trigger="schedule",
        schedule="t-3s",
        fire_time=FIRE,
        started=FIRE + 1.4,
        finished=FIRE + 2.0,
    )
    message = commit_message(Tool(name="t", image="i"), run)
    trailers = message.split("\n\n", 1)[1].splitlines()
    assert trailers == [
        "maomao-tool: t",
        "maomao-run: 20270115T080004Z-abcdef",
        "maomao-member: lab-a",
        "maomao-fire-time: 2027-01-15T08:00:03Z",
        "maomao-schedule: t-3s",
    ]


def test_a_failing_push_of_another_kind_is_not_retried(
    tmp_path: Path, store: MemoryStore, git: FakeGit
) -> None:
    class Broken(FakeGit):
        def push(self, *args: object, **kwargs: object) -> None:
            raise GitError(f"push {URL}: authentication failed")

    broken = Broken()
    broken.add_remote(URL)
    tool = register(store, Tool(name="t", image="i", dataset="shared"))
    a = member(tmp_path, "a", store, broken, ScriptedRunner(files={"c.csv": "1\n"}))
    run = a.runs.execute(tool)
    assert run.pushed is False and "authentication failed" in (run.warning or "")
    assert a.waits == []


def test_the_first_run_into_an_empty_remote_creates_its_branch(
    tmp_path: Path, store: MemoryStore, git: FakeGit
) -> None:
    tool = register(store, Tool(name="t", image="i", dataset="shared"))
    a = member(tmp_path, "a", store, git, ScriptedRunner(files={"c.csv": "1\n"}))
    run = a.runs.execute(tool)
    assert run.pushed is True
    assert git.remotes[URL].branches["main"] == run.dataset_commit
    assert replace(run, pushed=None).dataset_commit == run.dataset_commit


def test_a_run_that_cannot_succeed_on_retry_is_not_retried() -> None:
    """The worker retries a failed run only when its record says a retry can change
    something (not: the data directory's owner): the fake-clock worker of
    test_worker_memory, one firing with retries left."""

    class Refused(FakeRuns):
        def execute(self, tool: Tool, **kwargs: object) -> Run:
            run = super().execute(tool, **kwargs)  # type: ignore[arg-type]
            final = replace(run, status="failed", retryable=False, error="data directory ...")
            self.save(final)
            return final

    clock = FakeClock()
    store = MemoryStore(clock=clock.monotonic)
    store.put(WKEYS.tool("t"), Tool(name="t", image="img").to_json())
    put_schedule(store, cron="41 * * * * *", retries=3)  # START is at :40
    journal = Journal()
    worker = Worker(
        settings(),
        store_factory=lambda: store,
        make_runs=lambda given: Refused(given, "a", journal, clock),
        member="a",
        clock=clock,
        make_pool=inline_pool,
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        assert worker.ready.wait(10)
        clock.wait_for_waiters(2)
        for _ in range(5):
            clock.advance(1.0)
    finally:
        stop.set()
        for _ in range(40):
            if not thread.is_alive():
                break
            clock.advance(0.5)
        thread.join(10)
    assert [(e.fire_time, e.attempt) for e in journal.executions] == [(START + 1, 1)]


def test_overlapping_runs_of_a_dataset_tool_take_turns_in_its_staging_folder(
    tmp_path: Path, store: MemoryStore, git: FakeGit
) -> None:
    """Two runs at once on one member (--allow-overlap, or an overlap guard lost with a
    member lease): the second waits for the first, so it never resets the staging folder
    under the first one's feet, and both runs' files reach the remote."""
    tool = register(store, Tool(name="t", image="i", dataset="shared"))
    runner = ScriptedRunner(block=True, files={"c-{n}.csv": "1\n"})
    a = member(tmp_path, "a", store, git, runner)
    done: list[Run] = []
    first = threading.Thread(target=lambda: done.append(a.runs.execute(tool)))
    first.start()
    assert runner.started.wait(10)
    second = threading.Thread(target=lambda: done.append(a.runs.execute(tool)))
    second.start()
    while len(a.runs.list()) < 2:  # the second is recorded `running`, then waits its turn
        threading.Event().wait(0.01)
    runner.release()
    first.join(20)
    second.join(20)
    assert [r.status for r in done] == ["succeeded", "succeeded"]
    assert all(r.pushed is True for r in done), done
    assert {p for p in git.remote_files(URL) if p.startswith("c-")} == {"c-1.csv", "c-2.csv"}
