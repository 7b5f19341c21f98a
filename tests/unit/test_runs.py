"""RunService with a ScriptedRunner and the in-memory store: records, hooks, retention."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from maomao_cli.adapters.containers import ScriptedRunner
from maomao_cli.config import DataSettings, DockerSettings, Settings, WorkerSettings
from maomao_cli.errors import BadInput, NotFound
from maomao_cli.keys import Keys
from maomao_cli.models import Run, Tool
from maomao_cli.ports import ContainerResult
from maomao_cli.services.fulllogs import FullLogs
from maomao_cli.services.runrecords import RunRecords, first_writes
from maomao_cli.services.runs import RunService
from maomao_cli.store.base import Page
from maomao_cli.store.memory import MemoryStore

TOOL = Tool(name="dummy", image="maomao/dummy-tool:test", env={"A": "1"})


class Clock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0  # every reading is a second later: ids and order are distinct
        return self.now


def make_service(
    tmp_path: Path, runner: ScriptedRunner, *, runs_kept: int = 200, **docker: object
) -> RunService:
    settings = Settings(
        data=DataSettings(importdir=str(tmp_path / "data")),
        docker=DockerSettings(network="none", **docker),  # type: ignore[arg-type]
        worker=WorkerSettings(runs_kept=runs_kept),
    )
    return RunService(MemoryStore(), Keys("/t"), settings, runner, "member-a", clock=Clock())


def test_successful_run_is_recorded_with_digest_times_and_tail(tmp_path: Path) -> None:
    runner = ScriptedRunner(output=["hello", "world"], digest="sha256:abc")
    service = make_service(tmp_path, runner)
    seen: list[str] = []

    run = service.execute(TOOL, on_output=seen.append)

    assert run.status == "succeeded"
    assert run.exit_code == 0
    assert run.image_digest == "sha256:abc"
    assert run.log_tail == ["hello", "world"]
    assert seen == ["hello", "world"]
    assert run.started is not None and run.finished is not None and run.finished > run.started
    assert service.get(run.id) == run
    assert (tmp_path / "data" / "tools" / "dummy").is_dir()


def test_record_is_running_while_the_container_runs(tmp_path: Path) -> None:
    runner = ScriptedRunner(block=True)
    service = make_service(tmp_path, runner)
    result: list[Run] = []
    thread = threading.Thread(target=lambda: result.append(service.execute(TOOL)))
    thread.start()
    assert runner.started.wait(10)

    [during] = service.list()

    runner.release()
    thread.join(10)
    assert during.status == "running"
    assert during.finished is None
    assert service.get(during.id).status == "succeeded"


def test_a_run_whose_claim_wrote_its_first_record_does_not_write_it_again(
    tmp_path: Path,
) -> None:
    service = make_service(tmp_path, ScriptedRunner())
    claimed = Run(
        id="20300317T174640Z-abcdef",
        tool=TOOL.name,
        member="member-a",
        status="running",
        trigger="schedule",
        schedule="s",
        fire_time=1_800_000_000.0,
        started=1_800_000_000.5,
    )
    for key, value in first_writes(service.keys, claimed):  # as the worker's claim does
        service.store.put(key, value)
    written: list[str] = []
    real_put = service.store.put

    def put(key: str, value: bytes, *, lease: int | None = None) -> int:
        if key == service.keys.run(claimed.id):
            written.append(Run.from_json(value).status)
        return real_put(key, value, lease=lease)

    service.store.put = put  # type: ignore[method-assign]
    run = service.execute(
        TOOL, trigger="schedule", schedule="s", run_id=claimed.id, started=claimed.started
    )
    assert written == ["succeeded"], "the running record stays the claim's"
    assert (run.started, run.status) == (claimed.started, "succeeded")
    assert service.store.count(service.keys.run_index(TOOL.name)) == 1


def test_spec_carries_limits_labels_env_and_the_data_dir(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    service = make_service(tmp_path, runner, memory="128m", pids=64, timeout=30.0)
    tool = replace(TOOL, pids=10, user="1000:1000")

    run = service.execute(tool)

    [spec] = runner.specs
    assert spec.image == tool.image
    # The tool's own environment, and the run context (tests/unit/test_run_context.py).
    assert {k: v for k, v in spec.env.items() if not k.startswith("MAOMAO_")} == {"A": "1"}
    assert spec.env["MAOMAO_RUN_ID"] == run.id
    assert spec.data_dir == (tmp_path / "data" / "tools" / "dummy").resolve()
    assert spec.mount_point == "/usr/src/app/data"
    assert spec.labels == {
        "maomao.tool": "dummy",
        "maomao.run": run.id,
        "maomao.member": "member-a",
        "maomao.worker": "member-a",  # the worker's own: a restart of it removes leftovers
    }
    assert (spec.network, spec.memory, spec.pids, spec.timeout, spec.user) == (
        "none", "128m", 10, 30.0, "1000:1000",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("result", "status", "exit_code", "error"),
    [
        (ContainerResult(3, "failed", error="exited with code 3"), "failed", 3, "exited with code 3"),
        (ContainerResult(137, "timed-out", error="stopped after its timeout"), "timed-out", 137,
         "stopped after its timeout"),
        (ContainerResult(None, "interrupted", error="interrupted"), "failed", None, "interrupted"),
    ],
)  # fmt: skip
def test_unsuccessful_outcomes_are_recorded(
    tmp_path: Path, result: ContainerResult, status: str, exit_code: int | None, error: str
) -> None:
    service = make_service(tmp_path, ScriptedRunner([result]))

    run = service.execute(TOOL)

    assert (run.status, run.exit_code, run.error) == (status, exit_code, error)
    assert service.get(run.id) == run


def test_pull_failure_is_a_failed_record_saying_why(tmp_path: Path) -> None:
    runner = ScriptedRunner(image_error="cannot pull image x: not found")
    service = make_service(tmp_path, runner)

    run = service.execute(TOOL)

    assert run.status == "failed"
    assert run.error == "cannot pull image x: not found"
    assert runner.specs == []  # nothing was started
    assert service.get(run.id).status == "failed"


def test_cancel_is_recorded_as_interrupted(tmp_path: Path) -> None:
    runner = ScriptedRunner(block=True)
    service = make_service(tmp_path, runner)
    cancel = threading.Event()
    result: list[Run] = []
    thread = threading.Thread(target=lambda: result.append(service.execute(TOOL, cancel=cancel)))
    thread.start()
    assert runner.started.wait(10)

    cancel.set()
    thread.join(10)

    assert result[0].status == "failed"
    assert result[0].error == "interrupted"


def test_hooks_run_in_order_after_success_and_may_update_the_run(tmp_path: Path) -> None:
    service = make_service(tmp_path, ScriptedRunner())
    calls: list[tuple[str, str, Path]] = []

    def first(tool: Tool, run: Run, data_dir: Path) -> Run | None:
        calls.append(("first", run.status, data_dir))
        return None

    def second(tool: Tool, run: Run, data_dir: Path) -> Run | None:
        calls.append(("second", run.status, data_dir))
        return replace(run, warning="spike found")

    service.add_hook(first)
    service.add_hook(second)

    run = service.execute(TOOL)

    data_dir = (tmp_path / "data" / "tools" / "dummy").resolve()
    assert calls == [("first", "succeeded", data_dir), ("second", "succeeded", data_dir)]
    assert run.warning == "spike found"
    assert service.get(run.id).warning == "spike found"


def test_a_failing_hook_never_fails_the_run(tmp_path: Path) -> None:
    service = make_service(tmp_path, ScriptedRunner())
    after: list[str] = []

    def broken(tool: Tool, run: Run, data_dir: Path) -> Run | None:
        raise RuntimeError("detector exploded")

    service.add_hook(broken)

    def later(tool: Tool, run: Run, data_dir: Path) -> Run | None:
        after.append(run.id)
        return None

    service.add_hook(later)

    run = service.execute(TOOL)

    assert run.status == "succeeded"
    assert run.warning is not None and "detector exploded" in run.warning
    assert after == [run.id]  # later hooks still run


def test_hooks_are_not_called_after_a_failure(tmp_path: Path) -> None:
    service = make_service(tmp_path, ScriptedRunner([ContainerResult(1, "failed")]))
    calls: list[str] = []

    def hook(tool: Tool, run: Run, data_dir: Path) -> Run | None:
        calls.append(run.id)
        return None

    service.add_hook(hook)

    service.execute(TOOL)

    assert calls == []


def test_retention_keeps_the_newest_records_of_each_tool(tmp_path: Path) -> None:
    service = make_service(tmp_path, ScriptedRunner(), runs_kept=2)
    other = replace(TOOL, name="other")
    other_run = service.execute(other)
    ids = [service.execute(TOOL).id for _ in range(4)]

    kept = service.list("dummy")

    assert [r.id for r in kept] == [ids[3], ids[2]]
    assert [r.id for r in service.list("other")] == [other_run.id]


def test_list_is_newest_first_with_a_limit(tmp_path: Path) -> None:
    service = make_service(tmp_path, ScriptedRunner())
    ids = [service.execute(TOOL).id for _ in range(3)]

    assert [r.id for r in service.list()] == ids[::-1]
    assert [r.id for r in service.list(limit=2)] == ids[:0:-1]


def test_run_ids_sort_by_time_and_are_valid_key_leaves(tmp_path: Path) -> None:
    service = make_service(tmp_path, ScriptedRunner())

    ids = [service.new_run_id() for _ in range(5)]

    assert ids == sorted(ids)
    assert all("/" not in i and len(i) == len("20270115T080001Z-ab12cd") for i in ids)


@pytest.mark.parametrize(
    "times",
    [
        [100.0, 100.001, 100.5, 100.999],  # one second: the millisecond orders them
        [100.999, 101.0, 101.002],  # across a second
        [1_800_000_000.123, 1_800_000_000.124],  # a millisecond apart, today's magnitude
    ],
)
def test_run_ids_of_one_second_sort_in_the_order_their_runs_started(
    tmp_path: Path, times: list[float]
) -> None:
    now = iter(times)
    records = RunRecords(
        MemoryStore(),
        Keys("/p"),
        Settings(),
        clock=lambda: next(now),
        full_logs=FullLogs(tmp_path, 0, clock=lambda: 0.0),
    )
    for _ in range(20):  # the random bits never outweigh the millisecond
        now = iter(times)
        ids = [records.new_run_id() for _ in times]
        assert ids == sorted(ids), ids
        assert len({i.rpartition("-")[2] for i in ids}) == len(ids)


def test_get_unknown_or_invalid_run_id(tmp_path: Path) -> None:
    service = make_service(tmp_path, ScriptedRunner())

    with pytest.raises(NotFound):
        service.get("20270115T080001Z-ab12cd")
    with pytest.raises(BadInput):
        service.get("../tools/x")


def test_data_dir_resolver_is_used_for_linked_tools(tmp_path: Path) -> None:
    runner = ScriptedRunner(files={"control-{n}.csv": "100\n"})
    service = make_service(tmp_path, runner)
    work_tree = tmp_path / "datasets" / "ds" / "dummy"
    service.set_data_dir_resolver(lambda tool: work_tree)

    service.execute(TOOL)

    assert runner.specs[0].data_dir == work_tree
    assert (work_tree / "control-1.csv").read_text() == "100\n"


def test_data_dir_never_leaves_the_importdir(tmp_path: Path) -> None:
    service = make_service(tmp_path, ScriptedRunner())

    with pytest.raises(BadInput):
        service.data_dir_for(replace(TOOL, name=".."))


class CountedPages(MemoryStore):
    """A memory store that counts the pages read."""

    pages = 0

    def scan_page(self, prefix: str, **options: object) -> Page:
        self.pages += 1
        return super().scan_page(prefix, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("wanted", "expected", "pages"),
    [
        # Both seen in the newest page: the 200 older records are never read.
        ({"a", "b"}, {"a": "r0299", "b": "r0298"}, 1),
        ({"a"}, {"a": "r0299"}, 1),
        # A schedule without a run: every page is read, the others still found.
        ({"a", "never"}, {"a": "r0299"}, 10),
        (set(), {}, 0),
    ],
)
def test_the_latest_run_of_each_schedule_reads_only_until_each_is_seen(
    tmp_path: Path, wanted: set[str], expected: dict[str, str], pages: int
) -> None:
    store = CountedPages()
    keys = Keys("/p")
    for i in range(300):
        schedule = "a" if i % 2 else "b"
        run = Run(id=f"r{i:04d}", tool="t", member="m", status="succeeded", schedule=schedule)
        store.put(keys.run(run.id), run.to_json())
    records = RunRecords(
        store,
        keys,
        Settings(),
        clock=lambda: 0.0,
        full_logs=FullLogs(tmp_path, 0, clock=lambda: 0.0),
    )
    store.pages = 0
    latest = records.latest_of(wanted)
    assert {name: run.id for name, run in latest.items()} == expected
    assert store.pages == pages
