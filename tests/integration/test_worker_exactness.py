"""The worker's firing path on a real etcd (its own, so it can be stopped) and a private
dockerd: every claimed firing ends in one final record through an etcd outage, a backlog
is the collaboration's (a member claims only what it can start), a worker killed during an
outage writes its outcomes at its next start, a long outage ends in one catch-up run per
schedule, mode everywhere's lost run is re-run by its own member, and a retry waiting for
its backoff outlives the member that queued it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_worker import runs_of, start_worker, stop, wait_for_members

from conftest import DUMMY_IMAGE, Env, make_env
from figures import figure
from observe import stored_under
from servers import DockerDaemon, EtcdCluster

pytestmark = [pytest.mark.etcd, pytest.mark.docker, pytest.mark.slow]

WORDS = ("catch-up", "skipped", "coalesced", "reachable", "unreachable", "lease")
FINAL = {"succeeded", "failed", "timed-out", "lost", "skipped"}


@pytest.fixture
def cluster() -> Iterator[EtcdCluster]:
    own = EtcdCluster(1).start()
    yield own
    own.stop()


def worker_env(
    tmp_path: Path, cluster: EtcdCluster, docker: DockerDaemon, prefix: str, **worker: object
) -> Env:
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in worker.items())
    (tmp_path / "config.toml").write_text(
        f'[data]\nimportdir = "{tmp_path / "data"}"\n[docker]\nnetwork = "none"\n[worker]\n{lines}'
    )
    return make_env(tmp_path, cluster.endpoints, prefix, MAOMAO_DOCKER_HOST=docker.host)


def setup_tool(env: Env, tool: str, *extra: str) -> None:
    registered = env.run("register", tool, DUMMY_IMAGE, "--network", "none", *extra)
    assert registered.code == 0, registered.err


def schedule(env: Env, tool: str, name: str, cron: str, *extra: str) -> None:
    scheduled = env.run("run", tool, "--cron", cron, "--name", name, *extra)
    assert scheduled.code == 0, scheduled.err


def etcd_keys(cluster: EtcdCluster, prefix: str) -> list[str]:
    result = subprocess.run(
        ["etcdctl", "--endpoints", cluster.endpoints, "get", "--prefix", prefix, "--keys-only"],
        capture_output=True,
        text=True,
        env={**os.environ, "ETCDCTL_API": "3"},
        check=True,
    )
    return [line for line in result.stdout.splitlines() if line]


def claims_of(cluster: EtcdCluster, prefix: str, name: str) -> list[tuple[float, int]]:
    """(fire time, attempt) of every claim of schedule `name`."""
    found = []
    for key in etcd_keys(cluster, f"{prefix}/firings/{name}/"):
        leaf = key.rsplit("/", 1)[-1].split("@")[0]
        epoch_text, _, attempt = leaf.partition(".r")
        found.append((float(epoch_text), int(attempt or 1)))
    return sorted(found)


def records_in_etcd(cluster: EtcdCluster, prefix: str) -> list[dict[str, Any]]:
    return stored_under(cluster.endpoints, prefix, "runs")


def wait_until(
    check: Callable[[], bool], workers: list[subprocess.Popen[str]], within: float = 60.0
) -> None:
    """Until `check` holds, at most `within` seconds: then the workers are stopped and the
    failure shows what each of them logged (a test timeout would show none of it)."""
    limit = time.monotonic() + within
    while not check():
        for worker in workers:
            assert worker.poll() is None, worker.communicate()[0]
        if time.monotonic() > limit:
            _, outputs = stop(workers)
            logs = "\n".join(f"--- worker {n} ---\n{out}" for n, out in enumerate(outputs))
            pytest.fail(f"not within {within:.0f}s; the workers logged:\n{logs}")
        time.sleep(0.3)


def outage(cluster: EtcdCluster, seconds: float) -> tuple[float, float]:
    member = cluster.members[0]
    down = time.time()
    member.stop()
    time.sleep(seconds)
    cluster.restart(member)
    return down, time.time()


@pytest.mark.timeout(240)
def test_etcd_stopped_15s_every_claimed_firing_has_one_final_record(
    tmp_path: Path, cluster: EtcdCluster, docker: DockerDaemon, prefix: str
) -> None:
    env = worker_env(tmp_path, cluster, docker, prefix, max_parallel=1)
    setup_tool(env, "t", "--env", "SLEEP=1")
    schedule(env, "t", "every-second", "* * * * * *", "--allow-overlap")
    names = ["w1", "w2"]
    workers = [start_worker(env, name) for name in names]
    try:
        wait_for_members(env, set(names), workers)
        time.sleep(6)
        outage(cluster, 15)
        time.sleep(10)
    finally:
        codes, outputs = stop(workers)
    assert codes == [0, 0], outputs
    runs = [r for r in runs_of(env, "--tool", "t") if r["schedule"] == "every-second"]
    records = Counter((r["fire_time"], r["attempt"]) for r in runs)
    claims = claims_of(cluster, prefix, "every-second")
    without = [c for c in claims if records[c] == 0]
    doubled = [c for c in claims if records[c] > 1]
    unfinished = [r for r in runs if r["status"] not in FINAL]
    figure(
        f"\netcd stopped 15 s, max_parallel 1: claims {len(claims)}, records {len(runs)}, "
        f"claims without a record {len(without)}, with two {len(doubled)}, not final "
        f"{len(unfinished)}, statuses {dict(Counter((r['status'], r['trigger']) for r in runs))}"
        f", catch-ups {[(r['member'], r['warning']) for r in runs if r['trigger'] == 'catch-up']}"
    )
    assert without == [] and doubled == [] and unfinished == []
    assert len(claims) >= 5, "it kept claiming (fewer on a loaded machine)"
    assert sorted(records) == claims, "every record belongs to a claim"


@pytest.mark.timeout(180)
def test_a_backlog_is_shared_no_firing_waits_while_a_member_is_free(
    tmp_path: Path, cluster: EtcdCluster, docker: DockerDaemon, prefix: str
) -> None:
    env = worker_env(tmp_path, cluster, docker, prefix, max_parallel=1)
    setup_tool(env, "slow", "--env", "SLEEP=2")
    names = ["w1", "w2", "w3"]
    workers = [start_worker(env, name) for name in names]
    try:
        wait_for_members(env, set(names), workers)
        up = time.time()
        schedule(env, "slow", "backlog", "* * * * * *", "--allow-overlap")
        time.sleep(25)
    finally:
        codes, outputs = stop(workers)
    assert codes == [0, 0, 0], outputs
    # The records as etcd holds them: times to the microsecond (`runs` shows seconds).
    runs = [r for r in records_in_etcd(cluster, prefix) if r["schedule"] == "backlog"]
    ran = sorted(
        (r for r in runs if r["status"] != "skipped" and r["finished"] is not None),
        key=lambda r: r["started"],
    )
    # A member is busy from its run's start to its end and the bookkeeping after it (the
    # record, the spike check, pruning, the slot freed and the next claim).
    slack = 2.0

    def free_at(member: str, t: float) -> bool:
        return not any(
            r["member"] == member and r["started"] - 0.2 <= t <= r["finished"] + slack for r in ran
        )

    steady = [r for r in ran if r["fire_time"] >= up + 2]
    waited = [r for r in steady if r["started"] - r["fire_time"] > 2]
    # A firing that waited longer than 2 s: was a member free while it waited (from half a
    # second after its firing to half a second before its start: time to see and claim it)?
    violations = []
    for r in waited:
        steps = int(10 * (r["started"] - r["fire_time"] - 1.0))
        instants = [r["fire_time"] + 0.5 + i / 10 for i in range(steps)]
        if any(free_at(m, t) for m in names for t in instants):
            violations.append(r)
    late = sorted(r["started"] - r["fire_time"] for r in steady)
    per_member = Counter(r["member"] for r in steady)
    claims = claims_of(cluster, prefix, "backlog")
    started = {(r["fire_time"], r["attempt"]) for r in ran}
    figure(
        f"\nbacklog (3 workers, max_parallel 1, 2 s tool every second): firings run "
        f"{len(steady)}, claims {len(claims)}, claims never started "
        f"{len([c for c in claims if c not in started])}, start lag p50 "
        f"{late[len(late) // 2]:.2f}s max {late[-1]:.2f}s, waited > 2 s {len(waited)}, of "
        f"which while a member was free {len(violations)}, runs per member "
        f"{dict(per_member)}, run length p50 "
        f"{sorted(r['finished'] - r['started'] for r in ran)[len(ran) // 2]:.1f}s, statuses "
        f"{dict(Counter(r['status'] for r in runs))}"
    )
    assert [c for c in claims if c not in started] == [], "every claim started its run"
    assert violations == [], [(r["fire_time"], r["member"], r["started"]) for r in violations]
    assert len(steady) >= 8
    assert set(per_member) == set(names), "the backlog was shared"
    assert not [r for r in runs if r["status"] not in FINAL]


@pytest.mark.timeout(180)
def test_a_worker_killed_during_an_outage_writes_its_outcomes_after_restart(
    tmp_path: Path, cluster: EtcdCluster, docker: DockerDaemon, prefix: str
) -> None:
    env = worker_env(tmp_path, cluster, docker, prefix)
    setup_tool(env, "k", "--env", "SLEEP=3")
    schedule(env, "k", "every-5s", "*/5 * * * * *")
    workers = [start_worker(env, "w1"), start_worker(env, "w2")]
    restarted: subprocess.Popen[str] | None = None
    journal = tmp_path / "state" / "outbox-w1.jsonl"
    try:
        wait_for_members(env, {"w1", "w2"}, workers)
        running: list[dict[str, Any]] = []

        def w1_started_a_run() -> bool:
            running[:] = [
                r
                for r in records_in_etcd(cluster, prefix)
                if r["status"] == "running"
                and r["member"] == "w1"
                and time.time() - r["started"] <= 1.5
            ]
            return bool(running)

        wait_until(w1_started_a_run, workers)
        member = cluster.members[0]
        member.stop()  # its run ends while etcd is down: the outcome stays with w1
        # Until its outcome is on disk: the run ends, and its write to etcd times out first.
        deadline = time.monotonic() + 30
        kept = ""
        while time.monotonic() < deadline and not any(r["id"] in kept for r in running):
            time.sleep(0.2)
            kept = journal.read_text() if journal.exists() else ""
        workers[0].kill()
        killed_output = workers[0].communicate(timeout=30)[0]
        cluster.restart(member)
        restarted = start_worker(env, "w1")
        wait_for_members(env, {"w1", "w2"}, [restarted, workers[1]])
        time.sleep(8)
    finally:
        # The killed one too, if the test failed before it was killed; one that exited by
        # itself is reported with its exit status and output.
        if workers[0].poll() is None:
            stop([workers[0]])
        codes, outputs = stop([w for w in (workers[1], restarted) if w is not None])
    assert workers[0].returncode == -signal.SIGKILL, killed_output
    assert codes == [0, 0], outputs
    [cut] = running
    runs = [r for r in runs_of(env, "--tool", "k") if r["schedule"] == "every-5s"]
    [record] = [r for r in runs if r["id"] == cut["id"]]
    same_firing = [r for r in runs if r["fire_time"] == cut["fire_time"]]
    succeeded = Counter(r["fire_time"] for r in runs if r["status"] == "succeeded")
    figure(
        f"\nworker killed during an outage: journal lines before restart "
        f"{len(kept.splitlines())}, its run now {record['status']}, records of that firing "
        f"{len(same_firing)}, firings run twice {sum(1 for n in succeeded.values() if n > 1)}, "
        f"statuses {dict(Counter(r['status'] for r in runs))}"
    )
    assert cut["id"] in kept, "the outcome was on disk before the restart"
    assert record["status"] == "succeeded", record
    assert len(same_firing) == 1, same_firing
    assert max(succeeded.values()) == 1
    assert not [r for r in runs if r["status"] == "running"]


@pytest.mark.timeout(300)
def test_an_outage_ends_in_one_catch_up_run_per_schedule(
    tmp_path: Path, cluster: EtcdCluster, docker: DockerDaemon, prefix: str
) -> None:
    # The 80 s outage under the 300 s grace window, scaled by a quarter.
    seconds, grace = float(os.environ.get("MAOMAO_TEST_OUTAGE", "20")), 75.0
    env = worker_env(tmp_path, cluster, docker, prefix, misfire_grace=grace)
    setup_tool(env, "c")
    # Every 5 s: runs on a loaded machine take 1 to 3 s, and skips of ordinary overlaps
    # would hide the ones an outage causes.
    schedule(env, "c", "guarded", "*/5 * * * * *")
    schedule(env, "c", "overlapping", "*/5 * * * * *", "--allow-overlap")
    names = ["w1", "w2", "w3"]
    workers = [start_worker(env, name) for name in names]
    try:
        wait_for_members(env, set(names), workers)
        time.sleep(8)
        down, back = outage(cluster, seconds)
        time.sleep(15)
    finally:
        codes, outputs = stop(workers)
    assert codes == [0, 0, 0], outputs
    runs = runs_of(env, "--tool", "c")
    skipped = [r for r in runs if r["status"] == "skipped" and r["fire_time"] > down]
    caught_up = max(r["fire_time"] for r in runs if r["trigger"] == "catch-up")
    # A skip after the catch-up is an ordinary overlap (a run slowed by the load here).
    stretch = [r for r in skipped if r["fire_time"] <= caught_up]
    for name, output in zip(names, outputs, strict=True):
        said = [line for line in output.splitlines() if any(w in line for w in WORDS)]
        figure(f"{name}: " + "\n  ".join(said))
    figure(
        f"records: {[(r['schedule'], r['fire_time'], r['member'], r['status'], r['trigger'], r['error'], r['warning']) for r in runs if r['fire_time'] > down]}"
    )
    report = {}
    for name in ("guarded", "overlapping"):
        mine = [r for r in runs if r["schedule"] == name and r["fire_time"] > down]
        catch_ups = [r for r in mine if r["trigger"] == "catch-up"]
        report[name] = catch_ups
        succeeded = Counter(r["fire_time"] for r in mine if r["status"] == "succeeded")
        assert max(succeeded.values()) == 1, name
        assert len(catch_ups) == 1, (name, catch_ups)
        assert catch_ups[0]["status"] == "succeeded"
        note = catch_ups[0]["warning"] or ""
        assert "coalesced " in note and "missed firings" in note, note
        # Nothing between the outage's start and the catch-up ran one by one.
        assert min(r["fire_time"] for r in mine) == catch_ups[0]["fire_time"]
    figure(
        f"\n{seconds:.0f} s etcd outage, grace {grace:.0f} s, three workers: catch-up runs "
        + ", ".join(
            f"{name} {len(c)} ({c[0]['warning']}, {c[0]['fire_time'] - back:+.1f}s after etcd was back)"
            for name, c in report.items()
        )
        + f"; skip records in the outage's stretch {len(stretch)}, after it {len(skipped)}"
    )
    assert stretch == []


@pytest.mark.timeout(180)
def test_everywhere_sigkill_the_killed_member_reruns_its_firing(
    tmp_path: Path, cluster: EtcdCluster, docker: DockerDaemon, prefix: str
) -> None:
    env = worker_env(tmp_path, cluster, docker, prefix, lease_ttl=3)
    setup_tool(env, "e", "--env", "SLEEP=4")
    schedule(env, "e", "both", "*/10 * * * * *", "--everywhere")
    workers = [start_worker(env, "e1"), start_worker(env, "e2")]
    restarted: subprocess.Popen[str] | None = None
    try:
        wait_for_members(env, {"e1", "e2"}, workers)
        cut: list[dict[str, Any]] = []

        def e1_started_a_run() -> bool:
            cut[:] = [
                r
                for r in records_in_etcd(cluster, prefix)
                if r["status"] == "running"
                and r["member"] == "e1"
                and time.time() - r["started"] <= 1.5
            ]
            return bool(cut)

        wait_until(e1_started_a_run, workers)
        workers[0].kill()
        workers[0].communicate(timeout=30)
        # e2 sees e1's lease expire and marks the run lost, without running it itself.
        wait_until(
            lambda: any(
                r["id"] == cut[0]["id"] and r["status"] == "lost"
                for r in records_in_etcd(cluster, prefix)
            ),
            [workers[1]],
        )
        restarted = start_worker(env, "e1")
        wait_until(
            lambda: any(
                r["fire_time"] == cut[0]["fire_time"]
                and r["attempt"] == 2
                and r["status"] == "succeeded"
                for r in records_in_etcd(cluster, prefix)
            ),
            [restarted, workers[1]],
        )
    finally:
        # The killed one too, if the test failed before it was killed.
        live = [w for w in (*workers, restarted) if w is not None and w.poll() is None]
        codes, outputs = stop(live)
    assert codes == [0, 0], outputs
    runs = [r for r in runs_of(env, "--tool", "e") if r["fire_time"] == cut[0]["fire_time"]]
    by = sorted((r["member"], r["attempt"], r["status"]) for r in runs)
    [lost] = [r for r in runs if r["status"] == "lost"]
    figure(f"\neverywhere + SIGKILL of e1: records of its firing {by}; lost: {lost['error']}")
    assert by == [("e1", 1, "lost"), ("e1", 2, "succeeded"), ("e2", 1, "succeeded")]


@pytest.mark.timeout(180)
def test_a_retry_outlives_the_member_that_queued_it(
    tmp_path: Path, cluster: EtcdCluster, docker: DockerDaemon, prefix: str
) -> None:
    env = worker_env(tmp_path, cluster, docker, prefix, lease_ttl=3, backoff=15.0, backoff_max=15.0)
    setup_tool(env, "f", "--env", "EXIT_CODE=3")
    schedule(env, "f", "failing", "*/30 * * * * *", "--retries", "1")
    names = ["r1", "r2"]
    workers = dict(zip(names, (start_worker(env, n) for n in names), strict=True))
    try:
        wait_for_members(env, set(names), list(workers.values()))
        pending: list[str] = []

        def retry_recorded() -> bool:
            pending[:] = etcd_keys(cluster, f"{prefix}/retries/")
            return bool(pending)

        wait_until(retry_recorded, list(workers.values()))
        [first] = [r for r in records_in_etcd(cluster, prefix) if r["status"] == "failed"]
        queuer = first["member"]
        workers[queuer].kill()  # before the backoff is over
        killed_at = time.time()
        workers[queuer].communicate(timeout=30)
        survivor = next(n for n in names if n != queuer)
        wait_until(
            lambda: any(
                r["attempt"] == 2 and r["status"] != "running"
                for r in records_in_etcd(cluster, prefix)
            ),
            [workers[survivor]],
        )
        left = etcd_keys(cluster, f"{prefix}/retries/")
    finally:
        codes, outputs = stop([w for w in workers.values() if w.poll() is None])
    runs = [r for r in records_in_etcd(cluster, prefix) if r["fire_time"] == first["fire_time"]]
    by = sorted((r["attempt"], r["member"], r["status"]) for r in runs)
    [retry] = [r for r in runs if r["attempt"] == 2]
    figure(
        f"\nretry recorded in etcd: {[k.rsplit('/', 2)[-2:] for k in pending]}, queued by "
        f"{queuer} (killed {killed_at - first['finished']:.1f}s after the failure); records "
        f"{by}; the retry started {retry['started'] - first['finished']:.1f}s after the failure "
        f"(backoff 15 s)"
    )
    assert len(pending) == 1 and pending[0].endswith(".r2"), pending
    assert by == [(1, queuer, "failed"), (2, survivor, "failed")]
    assert left == [], "the record went once its retry was claimed"
    assert codes == [0], outputs
