"""Bad input through the real CLI (a subprocess, a real etcd): refused with exit 2, exactly
one stderr line, no traceback, and nothing written under the prefix. And records in etcd
that another (newer or broken) member wrote and that do not parse: every listing and a
worker report them and go on."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Env
from maomao_cli import validation
from maomao_cli.errors import BadInput
from maomao_cli.keys import Keys
from maomao_cli.models import Member, Run, Schedule, Spike, Tool
from maomao_cli.scheduling import validate_cron, zone
from maomao_cli.services.worker import Worker
from maomao_cli.store.base import Store
from maomao_cli.store.memory import MemoryStore
from servers import EtcdCluster

TRIED = {"cli": 0}
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
        alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
        min_size=1,
        max_size=40,
    ).filter(lambda s: not s.startswith("-"))


def store_for(env: Env, etcd: EtcdCluster) -> Store:
    from maomao_cli import config
    from maomao_cli.store.etcd import EtcdStore

    return EtcdStore(config.load(env=env.vars).etcd)


def assert_refused(env: Env, *args: str) -> None:
    TRIED["cli"] += 1
    result = env.run(*args)
    assert result.code == 2, (args, result.out, result.err)
    assert "Traceback" not in result.err + result.out
    assert len(result.err.strip().splitlines()) == 1, (args, result.err)


pytestmark = pytest.mark.etcd


@pytest.fixture(scope="module", autouse=True)
def count_inputs() -> Iterator[None]:
    yield
    print(f"\nhardened CLI: {TRIED['cli']} bad inputs through a subprocess, 0 tracebacks")


@FEW
@given(cli_text().filter(refused_by(validation.name)), st.sampled_from(["alpine:3.19"]))
def test_bad_tool_names(env: Env, etcd: EtcdCluster, name: str, image: str) -> None:
    assert_refused(env, "register", name, image)
    store = store_for(env, etcd)
    assert store.scan(env.vars["MAOMAO_ETCD_PREFIX"] + "/") == []
    store.close()


@FEW
@given(cli_text().filter(refused_by(validation.image)))
def test_bad_images(env: Env, etcd: EtcdCluster, image: str) -> None:
    assert_refused(env, "register", "tool", image)
    store = store_for(env, etcd)
    assert store.scan(env.vars["MAOMAO_ETCD_PREFIX"] + "/") == []
    store.close()


@FEW
@given(
    st.one_of(
        cli_text().filter(refused_by(validate_cron)).map(lambda c: ("--cron", c)),
        cli_text().filter(refused_by(zone)).map(lambda z: ("--tz", z)),
        cli_text().filter(lambda p: "=" not in p).map(lambda p: ("--env", p)),
    )
)
def test_bad_schedules(env: Env, etcd: EtcdCluster, option: tuple[str, str]) -> None:
    prefix = env.vars["MAOMAO_ETCD_PREFIX"]
    store = store_for(env, etcd)
    if store.get(Keys(prefix).tool("tool")) is None:
        assert env.run("register", "tool", "alpine:3.19").code == 0
    before = store.scan(prefix + "/")
    flag, value = option
    if flag == "--env":
        assert_refused(env, "register", "tool2", "alpine:3.19", "--env", value)
    else:
        extra = ("--cron", "* * * * *") if flag == "--tz" else ()
        assert_refused(env, "run", "tool", *extra, flag, value)
    assert store.scan(prefix + "/") == before  # nothing written
    store.close()


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


def test_listings_skip_records_they_cannot_read(env: Env, etcd: EtcdCluster) -> None:
    keys = Keys(env.vars["MAOMAO_ETCD_PREFIX"])
    assert env.run("register", "t", "alpine:3.19").code == 0
    assert env.run("run", "t", "--cron", "0 6 * * *", "--name", "daily").code == 0
    store = store_for(env, etcd)
    plant_garbage(store, keys)
    store.close()

    listed = {
        command: env.run(*command.split(), "--json")
        for command in ("tools", "schedule list", "runs", "members", "spikes --all", "status")
    }
    for command, result in listed.items():
        print(f"{command}: exit {result.code}, {len(result.err.splitlines())} warning line(s)")
        assert result.code == 0, (command, result.err)
        assert "Traceback" not in result.err
        json.loads(result.out)
    assert [t["name"] for t in json.loads(listed["tools"].out)] == ["t"]
    assert [s["name"] for s in json.loads(listed["schedule list"].out)] == ["daily"]
    assert json.loads(listed["runs"].out) == []
    assert json.loads(listed["members"].out) == []
    assert json.loads(listed["spikes --all"].out) == []
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
        make_runs=make_runs,  # type: ignore[arg-type]
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
    warned = caplog.text
    assert "broken-" in warned  # reported, by key
    print(f"\nworker: {sum(r.count for r in runs)} runs beside {len(GARBAGE) * 5 + 2} bad records")
    _ = Spike  # the spikes prefix is planted too (read by the spike service, not the worker)
