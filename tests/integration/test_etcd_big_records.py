"""A noisy tool on a real etcd: 500 run records of a tool printing 100 lines of 2,000
characters. Listing, pruning, the lost-run sweep and a restarted worker all work, and no
etcd response is over 1 MiB (each response's size is measured at the gRPC stub)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import make_env
from fakes.clock import FakeClock
from figures import figure
from maomao_cli.adapters.containers import ScriptedRunner
from maomao_cli.config import DataSettings, EtcdSettings, Settings, WorkerSettings
from maomao_cli.keys import Keys
from maomao_cli.models import Run, Tool, cap_tail
from maomao_cli.services.runs import RunService
from maomao_cli.services.worker.recovery import LostRuns
from maomao_cli.store.etcd import EtcdStore
from servers import EtcdCluster

pytestmark = [pytest.mark.etcd, pytest.mark.slow]

NOISY = ["x" * 2000] * 100  # 200 KB of output a run
RECORDS = 500
MiB = 2**20


class MeasuredStub:
    """The client's KV stub, recording the size of every Range response."""

    def __init__(self, inner: Any, sizes: list[int]) -> None:
        self._inner = inner
        self._sizes = sizes

    def Range(self, *args: Any, **kwargs: Any) -> Any:  # gRPC's method name
        response = self._inner.Range(*args, **kwargs)
        self._sizes.append(response.ByteSize())
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.fixture
def measured(etcd: EtcdCluster) -> Iterator[tuple[EtcdStore, list[int]]]:
    store = EtcdStore(EtcdSettings(endpoints=tuple(etcd.endpoints.split(","))))
    sizes: list[int] = []
    client: Any = store._client
    client._stubs["kvstub"] = MeasuredStub(client.kvstub, sizes)
    yield store, sizes
    store.close()


def test_500_noisy_runs_stay_paged_and_small(
    tmp_path: Path, measured: tuple[EtcdStore, list[int]], etcd: EtcdCluster, prefix: str
) -> None:
    store, sizes = measured
    keys = Keys(prefix)
    settings = Settings(
        data=DataSettings(importdir=str(tmp_path / "data")),
        worker=WorkerSettings(runs_kept=RECORDS, runs_max_age=0),
    )
    tool = Tool(name="noisy", image="img")
    runs = RunService(store, keys, settings, ScriptedRunner(output=NOISY, log_lines=100), "m1")
    # A few real runs through the run service (the container is scripted), then records
    # written directly, as the runs of other members would be.
    real = [runs.execute(tool) for _ in range(3)]
    assert all(r.status == "succeeded" for r in real)
    assert real[0].log_tail[0].startswith("…[") and len(real[0].log_tail) < 100
    record_bytes = len(store.get(keys.run(real[0].id)).value)  # type: ignore[union-attr]
    tail = cap_tail(NOISY)
    for i in range(RECORDS - len(real)):
        started = 1_700_000_000.0 + i
        run = Run(
            id=f"20231114T{i:06d}Z-{i:06x}", tool="noisy", member="m2", status="running",
            started=started,
        )  # fmt: skip
        runs.save(run)
        status = "running" if i < 5 else "succeeded"  # five whose member is gone: lost
        runs.save(Run(**{**run.to_dict(), "status": status, "log_tail": tail}))
    sizes.clear()

    newest = runs.list(limit=50)
    of_tool = runs.list("noisy", limit=50)
    everything = store.scan(keys.runs())
    LostRuns(keys, "m1", started=0.0, settings=settings.worker, clock=FakeClock()).sweep(
        store, schedule_of=lambda name: None, retry=lambda *a: None
    )
    pruned = runs.prune("noisy", keep=200)

    assert len(newest) == len(of_tool) == 50 and len(everything) == RECORDS
    assert pruned == RECORDS - 200  # the five marked lost were the oldest: final, pruned
    largest = max(sizes)
    figure(
        f"{RECORDS} noisy run records: {record_bytes} bytes each; {len(sizes)} range reads "
        f"for list, list --tool, scan, sweep and prune; largest response {largest} bytes "
        f"({largest / MiB:.2f} MiB); pruned {pruned}"
    )
    assert largest < MiB

    # The commands and a restarted worker on the same records, as processes.
    env = make_env(tmp_path, etcd.endpoints, prefix)
    listed = env.run("runs", "--limit", "20")
    assert listed.code == 0, listed.err
    assert env.run("runs", "--tool", "noisy", "--json").code == 0
    assert env.run("logs", real[-1].id).code == 0
    assert env.run("status").code == 0
    worker = subprocess.Popen(
        [sys.executable, "-m", "maomao_cli", "worker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env.vars,
    )
    try:
        assert worker.stdout is not None
        for line in worker.stdout:  # up means it read its state from etcd
            if "up:" in line:
                break
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output
