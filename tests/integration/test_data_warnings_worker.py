"""Collector health is data too (issue 19), through a real worker on real etcd and dockerd:
a tool that exits 0 having written a file but no control file gets `missing-control`, one
whose control file holds no number `bad-control`, one that writes nothing after its first
run `no-new-data` from its second run on; each is notified through the hook command once per run."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conftest import Env, make_env
from observe import stored
from servers import DockerDaemon, EtcdCluster

DATA = "/usr/src/app/data"
DEADLINE = 120.0
TOOLS = {
    "silent": f"date +%s%N > {DATA}/log.txt",  # changes a file, but no control file
    "garbled": f"echo 'no number' > {DATA}/control-2026-01-01.csv",
    # Its first run writes a control file; every later one leaves the folder as it was.
    "stale": f"[ -e {DATA}/control-2026-01-01.csv ] || echo 5 > {DATA}/control-2026-01-01.csv",
}


def runs_of(env: Env, tool: str) -> list[dict[str, Any]]:
    result = env.run("runs", "--json", "--limit", "100", "--tool", tool)
    assert result.code == 0, result.err
    records: list[dict[str, Any]] = json.loads(result.out)
    return [r for r in records if r["status"] == "succeeded"]


def enough(env: Env) -> bool:
    succeeded = Counter(r["tool"] for r in stored(env, "runs") if r["status"] == "succeeded")
    return all(succeeded[tool] >= 2 for tool in TOOLS)


@pytest.mark.docker
@pytest.mark.etcd
def test_each_data_warning_kind_is_recorded_and_notified_once_per_run(
    tmp_path: Path, etcd: EtcdCluster, prefix: str, docker: DockerDaemon, script_image: str
) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    # One file per notification: the hook reads its JSON payload from stdin.
    hook = f'cat > "$(mktemp {notes}/note-XXXXXX)"'
    (tmp_path / "config.toml").write_text(
        f'[data]\nimportdir = "{tmp_path / "data"}"\n[docker]\nnetwork = "none"\n'
        f"[spikes]\nhook_command = {json.dumps(hook)}\n"
    )
    env = make_env(tmp_path, etcd.endpoints, prefix, MAOMAO_DOCKER_HOST=docker.host)
    for tool, script in TOOLS.items():
        registered = env.run("register", tool, script_image, "--env", f"SCRIPT={script}")
        assert registered.code == 0, registered.err
        scheduled = env.run("run", tool, "--cron", "* * * * * *")
        assert scheduled.code == 0, scheduled.err

    worker = env.popen("worker")
    try:
        deadline = time.monotonic() + DEADLINE
        while not enough(env):
            assert worker.poll() is None, worker.communicate()[0]
            assert time.monotonic() < deadline, "the tools did not run twice each"
            time.sleep(0.3)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            output, _ = worker.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            output, _ = worker.communicate()
    assert worker.returncode == 0, output

    warnings = {tool: [r["data_warning"] for r in runs_of(env, tool)] for tool in TOOLS}
    assert set(warnings["silent"]) == {"missing-control"}, warnings
    assert set(warnings["garbled"]) == {"bad-control"}, warnings
    # Its first run brought the control file; the listing sorts newest first.
    assert warnings["stale"][-1] is None and set(warnings["stale"][:-1]) == {"no-new-data"}

    recorded = sorted(
        (tool, r["id"], r["data_warning"])
        for tool in TOOLS
        for r in runs_of(env, tool)
        if r["data_warning"] is not None
    )
    notified = sorted((p["tool"], p["run_id"], p["kind"]) for p in notifications(notes))
    assert notified == recorded  # every warned run notified, and exactly once


def notifications(folder: Path) -> list[dict[str, Any]]:
    """The hook's payloads; a hook started just before the worker stopped may still be
    writing its file, so empty files are waited for (bounded)."""
    deadline = time.monotonic() + 10
    while any(not note.read_text() for note in folder.iterdir()):
        assert time.monotonic() < deadline, "a hook never finished writing"
        time.sleep(0.1)
    return [json.loads(note.read_text()) for note in folder.iterdir()]
