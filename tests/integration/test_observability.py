"""A real worker on real etcd and dockerd, watched the ways an operator would: its
/metrics scraped and parsed with prometheus-client's parser (every metric checked against
the run records; `promtool check metrics` when Debian's prometheus package is there), and
its `--log-format json` output (every line parses, a run's lines join on run_id)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import DUMMY_IMAGE, Env
from figures import figure
from observe import stored

pytestmark = [pytest.mark.etcd, pytest.mark.docker]

Samples = dict[str, list[tuple[dict[str, str], float]]]


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def scrape(url: str) -> tuple[str, Samples]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append((dict(sample.labels), float(sample.value)))
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for found, v in samples.get(name, []) if labels.items() <= found.items())


def ok(result: Any) -> Any:
    assert result.code == 0, result.out + result.err
    return result


class Lines:
    """The worker's output lines, read on a thread as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        assert proc.stdout is not None
        self._stdout = proc.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """After the process ended: every line read, the pipe closed."""
        self._thread.join(30)
        self._stdout.close()

    def _read(self) -> None:
        for line in self._stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def first(self, text: str) -> str:
        with self._cond:
            assert self._cond.wait_for(
                lambda: any(text in line for line in self.lines), timeout=60
            ), "\n".join(self.lines)
            return next(line for line in self.lines if text in line)


@pytest.mark.timeout(240)
def test_metrics_and_json_logs_of_a_real_worker(docker_env: Env) -> None:
    env = docker_env
    ok(env.run("register", "spiky", DUMMY_IMAGE, "--network", "none", "--env", "SPIKE_AT=5"))
    ok(env.run("register", "slow", DUMMY_IMAGE, "--network", "none", "--env", "SLEEP=2"))
    ok(env.run("run", "spiky", "--cron", "* * * * * *"))
    ok(env.run("run", "slow", "--cron", "* * * * * *"))  # overlaps itself: skipped firings
    ok(env.run("run", "spiky", "--daily", "--name", "later"))  # never fires in the test
    worker = env.popen("worker", "--metrics", "127.0.0.1:0", "--log-format", "json")
    lines = Lines(worker)
    try:
        started = json.loads(lines.first("metrics on http://"))
        url = started["message"].removeprefix("metrics on ")
        # Until the spike (run 5) and a few skips are in, then stop both schedules.
        while True:
            runs = stored(env, "runs")
            spiky = [r for r in runs if r["tool"] == "spiky" and r["status"] == "succeeded"]
            skipped = [r for r in runs if r["status"] == "skipped"]
            if len(spiky) >= 6 and skipped:
                break
            assert worker.poll() is None, "\n".join(lines.lines)
            time.sleep(0.5)
        ok(env.run("schedule", "pause", "spiky"))
        ok(env.run("schedule", "pause", "slow"))
        # Consistent once nothing runs and every claim has its record (the worker's last
        # claims may land just after the pause).
        while True:
            text, samples = scrape(url)
            runs = stored(env, "runs")
            claims = value(samples, "maomao_claims_total")
            if value(samples, "maomao_member_running_runs") == 0 and claims == len(runs):
                _, again = scrape(url)
                if value(again, "maomao_claims_total") == claims:
                    break
            time.sleep(0.5)
        runs = json.loads(ok(env.run("runs", "--json", "-n", "1000")).out)  # as users see them
        listed = json.loads(ok(env.run("schedule", "list", "--json")).out)
        stored_spikes = json.loads(ok(env.run("spikes", "--tool", "spiky", "--json")).out)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        lines.close()
    assert worker.returncode == 0, "\n".join(lines.lines)

    claims = value(samples, "maomao_claims_total")
    check_metrics(samples, runs, claims, listed, stored_spikes)
    promtool = shutil.which("promtool")
    if promtool is not None:  # Debian's prometheus package (not installed by test.sh)
        checked = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    check_logs(lines.lines, runs)


