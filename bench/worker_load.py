"""Worker under load: N schedules on a real etcd, container runs replaced by a no-op.

Schedule i fires once a minute at second i % 60 (N / 60 firings a second). Prints firing
lag (claim start minus due time) p50/p99/max, claims per second, etcd round trips per
firing, the worker's RSS and its idle CPU; beside them, from the same run: the median
etcd round trip, and APScheduler 3 (in memory, one process, no coordination: the
floor of an uncoordinated scheduler) on the same schedules when it is installed
(`pip install 'apscheduler<4'`, or the `bench` extra).

Round trips are counted at the store port: every store the worker makes (it makes a new
one on each reconnect) is wrapped, so whatever the adapter, each call of a store method
counts once (a claim call carrying many claims is one round trip: its transactions go
out together), and lease keep-alives count too.

    python bench/worker_load.py [--schedules 10000] [--seconds 30] [--no-apscheduler]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from maomao_cli.config import EtcdSettings, Settings, WorkerSettings  # noqa: E402
from maomao_cli.keys import Keys  # noqa: E402
from maomao_cli.models import Run, Schedule, Tool  # noqa: E402
from maomao_cli.services.worker import Worker  # noqa: E402
from maomao_cli.store.base import Claim, Lease, Store  # noqa: E402
from maomao_cli.store.etcd import EtcdStore  # noqa: E402
from servers import EtcdCluster  # noqa: E402

PREFIX = "/bench"


class Calls:
    """Store calls by method, over every store and lease the worker made."""

    def __init__(self) -> None:
        self.by_method: Counter[str] = Counter()
        self.claims = 0  # claims carried by claim calls
        self.lock = threading.Lock()

    def add(self, method: str, claims: int = 0) -> None:
        with self.lock:
            self.by_method[method] += 1
            self.claims += claims

    def snapshot(self) -> tuple[Counter[str], int]:
        with self.lock:
            return Counter(self.by_method), self.claims


class CountedLease:
    def __init__(self, lease: Lease, calls: Calls) -> None:
        self._lease, self._calls = lease, calls

    @property
    def id(self) -> int:
        return self._lease.id

    @property
    def ttl(self) -> int:
        return self._lease.ttl

    def refresh(self) -> bool:
        self._calls.add("lease.refresh")
        return self._lease.refresh()

    def revoke(self) -> None:
        self._calls.add("lease.revoke")
        self._lease.revoke()


class CountedStore:
    """A Store that counts each call and hands it to the store it wraps."""

    def __init__(self, inner: Store, calls: Calls) -> None:
        self._inner, self._calls = inner, calls

    @property
    def endpoint(self) -> str:
        return self._inner.endpoint

    def __getattr__(self, method: str) -> Any:
        target = getattr(self._inner, method)
        if not callable(target):
            return target

        def counted(*args: Any, **kwargs: Any) -> Any:
            if method == "claim":
                claims: Sequence[Claim] = args[0] if args else kwargs["claims"]
                self._calls.add(method, len(claims))
            elif method not in ("close", "watch"):  # a watch streams: not a round trip each
                self._calls.add(method)
            result = target(*args, **kwargs)
            return CountedLease(result, self._calls) if method == "grant_lease" else result

        return counted


class NoopRuns:
    def __init__(self, store: object) -> None:
        self.store = store
        self.done = 0

    def new_run_id(self) -> str:
        return f"{time.time_ns()}"

    def save(self, run: Run) -> None:
        pass

    def execute(self, tool: Tool, **kwargs: object) -> Run:
        """No container; only the final record, as a run writes it (its claim wrote the
        `running` one): left `running`, every record would be swept as lost."""
        self.done += 1
        run_id = kwargs.get("run_id")
        run = Run(
            id=run_id if isinstance(run_id, str) else self.new_run_id(),
            tool=tool.name,
            member="bench",
            status="succeeded",
            started=time.time(),
            finished=time.time(),
            exit_code=0,
        )
        self.store.put(Keys(PREFIX).run(run.id), run.to_json())  # type: ignore[attr-defined]
        return run


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    """Resident memory now (not the peak), in MB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**2


def put_schedules(endpoint: str, count: int, cron: Iterator[str]) -> None:
    """Many schedules quickly: 128 puts per transaction (etcd's limit), sent together."""
    import etcd3
    from etcd3 import etcdrpc

    host, _, port = endpoint.rpartition(":")
    client = etcd3.client(host=host, port=int(port), timeout=60)
    keys = Keys(PREFIX)
    futures = []
    batch: list[Any] = []
    for i in range(count):
        schedule = Schedule(name=f"s{i}", tool="t", cron=next(cron))
        batch.append(client.transactions.put(keys.schedule(schedule.name), schedule.to_json()))
        if len(batch) == 128 or i == count - 1:
            request = etcdrpc.TxnRequest(success=client._ops_to_requests(batch))
            futures.append(client.kvstub.Txn.future(request, 60, metadata=client.metadata))
            batch = []
        if len(futures) >= 64:
            for future in futures:
                future.result()
            futures = []
    for future in futures:
        future.result()
    client.close()


