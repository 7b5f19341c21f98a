"""Collaboration data end to end (issue 18): three members founded and joined with `maomao
etcd init/join` on 127.0.0.1, 127.0.0.2 and 127.0.0.3, a `git daemon` serving an empty bare
repository, the example tool linked to it with push on and scheduled `--everywhere` every
3 s, one `maomao worker` per member for RUN_FOR seconds, a spike planted at one firing on
every member.

Then, in a fresh clone of the server: every succeeded run of every member is there (the
run ids of the commit trailers against `maomao runs --json`), each member's files in its
own folder, `dataset status` on every member shows nothing unpushed, `git fsck` is clean;
and the planted firing has one spike record per member that ran it.
"""

# The server fixtures are imported by name below, so test arguments shadow them.
# ruff: noqa: F811

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import DUMMY_IMAGE, ROOT
from figures import figure
from gitservers import GitDaemon, git, git_daemon, git_root  # noqa: F401  (fixtures)
from servers import DockerDaemon, free_port

pytestmark = [pytest.mark.etcd, pytest.mark.docker, pytest.mark.slow]

RUN_FOR = 60.0  # seconds the workers run
SCHEDULE = "every3"
TOOL = "dummy"
PLANT_AFTER = 24  # seconds after the workers are up: the firing whose runs spike
PLANTED = "planted"  # the schedule that fires once, at the planted firing
ODD = "host3"  # the member whose tool writes another value (the dummy's ODD_MEMBER)
WORKER_CONFIG = """[docker]
network = "none"
host = "{docker_host}"
[git]
timeout = 20.0
[worker]
lease_ttl = 10  # the test machine is shared: a short lease expires under load
retries = 1
backoff = 1.0
shutdown_grace = 20.0
runs_kept = 1000000
"""


@dataclass
class Member:
    name: str
    address: str
    root: Path
    client_port: int
    peer_port: int

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.client_port}"

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("MAOMAO_", "XDG_"))}
        return {
            **keep,
            "MAOMAO_CONFIG": str(self.root / "config.toml"),
            "MAOMAO_MEMBER": self.name,
            "HOME": str(self.root),
            "COLUMNS": "200",
            "PYTHONPATH": str(ROOT / "src"),
        }

    def maomao(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "maomao_cli", *args],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
        )

    def ok(self, *args: str) -> str:
        done = self.maomao(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))


@pytest.fixture
def members(tmp_path: Path) -> Iterator[list[Member]]:
    found = []
    for i in (1, 2, 3):
        root = tmp_path / f"m{i}"
        root.mkdir()
        (root / "config.toml").write_text(
            f'[data]\nimportdir = "{root / "data"}"\nstatedir = "{root / "state"}"\n'
        )
        found.append(Member(f"host{i}", f"127.0.0.{i}", root, free_port(), free_port()))
    yield found
    for member in found:  # only the etcd processes this test started, by their pid files
        pid_file = member.root / "state" / "cluster" / "etcd.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


@pytest.fixture
def workers() -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    started: dict[str, subprocess.Popen[bytes]] = {}
    yield started
    for worker in started.values():  # a failed test: nothing of ours outlives it
        if worker.poll() is None:
            worker.kill()
            worker.wait(30)


def _found_and_joined(members: list[Member], docker: DockerDaemon) -> None:
    first, *others = members
    founded = first.json(
        "etcd", "init", "--listen", first.address,
        "--client-port", str(first.client_port), "--peer-port", str(first.peer_port),
    )  # fmt: skip
    printed = {first.name: founded["config"]}
    for member in others:
        joined = member.json(
            "etcd", "join", first.endpoint, "--token", founded["token_file"],
            "--listen", member.address,
            "--client-port", str(member.client_port), "--peer-port", str(member.peer_port),
        )  # fmt: skip
        printed[member.name] = joined["config"]
    for member in members:
        config = member.root / "config.toml"
        config.write_text(
            config.read_text()
            + WORKER_CONFIG.format(docker_host=docker.host)
            + printed[member.name]
            + "\ntimeout = 5.0\n"
        )


def _start_worker(member: Member) -> subprocess.Popen[bytes]:
    with open(member.root / "worker.log", "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "maomao_cli", "worker"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=member.env(),
        )


