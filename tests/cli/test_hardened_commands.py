"""Bad input through the real commands (in-process, on the memory store): refused with
exit 2, exactly one stderr line, no traceback, and nothing written under the prefix. And
records that another (newer or broken) member wrote and that do not parse: every listing
and a worker report them and go on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_harness import PREFIX, Cli
from maomao_cli import validation
from maomao_cli.errors import BadInput
from maomao_cli.keys import Keys
from maomao_cli.models import Member, Run, Schedule, Tool
from maomao_cli.scheduling import location_zone, validate_cron
from maomao_cli.services.worker import Worker
from maomao_cli.store.base import Store
from maomao_cli.store.memory import MemoryStore

SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
FEW = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def refused_by(check: Callable[[str], object]) -> Callable[[str], bool]:
    def refused(value: str) -> bool:
        try:
            check(value)
        except BadInput:
            return True
        return False

    return refused


def cli_text() -> st.SearchStrategy[str]:
    # Arguments go through argv: no NUL, no lone surrogates; a leading '-' is an option.
    return st.text(
        alphabet=st.characters(exclude_categories=SURROGATES, exclude_characters="\x00"),
        min_size=1,
        max_size=40,
    ).filter(lambda s: not s.startswith("-"))


def assert_refused(cli: Cli, *args: str) -> None:
    result = cli.invoke(*args)
    assert result.code == 2, (args, result.out, result.err)
    assert result.out == ""
    assert "Traceback" not in result.err
    assert len(result.err_lines) == 1, (args, result.err)


@FEW
@given(cli_text().filter(refused_by(validation.name)), st.sampled_from(["alpine:3.19"]))
def test_bad_tool_names(cli: Cli, name: str, image: str) -> None:
    assert_refused(cli, "register", name, image)
    assert cli.records() == []


@FEW
@given(cli_text().filter(refused_by(validation.image)))
def test_bad_images(cli: Cli, image: str) -> None:
    assert_refused(cli, "register", "tool", image)
    assert cli.records() == []


@FEW
@given(
    st.one_of(
        cli_text().filter(refused_by(validate_cron)).map(lambda c: ("--cron", c)),
        cli_text().filter(refused_by(location_zone)).map(lambda z: ("--tz", z)),
        cli_text().filter(lambda p: "=" not in p).map(lambda p: ("--env", p)),
    )
)
def test_bad_schedules(cli: Cli, option: tuple[str, str]) -> None:
    if cli.store.get(cli.keys.tool("tool")) is None:
        assert cli.invoke("register", "tool", "alpine:3.19").code == 0
    before = cli.store.scan(PREFIX + "/")
    flag, value = option
    if flag == "--env":
        assert_refused(cli, "register", "tool2", "alpine:3.19", "--env", value)
    else:
        extra = ("--cron", "* * * * *") if flag == "--tz" else ()
        assert_refused(cli, "run", "tool", *extra, flag, value)
    assert cli.store.scan(PREFIX + "/") == before  # nothing written


# Records that do not parse ----------------------------------------------------------------

GARBAGE = [b"\xff\xfe not json", b"[1, 2]", b'{"v": 99, "name": 7}', b"{}", b'{"name": "x"']


def plant_garbage(store: Store, keys: Keys) -> list[str]:
    planted = []
    for where in ("tools", "schedules", "runs", "members", "spikes/t"):
        for i, raw in enumerate(GARBAGE):
            key = f"{keys.prefix}/{where}/broken-{i}"
            store.put(key, raw)
            planted.append(key)
    return planted


def test_listings_skip_records_they_cannot_read(cli: Cli) -> None:
    assert cli.invoke("register", "t", "alpine:3.19").code == 0
    assert cli.invoke("run", "t", "--cron", "0 6 * * *", "--name", "daily").code == 0
    plant_garbage(cli.store, cli.keys)

    listed = {
        command: cli.invoke(*command.split(), "--json")
        for command in ("tools", "schedule list", "runs", "members", "spikes --all", "status")
    }
    for command, result in listed.items():
        assert result.code == 0, (command, result.err)
        assert "Traceback" not in result.err
        result.json()
    assert [t["name"] for t in listed["tools"].json()] == ["t"]
    assert [s["name"] for s in listed["schedule list"].json()] == ["daily"]
    assert listed["runs"].json() == []
    assert listed["members"].json() == []
    assert listed["spikes --all"].json() == []
    for command in ("tools", "schedule list", "runs", "members"):
        assert "broken-" in listed[command].err, (command, listed[command].err)  # reported


class CountingRuns:
    """Writes real run records; counts executions."""

    def __init__(self, store: Store, keys: Keys) -> None:
        self.store, self.keys, self.count = store, keys, 0

    def new_run_id(self) -> str:
        return f"{time.time():.6f}-x"

    def save(self, run: Run) -> None:
        self.store.put(self.keys.run(run.id), run.to_json())

    def execute(self, tool: Tool, **kwargs: object) -> Run:
        self.count += 1
        run = Run(
            id=self.new_run_id(),
            tool=tool.name,
            member="solo",
            status="succeeded",
            trigger=str(kwargs.get("trigger", "manual")),  # type: ignore[arg-type]
            schedule=kwargs.get("schedule"),  # type: ignore[arg-type]
            fire_time=kwargs.get("fire_time"),  # type: ignore[arg-type]
            started=time.time(),
            finished=time.time(),
        )
        self.save(run)
        return run


@pytest.mark.timeout(60)
def test_worker_skips_records_it_cannot_read(caplog: pytest.LogCaptureFixture) -> None:
    from maomao_cli.config import Settings, WorkerSettings

    store = MemoryStore()
    keys = Keys("/maomao")
    store.put(keys.tool("t"), Tool(name="t", image="img").to_json())
    store.put(
        keys.schedule("every"), Schedule(name="every", tool="t", cron="* * * * * *").to_json()
    )
    plant_garbage(store, keys)
    # A member record and a run that parse, but from a member that is gone.
    gone = Member(name="gone", host="elsewhere", version="0", started=1.0)
    store.put(keys.member("gone-but-listed"), gone.to_json())
    runs: list[CountingRuns] = []

    def make_runs(s: Store) -> CountingRuns:
        runs.append(CountingRuns(s, keys))
        return runs[-1]

    worker = Worker(
        Settings(worker=WorkerSettings(lease_ttl=2)),
        store_factory=lambda: store,
        make_runs=make_runs,
        member="solo",
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    with caplog.at_level("WARNING", logger="maomao"):
        thread.start()
        while sum(r.count for r in runs) < 3:
            assert thread.is_alive(), "the worker died"
            time.sleep(0.1)
        # More garbage while it runs: through its watches this time.
        store.put(keys.schedule("late-broken"), b"\x00garbage")
        store.put(keys.member("late-broken"), b"{")
        reached = sum(r.count for r in runs)
        while sum(r.count for r in runs) < reached + 2:
            assert thread.is_alive(), "the worker died"
            time.sleep(0.1)
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert "broken-" in caplog.text  # reported, by key
