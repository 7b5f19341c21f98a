"""Prometheus metrics of one worker (or of `maomao serve`), on a registry of its own.

`WorkerMetrics` is a worker observer (services/worker/observer.py): the worker tells it
of claims, skipped and missed firings, finished runs and spikes, and it counts them; what
is a state rather than an event (the next fire time of each schedule, the running runs,
whether etcd answers) is read from the worker when scraped. `serve_metrics` serves a
registry on /metrics. The names follow Prometheus' naming guide: base units (seconds),
`_total` for counters, `_timestamp_seconds` for epochs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .. import __version__
from ..errors import BadInput, Unavailable
from ..frozen import frozen
from ..models import Run
from ..scheduling import CronClock

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.metrics_core import Metric

    from ..services.worker.observer import WorkerView

# Lag from a firing's due time to its claim: a healthy worker claims within milliseconds.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Runs last from a second to hours.
DURATION_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@frozen
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{shown}:{self.port}"


def listen_address(text: str, what: str = "--metrics") -> ListenAddress:
    """PORT (on loopback), HOST:PORT or [IPv6]:PORT."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep:
        host = "127.0.0.1"
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address without brackets: ambiguous
    hint = "give PORT (loopback), HOST:PORT or [IPv6]:PORT, e.g. 127.0.0.1:9464"
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise BadInput(f"{what} {text!r} is not an address to listen on", hint=hint)
    return ListenAddress(host, int(port_text))


def build_info(registry: CollectorRegistry) -> None:
    Info("maomao_build", "The maomao version serving these metrics.", registry=registry).info(
        {"version": __version__}
    )


class WorkerMetrics:
    """The worker's metrics; every method is quick and thread-safe (prometheus_client's
    metrics are)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, now: Callable[[], float] = time.time
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self._now = now
        r = self.registry
        build_info(r)
        self.lag = Histogram(
            "maomao_firing_lag_seconds",
            "Seconds from a firing's due time to its claim (each claim, won or lost).",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.runs = Counter(
            "maomao_runs", "Runs finished on this member.", ["tool", "status"], registry=r
        )
        self.duration = Histogram(
            "maomao_run_duration_seconds",
            "How long the runs finished on this member took.",
            ["tool"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.missed_firings = Counter(
            "maomao_firings_missed",
            "Firings won but recorded as missed (claimed beyond the grace window).",
            ["schedule", "reason"],
            registry=r,
        )
        self.skipped_firings = Counter(
            "maomao_firings_skipped",
            "Firings won but not run (the previous run still ran, overlap forbidden).",
            ["schedule", "reason"],
            registry=r,
        )
        self.claims = Counter(
            "maomao_claims", "Claims answered, by result (won or lost).", ["result"], registry=r
        )
        for result in ("won", "lost"):
            self.claims.labels(result=result)
        self.spikes = Counter(
            "maomao_spikes", "Spikes found by this member's runs.", ["tool"], registry=r
        )
        self.last_success = Gauge(
            "maomao_schedule_last_success_timestamp_seconds",
            "When the last run of a schedule that succeeded on this member finished.",
            ["schedule"],
            registry=r,
        )
        self._state = _WorkerState(self._now)
        r.register(self._state)

    # The observer ------------------------------------------------------------

    def attach(self, worker: WorkerView) -> None:
        self._state.worker = worker

    def claimed(self, schedule: str, *, won: bool, lag: float) -> None:
        self.claims.labels(result="won" if won else "lost").inc()
        self.lag.observe(max(lag, 0.0))

    def skipped(self, schedule: str, reason: str) -> None:
        self.skipped_firings.labels(schedule=schedule, reason=reason).inc()

    def missed(self, schedule: str, reason: str) -> None:
        self.missed_firings.labels(schedule=schedule, reason=reason).inc()

    def finished(self, run: Run) -> None:
        self.runs.labels(tool=run.tool, status=run.status).inc()
        if run.duration is not None:
            self.duration.labels(tool=run.tool).observe(run.duration)
        if run.status == "succeeded" and run.schedule is not None:
            self.last_success.labels(schedule=run.schedule).set(run.finished or self._now())

    def spike(self, tool: str) -> None:
        self.spikes.labels(tool=tool).inc()

    def ready(self) -> None:
        pass

    def turn(self) -> None:
        pass

    def stopping(self) -> None:
        pass


class _WorkerState(Collector):
    """What is read from the worker at each scrape."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.worker: WorkerView | None = None
        self._now = now
        self._crons: dict[tuple[str, str], CronClock] = {}
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        next_fire = GaugeMetricFamily(
            "maomao_schedule_next_fire_timestamp_seconds",
            "When each schedule this member follows fires next (paused ones are left out).",
            labels=["schedule"],
        )
        period = GaugeMetricFamily(
            "maomao_schedule_period_seconds",
            "Seconds between a schedule's next two firings (for alerts on missing successes).",
            labels=["schedule"],
        )
        running = GaugeMetricFamily(
            "maomao_member_running_runs", "Runs in progress on this member."
        )
        etcd_up = GaugeMetricFamily(
            "maomao_etcd_up", "1 while this member's connection to etcd works, else 0."
        )
        worker = self.worker
        if worker is not None:
            now = self._now()
            for schedule in sorted(worker.followed(), key=lambda s: s.name):
                if not schedule.paused:
                    cron = self._cron(schedule.cron, schedule.timezone)
                    if cron is not None:
                        upcoming = cron.next_after(now)
                        next_fire.add_metric([schedule.name], upcoming)
                        period.add_metric([schedule.name], cron.next_after(upcoming) - upcoming)
            running.add_metric([], worker.running())
            etcd_up.add_metric([], 1.0 if worker.etcd_reachable() else 0.0)
        yield next_fire
        yield period
        yield running
        yield etcd_up

    def _cron(self, expression: str, timezone: str) -> CronClock | None:
        with self._lock:
            key = (expression, timezone)
            if key not in self._crons:
                try:
                    self._crons[key] = CronClock(expression, timezone)
                except Exception:  # the worker itself logs and skips a bad schedule
                    return None
            return self._crons[key]


class EtcdProbe(Collector):
    """`maomao_etcd_up` for `maomao serve`: asked of etcd at each scrape."""

    def __init__(self, check: Callable[[], object]) -> None:
        self._check = check

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("maomao_etcd_up", "1 if etcd answered this scrape, else 0.")
        try:
            self._check()
            up.add_metric([], 1.0)
        except Unavailable:
            up.add_metric([], 0.0)
        yield up


class MetricsServer:
    """/metrics of a registry, served on a daemon thread until closed."""

    def __init__(
        self, server: WSGIServer, thread: threading.Thread, address: ListenAddress
    ) -> None:
        self._server = server
        self._thread = thread
        self.address = address

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve_metrics(registry: CollectorRegistry, address: ListenAddress) -> MetricsServer:
    from prometheus_client import start_http_server

    try:
        server, thread = start_http_server(address.port, address.host, registry=registry)
    except OSError as exc:
        raise Unavailable(
            f"cannot serve metrics on {address}: {exc.strerror or exc}",
            hint="choose another port with --metrics or [worker] metrics",
        ) from None
    return MetricsServer(server, thread, address)


class ServeMetrics:
    """`maomao serve`'s /metrics: its version, and whether etcd answers."""

    def __init__(self, check_etcd: Callable[[], object]) -> None:
        self.registry = CollectorRegistry()
        build_info(self.registry)
        self.registry.register(EtcdProbe(check_etcd))

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
