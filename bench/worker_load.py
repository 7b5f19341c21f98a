"""Worker under load: 10,000 schedules on a real etcd, container runs replaced by a no-op.

Prints firing lag (claim start minus due time) p50/p99, claims per second, etcd round
trips per firing (against the round trip measured in the same run), worker memory and
idle CPU. Usage: python bench/worker_load.py [--schedules 10000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from maomao_cli.config import EtcdSettings, Settings, WorkerSettings
from maomao_cli.keys import Keys
from maomao_cli.models import Run, Schedule, Tool
from maomao_cli.services.worker import Worker
from maomao_cli.store.etcd import EtcdStore
from servers import EtcdCluster


class CountingStore(EtcdStore):
    """Counts the etcd requests made by the scheduler thread (the claim path), not by run threads."""

    def __init__(self, settings: EtcdSettings) -> None:
        super().__init__(settings)
        self.claim_calls = 0
        self.lock = threading.Lock()

    def _count(self) -> None:
        if threading.current_thread().name == "scheduler":
            with self.lock:
                self.claim_calls += 1

    def create(self, key: str, value: bytes, *, lease: int | None = None) -> bool:
        self._count()
        return super().create(key, value, lease=lease)

    def get(self, key: str):  # type: ignore[no-untyped-def]
        self._count()
        return super().get(key)

    def put(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        self._count()
        return super().put(key, value, lease=lease)

    def claim(self, claims):  # type: ignore[no-untyped-def]
        # One transaction per claim, sent together: count transactions, not batches.
        if threading.current_thread().name == "scheduler":
            with self.lock:
                self.claim_calls += len(claims)
        return super().claim(claims)


class NoopRuns:
    def __init__(self, store: object) -> None:
        self.store = store
        self.done = 0

    def new_run_id(self) -> str:
        return f"{time.time_ns()}"

    def save(self, run: Run) -> None:
        pass

    def execute(self, tool: Tool, **kwargs: object) -> Run:
        self.done += 1
        return Run(
            id=self.new_run_id(),
            tool=tool.name,
            member="bench",
            status="succeeded",
            started=time.time(),
            finished=time.time(),
            exit_code=0,
        )


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()

    cluster = EtcdCluster(1).start()
    try:
        settings = Settings(
            etcd=EtcdSettings(endpoints=(cluster.endpoints,), prefix="/bench"),
            worker=WorkerSettings(member="bench", max_parallel=8, misfire_grace=0.0),
        )
        keys = Keys("/bench")
        setup = EtcdStore(settings.etcd)
        samples = []
        for _ in range(300):
            started = time.perf_counter()
            setup.get(keys.tool("t"))
            samples.append(time.perf_counter() - started)
        round_trip = statistics.median(samples)
        setup.put(keys.tool("t"), Tool(name="t", image="img").to_json())
        # Spread: schedule i fires once a minute at second i % 60.
        for i in range(args.schedules):
            cron = f"{i % 60} * * * * *"
            setup.put(keys.schedule(f"s{i}"), Schedule(name=f"s{i}", tool="t", cron=cron).to_json())

        store_holder: list[CountingStore] = []

        def factory() -> CountingStore:
            store = CountingStore(settings.etcd)
            store_holder.append(store)
            return store

        runs_holder: list[NoopRuns] = []

        def make_runs(store: object) -> NoopRuns:
            runs_holder.append(NoopRuns(store))
            return runs_holder[-1]

        worker = Worker(settings, store_factory=factory, make_runs=make_runs)  # type: ignore[arg-type]
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), name="scheduler", daemon=True)
        thread.start()
        worker.ready.wait(120)
        time.sleep(1)
        won_before = worker.stats.claims_won
        calls_before = store_holder[0].claim_calls
        lags_before = len(worker.stats.lags)
        started = time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - started
        lags = worker.stats.lags[lags_before:]
        won = worker.stats.claims_won - won_before
        calls = store_holder[0].claim_calls - calls_before
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        stop.set()
        thread.join(60)

        # Idle: the same number of schedules that do not fire for a year.
        for i in range(args.schedules):
            setup.put(
                keys.schedule(f"s{i}"), Schedule(name=f"s{i}", tool="t", cron="0 0 1 1 *").to_json()
            )
        worker = Worker(
            settings, store_factory=lambda: EtcdStore(settings.etcd), make_runs=make_runs
        )  # type: ignore[arg-type]
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), name="scheduler", daemon=True)
        thread.start()
        worker.ready.wait(120)
        time.sleep(2)
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        time.sleep(10)
        idle_cpu = (cpu_seconds() - cpu0) / (time.monotonic() - wall0)
        stop.set()
        thread.join(60)

        lags.sort()
        p50 = lags[len(lags) // 2] * 1000 if lags else float("nan")
        p99 = lags[int(len(lags) * 0.99)] * 1000 if lags else float("nan")
        print(f"schedules: {args.schedules}, window: {elapsed:.0f}s, firings claimed: {won}")
        print(f"etcd round trip (median get): {round_trip * 1000:.2f} ms (the baseline)")
        print(f"firing lag p50: {p50:.1f} ms, p99: {p99:.1f} ms (goal p99 < 100 ms)")
        print(f"claims per second: {won / elapsed:.0f}")
        print(f"etcd calls per firing on the claim path: {calls / max(won, 1):.2f} (goal <= 2)")
        print(
            f"median lag / etcd round trip: {(statistics.median(lags) if lags else 0) / round_trip:.2f}"
        )
        print(f"worker max RSS: {rss_mb:.0f} MB (goal < 150 MB; includes this bench process)")
        print(f"idle CPU: {idle_cpu * 100:.2f} % of one core (goal < 2 %)")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
