"""Retention on a real etcd: 1,000 firings of a schedule that fires every second, by the
real worker and run service (containers scripted, time on a fake clock, so 1,000 firings
take seconds). Measures the revisions, db bytes and live keys a firing costs
(docs/reliability.md), and holds the bounds: run records pruned to runs_kept, claims on
leases of their schedule's life, not a day."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import pytest

from fakes.clock import FakeClock
from figures import figure
from maomao_cli.adapters.containers import ScriptedRunner
from maomao_cli.config import DataSettings, EtcdSettings, Settings, WorkerSettings
from maomao_cli.keys import Keys
from maomao_cli.models import Schedule, Tool
from maomao_cli.services.runs import RunService
from maomao_cli.services.worker import Worker
from maomao_cli.services.worker.policy import claim_life
from maomao_cli.store.base import Store
from maomao_cli.store.etcd import EtcdStore
from servers import EtcdCluster

pytestmark = [pytest.mark.etcd, pytest.mark.slow]

FIRINGS = 1000
KEPT = 200
P = ParamSpec("P")
T = TypeVar("T")


class InlineExecutor(Executor):
    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


@pytest.fixture
def own_etcd() -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(1).start()  # its own: the db size is this test's alone
    yield cluster
    cluster.stop()


def live(store: EtcdStore, prefix: str) -> dict[str, int]:
    keys = Keys(prefix)
    return {
        "firings": store.count(keys.firings()),
        "runs": store.count(keys.runs()),
        "runindex": store.count(prefix + "/runindex/"),
        "all": store.count(prefix + "/"),
    }


@pytest.mark.timeout(600)
def test_retention_of_1000_firings(tmp_path: Path, own_etcd: EtcdCluster, prefix: str) -> None:
    store = EtcdStore(EtcdSettings(endpoints=(own_etcd.endpoints,)))
    keys = Keys(prefix)
    clock = FakeClock()
    settings = Settings(
        etcd=EtcdSettings(endpoints=(own_etcd.endpoints,), prefix=prefix),
        data=DataSettings(importdir=str(tmp_path / "data")),
        worker=WorkerSettings(lease_ttl=30, runs_kept=KEPT, misfire_grace=300.0, retries=2),
    )
    schedule = Schedule(name="often", tool="t", cron="* * * * * *")
    store.put(keys.tool("t"), Tool(name="t", image="img").to_json())
    store.put(keys.schedule("often"), schedule.to_json())
    before_status, before_keys = store.status(), live(store, prefix)

    def make_runs(worker_store: Store) -> Any:
        return RunService(
            worker_store, keys, settings, ScriptedRunner(output=["ok"]), "w1", clock=clock.now
        )

    worker = Worker(
        settings,
        store_factory=lambda: EtcdStore(EtcdSettings(endpoints=(own_etcd.endpoints,))),
        make_runs=make_runs,
        member="w1",
        clock=clock,
        make_pool=lambda workers, name: InlineExecutor(),
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), name="worker-w1")
    thread.start()
    try:
        assert worker.ready.wait(30)
        clock.wait_for_waiters(2)
        for _ in range(FIRINGS):
            clock.advance(1.0)
    finally:
        stop.set()
        clock.advance(settings.worker.shutdown_grace)
        thread.join(60)
    after_status, after_keys = store.status(), live(store, prefix)
    revisions = after_status.revision - before_status.revision
    grown = after_status.db_size - before_status.db_size
    fired = store.count(keys.firings("often"))
    claim = store.scan_page(keys.firings("often"), limit=1).entries[0]
    info = store._client.get_lease_info(claim.lease)
    life = claim_life(schedule, clock.now(), settings.worker)

    store._client.compact(after_status.revision, physical=True)
    store._client.defragment()
    compacted = store.status()
    store.close()
    figure(
        f"{fired} firings: {revisions} revisions ({revisions / fired:.2f} a firing), "
        f"db {before_status.db_size} -> {after_status.db_size} bytes "
        f"({grown / fired:.0f} bytes a firing), {compacted.db_size} after compact+defrag; "
        f"live keys before {before_keys}, after {after_keys}; a claim's lease: granted "
        f"{info.grantedTTL} s for a claim life of {life} s (was 86400 s for every schedule)"
    )
    assert fired >= FIRINGS - 5  # the first and last seconds may fall outside the loop
    assert after_keys["runs"] == after_keys["runindex"] == KEPT  # pruned per tool
    assert info.grantedTTL <= life * 3 // 2 < 86400