def _stop(worker: subprocess.Popen[bytes]) -> int:
    worker.send_signal(signal.SIGTERM)
    try:
        return worker.wait(90)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        return -9


def _wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(0.5)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@pytest.mark.timeout(600)
def test_every_members_runs_reach_the_shared_dataset_and_each_spike_is_kept(
    members: list[Member],
    workers: dict[str, subprocess.Popen[bytes]],
    docker: DockerDaemon,
    git_root: Path,
    git_daemon: GitDaemon,
    tmp_path: Path,
) -> None:
    h1 = members[0]
    names = {m.name for m in members}
    git_root.mkdir(parents=True, exist_ok=True)
    bare = git_root / f"collab-{os.urandom(4).hex()}.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))  # empty: the first push makes main

    _found_and_joined(members, docker)
    h1.ok("dataset", "add", "shared", git_daemon.url(bare.name), "--push")
    # Every member writes 100, but host3 writes 110: its snapshots are the odd ones out.
    values = ("--env", "VALUE=100", "--env", f"ODD_MEMBER={ODD}")
    h1.ok("register", TOOL, DUMMY_IMAGE, "--dataset", "shared", "--data-subdir", "obs", *values)
    h1.ok("run", TOOL, "--cron", "*/3 * * * * *", "--everywhere", "--name", SCHEDULE)

    for member in members:
        workers[member.name] = _start_worker(member)
    _wait_until(lambda: {m["name"] for m in h1.json("members")} == names, 90, "three workers")
    started = time.time()
    # One more --everywhere schedule fires once, at `planted`, between two firings of the
    # 3 s one; at that firing the tool writes a spike on every member (it reads
    # MAOMAO_FIRE_TIME). Overlapping runs of the tool take turns on a member, so each
    # member runs it, however busy the machine is.
    planted_at = math.ceil((started + PLANT_AFTER) / 3) * 3 + 1
    planted = _iso(planted_at)
    h1.ok("register", TOOL, DUMMY_IMAGE, *values, "--env", f"SPIKE_AT_FIRE={planted}")
    when = time.gmtime(planted_at)
    cron = f"{when.tm_sec} {when.tm_min} {when.tm_hour} {when.tm_mday} {when.tm_mon} *"
    h1.ok("run", TOOL, "--cron", cron, "--everywhere", "--name", PLANTED)
    time.sleep(max(0.0, started + RUN_FOR - time.time()))

    def planted_done() -> bool:
        listed = h1.json("runs", "--limit", "1000000")
        finished = [r for r in listed if r["schedule"] == PLANTED and r["finished"]]
        return {r["member"] for r in finished} == names

    try:
        _wait_until(planted_done, 180, "every member's run of the planted firing")
    except AssertionError as exc:
        listed = [r for r in h1.json("runs", "--limit", "1000000") if r["schedule"] == PLANTED]
        tails = {
            m.name: (m.root / "worker.log").read_text(errors="replace")[-1500:] for m in members
        }
        raise AssertionError(f"{exc}: {listed} {tails}") from None
    codes = {name: _stop(worker) for name, worker in workers.items()}
    logs = {m.name: (m.root / "worker.log").read_text(errors="replace") for m in members}
    assert codes == dict.fromkeys(names, 0), {n: text[-3000:] for n, text in logs.items()}

    runs: list[dict[str, Any]] = h1.json("runs", "--limit", "1000000")
    ours = [r for r in runs if r["schedule"] in (SCHEDULE, PLANTED)]
    succeeded = [r for r in ours if r["status"] == "succeeded"]
    by_member = Counter(r["member"] for r in succeeded)
    outcomes = Counter(r["status"] for r in ours)

    # The server, through a fresh clone: every succeeded run's commit is there.
    fresh = tmp_path / "fresh"
    git("clone", "-q", str(bare), str(fresh))
    log = git("log", "--format=%B%x00", "main", cwd=fresh)
    trailers = re.findall(r"^maomao-run: (\S+)$", log, flags=re.MULTILINE)
    on_server = Counter(trailers)
    missing = sorted(r["id"] for r in succeeded if r["id"] not in on_server)
    commits = int(git("rev-list", "--count", "main", cwd=fresh))
    merges = int(git("rev-list", "--count", "--merges", "main", cwd=fresh))
    fsck = subprocess.run(
        ["git", "-c", "safe.directory=*", "fsck", "--full", "--strict"],
        cwd=fresh,
        capture_output=True,
        text=True,
        timeout=120,
    )
    fsck_bare = subprocess.run(
        ["git", "-c", "safe.directory=*", "fsck", "--full", "--strict"],
        cwd=bare,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Each member's files in its own folder: one control file per firing it ran.
    files = {m.name: len(list((fresh / "obs" / m.name).glob("control-*.csv"))) for m in members}
    # (by the firings of the runs whose commits are there: a run marked lost while its
    # member's lease lapsed may still have finished and pushed)
    firings = {
        m.name: len(
            {r["fire_time"] for r in ours if r["member"] == m.name and r["id"] in on_server}
        )
        for m in members
    }
    statuses = {m.name: m.json("dataset", "status", "shared") for m in members}
    unpushed = {n: (s["ahead"], s["unpushed_runs"]) for n, s in statuses.items()}
    rejected = {n: text.count("push attempt") for n, text in logs.items()}
    retried_ok = {n: text.count("pushed at attempt") for n, text in logs.items()}
    not_marked = [r["id"] for r in succeeded if r["pushed"] is not True]

    stamp = planted.replace("-", "").replace(":", "")
    spikes: list[dict[str, Any]] = h1.json("spikes", "--tool", TOOL)
    at_planted = sorted(str(s["member"]) for s in spikes if s["sortable"] == stamp)
    ran_planted = sorted(r["member"] for r in succeeded if r["fire_time"] == planted)
    only_h2 = h1.json("spikes", "--tool", TOOL, "--member", "host2")

    # Peer validation of the planted firing, which every member ran.
    audited = h1.json("audit", TOOL, "--firing", planted)
    shown = h1.maomao("audit", TOOL, "--firing", planted)
    audit_text = shown.stdout + shown.stderr

    figure(
        f"\ncollaboration, 3 members for {RUN_FOR:.0f} s, every 3 s --everywhere, push on: "
        f"runs {dict(outcomes)}, succeeded by member {dict(sorted(by_member.items()))}; "
        f"server: {commits} commits ({merges} merges), run trailers {len(on_server)}, "
        f"succeeded runs missing on the server {len(missing)}; "
        f"rejected pushes by member {rejected}, pushed after a retry {retried_ok}; "
        f"unpushed (ahead, runs) {unpushed}; git fsck rc {fsck.returncode}/{fsck_bare.returncode}; "
        f"control files {files} vs firings run {firings}; "
        f"spike at {stamp}: records of {at_planted}, members that ran it {ran_planted}; "
        f"audit of {planted}: majority {audited['majority']}, odd ones out "
        f"{audited['odd_ones_out']}, divergences {[d['member'] for d in audited['divergences']]}"
    )
    # However busy the machine (the figures say how many ran), every member ran some.
    assert min(by_member.get(n, 0) for n in names) >= 3, (
        outcomes,
        {n: t[-2000:] for n, t in logs.items()},
    )
    assert missing == [], missing
    assert not_marked == []
    assert all(count == 1 for count in on_server.values())  # one commit per run
    assert unpushed == {n: (0, []) for n in names}
    assert fsck.returncode == 0, fsck.stderr
    assert fsck_bare.returncode == 0, fsck_bare.stderr
    assert files == firings
    assert ran_planted == sorted(names)
    assert at_planted == ran_planted  # one spike record per member at the same firing
    assert all(s["member"] == "host2" for s in only_h2)
    assert any(s["sortable"] == stamp for s in only_h2) == ("host2" in ran_planted)
    assert audited["majority"] == ["host1", "host2"] and audited["odd_ones_out"] == [ODD]
    assert [d["member"] for d in audited["divergences"]] == [ODD]
    assert audited["majority_control"] == 1000 and audited["members"][ODD]["control"] == 1100
    assert [p for p in audited["differing_files"] if p.startswith("control-")] != []
    assert "divergence: host3 wrote 1100, the majority 1000" in audit_text
