"""Faults injected into a running collaboration, one at a time, on one shared test bed.

For each fault the measured window runs from a few seconds before the fault to a few
seconds after recovery; once every firing in it has settled, the records are judged
(checks.judge) and the verdict joins the session summary. Zero duplicates, zero
unexplained misses, zero missing records and nothing lost are asserted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pytest

from figures import figure

from .checks import VERDICTS, Verdict, judge, settled
from .conftest import Rig
from .rig import RETRIES, SCHEDULE, TOOL, etcd_leader, fill_disk, wait_until

# One xdist worker runs them all, in this order, on its one rig: tests/xdist_groups.py.
pytestmark = [pytest.mark.faults, pytest.mark.etcd, pytest.mark.docker, pytest.mark.slow]

SETTLE_LIMIT = 90.0  # seconds to wait for retries and outboxes to land before judging


def measure(rig: Rig, fault: str, inject: Callable[[], None]) -> Verdict:
    profile = rig.profile
    start = math.ceil(time.time()) + 1
    time.sleep(profile.baseline)
    inject()
    time.sleep(profile.settle)
    end = math.floor(time.time()) - 1
    window = (start, end)
    deadline = time.monotonic() + SETTLE_LIMIT
    runs = rig.runs()
    while not settled(runs, SCHEDULE, window, RETRIES) and time.monotonic() < deadline:
        time.sleep(1)
        runs = rig.runs()
    verdict = judge(fault, runs, SCHEDULE, window, RETRIES)
    verdict.data_lost = _data_lost(rig, runs, verdict)
    verdict.containers_left = _containers_left(rig, verdict)
    VERDICTS.append(verdict)
    figure(f"\n{fault}: window {window}, {verdict.outcomes}")
    for line in verdict.details[:20]:
        figure(f"   {line}")
    return verdict


def _data_lost(rig: Rig, runs: list[dict[str, object]], verdict: Verdict) -> int:
    """Schedules, tools and spikes gone since the start, plus succeeded runs whose data
    file is missing on their member's disk (the container's own witness)."""
    lost = 0
    now = rig.take_inventory()
    for kind, before in rig.inventory.items():
        gone = before - now[kind]
        lost += len(gone)
        verdict.details.extend(f"{kind} lost: {name}" for name in sorted(gone))
    for host in rig.hosts:
        succeeded = sum(
            1
            for r in runs
            if r["tool"] == TOOL and r["member"] == host.worker_name and r["status"] == "succeeded"
        )
        files = host.data_files()
        if files < succeeded:
            lost += succeeded - files
            verdict.details.append(f"{host.worker_name}: {succeeded} succeeded, {files} data files")
    return lost


def _containers_left(rig: Rig, verdict: Verdict) -> int:
    """Containers that had exited and are still there a few seconds later, not being
    removed (each counted once, under the fault that left it, and named in the verdict's
    details). One only created may be starting, one exited a moment ago not removed yet."""
    over = ("exited", "dead")
    first = {c["Id"] for c in rig.containers(running=False) if c.get("State") in over}
    first -= rig.left_seen
    if not first:
        return 0
    time.sleep(5)
    left = [c for c in rig.containers() if c["Id"] in first and c.get("State") in over]
    rig.left_seen |= {c["Id"] for c in left}
    for c in left:
        labels = c.get("Labels") or {}
        verdict.details.append(
            f"container left: {','.join(c.get('Names') or [])} of {labels.get('maomao.member')}"
            f" run {labels.get('maomao.run')}: {c.get('State')}, {c.get('Status')}"
        )
    return len(left)


def assert_clean(verdict: Verdict) -> None:
    assert verdict.firings > 0
    assert verdict.duplicates == 0, verdict.details
    assert verdict.unexplained == 0, verdict.details
    assert verdict.missing == 0, verdict.details
    assert verdict.data_lost == 0, verdict.details


def healthy_again(rig: Rig) -> None:
    wait_until(rig.etcd_healthy, 60, "etcd")
    wait_until(lambda: rig.members() == {h.worker_name for h in rig.hosts}, 60, "all workers")


@pytest.mark.timeout(300)
def test_worker_sigkill_during_a_run(rig: Rig) -> None:
    victim = rig.hosts[1]

    def inject() -> None:
        # Kill the worker while it holds a run it has not finished. A dummy run lasts tens
        # of milliseconds, so one seen running may be recorded before a kill lands: the
        # worker is frozen first, and killed only if a run of it is still `running`.
        def frozen_mid_run() -> bool:
            if not rig.running_on(victim):
                return False
            victim.freeze_worker()
            if any(
                r["member"] == victim.worker_name and r["status"] == "running" for r in rig.runs()
            ):
                return True
            victim.thaw_worker()
            return False

        wait_until(frozen_mid_run, 60, f"a run on {victim.worker_name} to freeze")
        victim.kill_worker()
        time.sleep(rig.profile.worker_dead)
        victim.start_worker()
        healthy_again(rig)

    verdict = measure(rig, "worker SIGKILL during a run", inject)
    assert_clean(verdict)
    # The run cut off was marked lost (by a live worker or the restarted one) and retried.
    assert verdict.outcomes["succeeded on retry"] + verdict.outcomes["lost"] >= 1, verdict


@pytest.mark.timeout(300)
def test_etcd_leader_sigkill(rig: Rig) -> None:
    def inject() -> None:
        leader = etcd_leader(rig.observer, rig.hosts)
        leader.kill_etcd()
        time.sleep(rig.profile.leader_dead)
        leader.start_etcd(rig.initial_cluster, "existing")
        healthy_again(rig)

    assert_clean(measure(rig, "etcd leader SIGKILL", inject))


@pytest.mark.timeout(300)
def test_partition_of_a_member_and_its_worker(rig: Rig) -> None:
    isolated = rig.hosts[2]

    def inject() -> None:
        # Cut the cable while a container runs there: its outcome cannot reach etcd.
        wait_until(lambda: rig.running_on(isolated), 30, f"a run on {isolated.worker_name}")
        isolated.cable(rig.network.bridge_ns, up=False)
        try:
            time.sleep(rig.profile.partition)
        finally:
            isolated.cable(rig.network.bridge_ns, up=True)
        healthy_again(rig)

    verdict = measure(rig, f"partition of one host ({rig.profile.partition:.0f} s)", inject)
    assert_clean(verdict)


@pytest.mark.timeout(300)
def test_all_of_etcd_down(rig: Rig) -> None:
    def inject() -> None:
        for host in rig.hosts:
            host.kill_etcd()
        time.sleep(rig.profile.etcd_down)
        for host in rig.hosts:
            host.start_etcd(rig.initial_cluster, "existing")
        healthy_again(rig)

    verdict = measure(rig, f"all etcd down ({rig.profile.etcd_down:.0f} s)", inject)
    assert_clean(verdict)


@pytest.mark.timeout(300)
def test_docker_engine_restart(rig: Rig) -> None:
    def inject() -> None:
        rig.restart_docker()

    verdict = measure(rig, "Docker engine restart", inject)
    assert_clean(verdict)


@pytest.mark.timeout(300)
def test_data_disk_full(rig: Rig) -> None:
    def inject() -> None:
        fillers = [fill_disk(host.importdir) for host in rig.hosts]
        try:
            time.sleep(rig.profile.disk_full)
        finally:
            for filler in fillers:
                filler.unlink()

    verdict = measure(rig, f"data disk full ({rig.profile.disk_full:.0f} s)", inject)
    assert_clean(verdict)


@pytest.mark.timeout(180)
def test_workers_stop_cleanly_and_leave_no_container(rig: Rig) -> None:
    codes = {h.worker_name: h.stop_worker() for h in rig.hosts}
    left = rig.containers()
    verdict = Verdict("workers stopped (SIGTERM)", containers_left=len(left))
    VERDICTS.append(verdict)
    assert codes == {h.worker_name: 0 for h in rig.hosts}, [h.log_text()[-3000:] for h in rig.hosts]
    assert left == [], [(c["Names"], c["State"], c["Labels"]) for c in left]