def percentiles(lags: Any) -> tuple[float, float, float]:
    return lags.quantile(0.5) * 1000, lags.quantile(0.99) * 1000, lags.max * 1000


def measure_maomao(endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(
        etcd=EtcdSettings(endpoints=(endpoint,), prefix=PREFIX),
        worker=WorkerSettings(member="bench", max_parallel=args.max_parallel, misfire_grace=0.0),
    )
    calls = Calls()

    def factory() -> Store:
        return CountedStore(EtcdStore(settings.etcd, patient=True), calls)  # type: ignore[return-value]

    def make_runs(store: object) -> NoopRuns:
        return NoopRuns(store)

    rss_before = rss_mb()
    # As `maomao worker` makes it (composition.py), in a process of its own.
    worker = Worker(settings, store_factory=factory, make_runs=make_runs, freeze_after_load=True)  # type: ignore[arg-type]
    stop = threading.Event()
    loaded = time.monotonic()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:  # reported below, beside the baseline
            failure.append(exc)

    thread = threading.Thread(target=run, name="scheduler", daemon=True)
    thread.start()
    while not worker.ready.wait(1.0):
        if not thread.is_alive() or time.monotonic() - loaded > 600:
            reason = (
                f"{type(failure[0]).__name__}: {failure[0]}" if failure else "not ready in 600 s"
            )
            return {"failed": reason}
    ready_after = time.monotonic() - loaded
    time.sleep(2)
    lags_before = worker.stats.lags.snapshot()
    won_before = worker.stats.claims_won
    started_before, skipped_before = worker.stats.runs_started, worker.stats.skipped
    calls_before, claims_before = calls.snapshot()
    started = time.monotonic()
    time.sleep(args.seconds)
    elapsed = time.monotonic() - started
    lags = worker.stats.lags.since(lags_before)
    won = worker.stats.claims_won - won_before
    runs_started = worker.stats.runs_started - started_before
    skipped = worker.stats.skipped - skipped_before
    calls_after, claims_after = calls.snapshot()
    rss = rss_mb() - rss_before
    stop.set()
    thread.join(60)
    window = calls_after - calls_before
    return {
        "ready": ready_after,
        "elapsed": elapsed,
        "won": won,
        "started": runs_started,
        "skipped": skipped,
        "lags": lags,
        "calls": window,
        "claims_sent": claims_after - claims_before,
        "rss": rss,
    }


def measure_idle(endpoint: str, args: argparse.Namespace) -> float:
    """CPU of a worker holding the same number of schedules, none due for a year."""
    settings = Settings(
        etcd=EtcdSettings(endpoints=(endpoint,), prefix=PREFIX),
        worker=WorkerSettings(member="bench-idle", max_parallel=8, misfire_grace=0.0),
    )
    worker = Worker(
        settings,
        store_factory=lambda: EtcdStore(settings.etcd, patient=True),
        make_runs=NoopRuns,  # type: ignore[arg-type]
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), name="scheduler", daemon=True)
    thread.start()
    worker.ready.wait(600)
    time.sleep(2)
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    time.sleep(args.idle_seconds)
    idle = (cpu_seconds() - cpu0) / (time.monotonic() - wall0)
    stop.set()
    thread.join(60)
    return idle


def apscheduler_child(schedules: int, seconds: float, threads: int) -> None:
    """APScheduler 3 on the same cron expressions, in this (child) process: prints JSON."""
    from apscheduler.events import EVENT_JOB_SUBMITTED
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    from maomao_cli.services.worker.lagstats import LagStats

    lags = LagStats()
    recording = threading.Event()

    def submitted(event: Any) -> None:
        if recording.is_set():
            now = time.time()
            for due in event.scheduled_run_times:
                lags.record(now - due.timestamp())

    rss_before = rss_mb()
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(threads)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone="UTC",
    )
    scheduler.add_listener(submitted, EVENT_JOB_SUBMITTED)
    for i in range(schedules):
        trigger = CronTrigger(second=i % 60, timezone="UTC")
        scheduler.add_job(lambda: None, trigger, id=f"s{i}")
    scheduler.start()
    time.sleep(2)
    recording.set()
    cpu0 = cpu_seconds()
    time.sleep(seconds)
    recording.clear()
    cpu = cpu_seconds() - cpu0
    scheduler.shutdown(wait=False)
    p50, p99, top = percentiles(lags)
    print(
        json.dumps(
            {"p50": p50, "p99": p99, "max": top, "count": lags.count, "rss": rss_mb() - rss_before}
            | {"cpu": cpu / seconds}
        )
    )