def check_metrics(
    samples: Samples,
    runs: list[dict[str, Any]],
    claims: float,
    listed: list[dict[str, Any]],
    stored_spikes: list[dict[str, Any]],
) -> None:
    by_status = Counter((r["tool"], r["status"]) for r in runs)
    ran = [r for r in runs if r["status"] != "skipped"]
    figure(
        f"\nmetrics: {len(runs)} claims, {len(ran)} runs, {by_status[('slow', 'skipped')]} "
        f"skipped, {len(stored_spikes)} spike(s)"
    )
    assert value(samples, "maomao_claims_total", result="won") == len(runs)
    assert value(samples, "maomao_claims_total", result="lost") == 0  # the only member
    assert value(samples, "maomao_firing_lag_seconds_count") == claims
    assert value(samples, "maomao_firing_lag_seconds_bucket", le="+Inf") == claims
    for (tool, status), count in by_status.items():
        if status != "skipped":
            assert value(samples, "maomao_runs_total", tool=tool, status=status) == count
            assert value(samples, "maomao_run_duration_seconds_count", tool=tool) == count
    assert value(samples, "maomao_runs_total") == len(ran)
    overlap = [r for r in runs if r["status"] == "skipped" and "overlap" in (r["error"] or "")]
    missed = [r for r in runs if r["status"] == "skipped" and "missed" in (r["error"] or "")]
    assert overlap, "the slow schedule overlapped itself"
    assert value(samples, "maomao_firings_skipped_total", schedule="slow", reason="overlap") == (
        len([r for r in overlap if r["schedule"] == "slow"])
    )
    assert value(samples, "maomao_firings_skipped_total") == len(overlap)
    assert value(samples, "maomao_firings_missed_total") == len(missed)
    assert len(stored_spikes) == 1
    assert value(samples, "maomao_spikes_total", tool="spiky") == 1
    for name in ("spiky", "slow"):
        newest = max(
            epoch(r["finished"])
            for r in runs
            if r["schedule"] == name and r["status"] == "succeeded"
        )
        last = value(samples, "maomao_schedule_last_success_timestamp_seconds", schedule=name)
        assert abs(last - newest) < 1.0, (name, last, newest)  # the record keeps seconds
    # Paused schedules have no next fire time; the daily one has its listed one.
    next_fires = {
        s["schedule"]: v for s, v in samples["maomao_schedule_next_fire_timestamp_seconds"]
    }
    (later,) = [s for s in listed if s["name"] == "later"]
    assert next_fires == {"later": epoch(later["next_fire"])}
    periods = {s["schedule"]: v for s, v in samples["maomao_schedule_period_seconds"]}
    assert periods == {"later": 86400.0}
    assert value(samples, "maomao_etcd_up") == 1
    assert samples["maomao_build_info"] == [({"version": "0.1.0"}, 1.0)]


def check_logs(lines: list[str], runs: list[dict[str, Any]]) -> None:
    ran = [r for r in runs if r["status"] != "skipped"]
    overlap = [r for r in runs if r["status"] == "skipped" and "overlap" in (r["error"] or "")]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"time", "level", "event", "message", "member"} <= record.keys(), record
        assert record["member"] == "member-a"
        assert datetime.fromisoformat(record["time"]).tzinfo is not None
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if "run_id" in record:
            by_run[record["run_id"]].append(record)
    for run in ran:
        events = [r["event"] for r in by_run[run["id"]]]
        assert events[0] == "claimed" and events[-1] == "finished", (run["id"], events)
        finished = by_run[run["id"]][-1]
        assert finished["status"] == run["status"]
        assert finished["schedule"] == run["schedule"] and finished["tool"] == run["tool"]
        assert isinstance(finished["duration_s"], float)
        assert epoch(finished["nominal"]) == epoch(run["fire_time"])
    for skip in overlap:
        (line,) = by_run[skip["id"]]
        assert line["event"] == "skipped" and "overlap" in line["reason"]
