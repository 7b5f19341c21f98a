"""The worker's Prometheus metrics in-process: a worker on the memory store and a fake
clock with `WorkerMetrics` as its observer, read from its own registry (never the global
one), and the --metrics address rules."""

from __future__ import annotations

import threading
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from test_worker_memory import FakeRuns, Journal, inline_pool, settings

from fakes.clock import START, FakeClock
from maomao_cli.adapters.metrics import (
    ListenAddress,
    ServeMetrics,
    WorkerMetrics,
    listen_address,
    serve_metrics,
)
from maomao_cli.errors import BadInput, Unavailable
from maomao_cli.keys import Keys
from maomao_cli.models import Run, Schedule, Tool
from maomao_cli.services.worker import Worker
from maomao_cli.store.memory import MemoryStore

KEYS = Keys("/maomao")


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_counts_follow_the_worker() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock.monotonic)
    store.put(KEYS.tool("t"), Tool(name="t", image="img").to_json())
    for name, cron, paused in (("s", "* * * * * *", False), ("p", "* * * * * *", True)):
        schedule = Schedule(name=name, tool="t", cron=cron, created=START, paused=paused)
        store.put(KEYS.schedule(name), schedule.to_json())
    metrics = WorkerMetrics(now=clock.now)
    worker = Worker(
        settings(),
        store_factory=lambda: store,
        make_runs=lambda s: FakeRuns(s, "a", Journal(), clock, failing=1),
        member="a",
        clock=clock,
        make_pool=inline_pool,
        observer=metrics,
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    assert worker.ready.wait(10)
    clock.wait_for_waiters(3)  # loop, keep-alive, outbox flush
    for _ in range(3):
        clock.advance(1.0)
    clock.advance(0.5)
    r = metrics.registry
    # Firings at +1, +2, +3 each fail once: each retried (claimed again) after 0.2 s.
    assert sample(r, "maomao_claims_total", result="won") == 6
    assert sample(r, "maomao_claims_total", result="lost") == 0
    assert sample(r, "maomao_firing_lag_seconds_count") == 6
    assert sample(r, "maomao_runs_total", tool="t", status="failed") == 3
    assert sample(r, "maomao_runs_total", tool="t", status="succeeded") == 3
    assert sample(r, "maomao_run_duration_seconds_count", tool="t") == 6
    last = sample(r, "maomao_schedule_last_success_timestamp_seconds", schedule="s")
    assert last == pytest.approx(START + 3.2)
    assert sample(r, "maomao_schedule_next_fire_timestamp_seconds", schedule="s") == START + 4
    assert sample(r, "maomao_schedule_next_fire_timestamp_seconds", schedule="p") is None
    assert sample(r, "maomao_schedule_period_seconds", schedule="s") == 1.0
    assert sample(r, "maomao_member_running_runs") == 0
    assert sample(r, "maomao_etcd_up") == 1
    assert sample(r, "maomao_build_info", version="0.1.0") == 1
    stop.set()
    for _ in range(20):
        if not thread.is_alive():
            break
        clock.advance(0.5)
    thread.join(10)


def test_skipped_missed_and_spikes() -> None:
    metrics = WorkerMetrics()
    metrics.claimed("s", won=False, lag=-0.1)  # a clock step back counts as no lag
    metrics.skipped("s", "overlap")
    metrics.missed("s", "beyond_grace")
    metrics.spike("t")
    metrics.finished(Run(id="r", tool="t", member="a", status="lost"))
    r = metrics.registry
    assert sample(r, "maomao_claims_total", result="lost") == 1
    assert sample(r, "maomao_firing_lag_seconds_bucket", le="0.005") == 1
    assert sample(r, "maomao_firings_skipped_total", schedule="s", reason="overlap") == 1
    assert sample(r, "maomao_firings_missed_total", schedule="s", reason="beyond_grace") == 1
    assert sample(r, "maomao_spikes_total", tool="t") == 1
    assert sample(r, "maomao_runs_total", tool="t", status="lost") == 1
    assert sample(r, "maomao_run_duration_seconds_count", tool="t") is None  # no duration
    assert sample(r, "maomao_etcd_up") is None  # no worker attached: no state to tell


def test_each_worker_has_its_own_registry() -> None:
    one, two = WorkerMetrics(), WorkerMetrics()
    one.spike("t")
    assert sample(two.registry, "maomao_spikes_total", tool="t") is None
    assert b"maomao_spikes_total" not in generate_latest()  # the global registry


def test_serve_metrics_over_http() -> None:
    metrics = WorkerMetrics()
    metrics.spike("t")
    server = serve_metrics(metrics.registry, ListenAddress("127.0.0.1", 0))
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
        assert 'maomao_spikes_total{tool="t"} 1.0' in body
        with pytest.raises(Unavailable, match=r"cannot serve metrics on 127\.0\.0\.1"):
            serve_metrics(metrics.registry, ListenAddress("127.0.0.1", server.port))
    finally:
        server.close()


def test_serve_page_says_whether_etcd_answers() -> None:
    def down() -> None:
        raise Unavailable("etcd down")

    up_body, content_type = ServeMetrics(check_etcd=lambda: None).render()
    down_body, _ = ServeMetrics(check_etcd=down).render()
    assert b"maomao_etcd_up 1.0" in up_body and b"maomao_etcd_up 0.0" in down_body
    assert b'maomao_build_info{version="0.1.0"} 1.0' in up_body
    assert content_type.startswith("text/plain")


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("9464", "127.0.0.1", 9464),
        ("0.0.0.0:9464", "0.0.0.0", 9464),
        ("localhost:1", "localhost", 1),
        ("[::1]:9464", "::1", 9464),
        ("[::]:0", "::", 0),
    ],
)
def test_listen_address(text: str, host: str, port: int) -> None:
    assert listen_address(text) == ListenAddress(host, port)


@pytest.mark.parametrize("text", ["", "x", ":9464", "::1:9464", "h:70000", "h:-1", "h:p"])
def test_bad_listen_address(text: str) -> None:
    with pytest.raises(BadInput, match="is not an address to listen on") as caught:
        listen_address(text)
    assert caught.value.hint is not None and "HOST:PORT" in caught.value.hint