def measure_apscheduler(args: argparse.Namespace) -> dict[str, Any] | None:
    try:
        import apscheduler  # noqa: F401
    except ImportError:
        return None
    child = subprocess.run(
        [sys.executable, __file__, "--apscheduler-child", "--schedules", str(args.schedules),
         "--seconds", str(args.seconds), "--max-parallel", str(args.max_parallel)],
        capture_output=True, text=True, check=True, timeout=args.seconds + 900,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument(
        "--max-parallel",
        type=int,
        default=8,
        help="the worker's run slots (a member claims only what it can start: with fewer "
        "slots than firings due in one second, the lag is the wait for a slot)",
    )
    parser.add_argument("--no-apscheduler", action="store_true", help="skip the baseline")
    parser.add_argument("--apscheduler-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.apscheduler_child:
        apscheduler_child(args.schedules, args.seconds, args.max_parallel)
        return

    cluster = EtcdCluster(1, extra=["--quota-backend-bytes", str(8 * 1024**3)]).start()
    try:
        endpoint = cluster.endpoints
        keys = Keys(PREFIX)
        setup = EtcdStore(EtcdSettings(endpoints=(endpoint,), prefix=PREFIX))
        samples = []
        for _ in range(300):
            started = time.perf_counter()
            setup.get(keys.tool("t"))
            samples.append(time.perf_counter() - started)
        round_trip = statistics.median(samples)
        setup.put(keys.tool("t"), Tool(name="t", image="img").to_json())
        put_schedules(endpoint, args.schedules, (f"{i % 60} * * * * *" for i in range(10**9)))
        ours = measure_maomao(endpoint, args)
        idle_cpu = math.nan
        if "failed" not in ours:
            # Idle: the same number of schedules that do not fire for a year.
            put_schedules(endpoint, args.schedules, iter(lambda: "0 0 1 1 *", None))
            idle_cpu = measure_idle(endpoint, args)
        setup.close()
    finally:
        cluster.stop()
    theirs = None if args.no_apscheduler else measure_apscheduler(args)
    report(args, round_trip, ours, idle_cpu, theirs)


def report(
    args: argparse.Namespace,
    round_trip: float,
    ours: dict[str, Any],
    idle_cpu: float,
    theirs: dict[str, Any] | None,
) -> None:
    if "failed" in ours:
        print(f"schedules: {args.schedules}: the worker did not start: {ours['failed']}")
        if theirs is not None:
            print(
                f"APScheduler 3 (same schedules, in memory): p50 {theirs['p50']:.1f} ms, "
                f"p99 {theirs['p99']:.1f} ms, max {theirs['max']:.1f} ms, "
                f"{theirs['count']} jobs submitted in {args.seconds:.0f} s"
            )
        return
    won, elapsed, calls = ours["won"], ours["elapsed"], ours["calls"]
    p50, p99, top = percentiles(ours["lags"])
    total_calls = sum(calls.values())
    claim_calls = calls.get("claim", 0)
    print(
        f"schedules: {args.schedules} ({args.schedules / 60:.0f} firings/s due), "
        f"window: {elapsed:.0f} s, firings claimed: {won}; worker ready after {ours['ready']:.1f} s; "
        f"max_parallel {args.max_parallel}"
    )
    print(
        f"  of which started: {ours['started']}, skipped: {ours['skipped']} "
        "(late beyond misfire_grace 0: the lag counts started runs only)"
    )
    print(f"etcd round trip (median get, same run): {round_trip * 1000:.2f} ms")
    print(f"firing lag p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {top:.1f} ms")
    print(f"  p50 / etcd round trip: {p50 / 1000 / round_trip:.1f}")
    if theirs is not None:
        print(
            f"APScheduler 3 (same schedules, in memory, same machine, after this run): "
            f"p50 {theirs['p50']:.1f} ms, p99 {theirs['p99']:.1f} ms, max {theirs['max']:.1f} ms, "
            f"{theirs['count'] / elapsed:.0f} jobs/s submitted, RSS +{theirs['rss']:.0f} MB, "
            f"CPU {theirs['cpu'] * 100:.1f} % of one core"
        )
        ratio = p99 / theirs["p99"] if theirs["p99"] > 0 else math.nan
        print(f"  maomao p99 / APScheduler p99: {ratio:.2f}")
    else:
        print("APScheduler 3: not installed (pip install 'apscheduler<4'); no baseline")
    print(f"claims per second: {won / elapsed:.0f} (due: {args.schedules / 60:.0f})")
    if won:
        print(
            f"etcd round trips per firing: {total_calls / won:.2f} "
            f"(claim calls {claim_calls / won:.2f}, "
            f"{ours['claims_sent'] / max(claim_calls, 1):.1f} claims per claim call)"
        )
    else:
        print(f"etcd round trips per firing: n/a (no firing won; {claim_calls} claim calls)")
    print("  store calls in the window: " + ", ".join(f"{m} {n}" for m, n in calls.most_common()))
    print(
        f"worker RSS: +{ours['rss']:.0f} MB from before it started "
        f"(this process: {rss_mb():.0f} MB now, after the idle run)"
    )
    print(f"idle CPU: {idle_cpu * 100:.2f} % of one core (goal < 2 %)")


if __name__ == "__main__":
    main()
