"""Control files are read on the host without following what a container made (issue 15):
a tool that leaves `control-x.csv -> /root-sentinel` (a 0600 host file holding a number)
and a fifo where a control file should be, run by a real worker on a real dockerd. The
sentinel's value is never published as a spike, the run is not stuck, the link and the
fifo are named in one warning line each, the run carries the data warning `bad-control`,
and the worker stops on the first SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Env, make_env
from servers import DockerDaemon, EtcdCluster

DATA = "/usr/src/app/data"
SECRET = "900"  # after 630 and 600 the 2019 rule would call it a spike: +46 %
DEADLINE = 120.0


def runs_of(env: Env, tool: str) -> list[dict[str, Any]]:
    result = env.run("runs", "--json", "--limit", "100", "--tool", tool)
    assert result.code == 0, result.err
    records: list[dict[str, Any]] = json.loads(result.out)
    return records


@pytest.mark.docker
@pytest.mark.etcd
def test_a_link_to_a_host_secret_and_a_fifo_are_skipped_by_a_real_worker(
    tmp_path: Path, etcd: EtcdCluster, prefix: str, docker: DockerDaemon, script_image: str
) -> None:
    sentinel = tmp_path / "root-sentinel"
    sentinel.write_text(f"{SECRET}\n")
    sentinel.chmod(0o600)
    (tmp_path / "config.toml").write_text(
        f'[data]\nimportdir = "{tmp_path / "data"}"\n[docker]\nnetwork = "none"\n'
    )
    env = make_env(tmp_path, etcd.endpoints, prefix, MAOMAO_DOCKER_HOST=docker.host)
    script = (
        f"cd {DATA} && echo 630 > control-2026-01-01.csv && echo 600 > control-2026-01-02.csv"
        f" && ln -sf {sentinel} control-2026-01-03.csv && rm -f control-2026-01-04.csv"
        " && mkfifo control-2026-01-04.csv"
    )
    registered = env.run("register", "linker", script_image, "--env", f"SCRIPT={script}")
    assert registered.code == 0, registered.err
    scheduled = env.run("run", "linker", "--cron", "* * * * * *")
    assert scheduled.code == 0, scheduled.err

    worker = env.popen("worker")
    try:
        deadline = time.monotonic() + DEADLINE
        while not any(r["status"] == "succeeded" for r in runs_of(env, "linker")):
            assert worker.poll() is None, worker.communicate()[0]
            assert time.monotonic() < deadline, "no run finished"
            time.sleep(0.3)
    finally:
        began = time.monotonic()
        worker.send_signal(signal.SIGTERM)  # once: the worker must stop on it
        try:
            output, _ = worker.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            output, _ = worker.communicate()
            pytest.fail(f"the worker did not stop on the first SIGTERM:\n{output}")
    assert worker.returncode == 0, output
    assert time.monotonic() - began < 60

    done = [r for r in runs_of(env, "linker") if r["status"] == "succeeded"]
    assert done[-1]["data_warning"] == "bad-control", done[-1]
    assert "control-2026-01-03.csv" in output and "symbolic link" in output
    assert "control-2026-01-04.csv" in output and "not a regular file" in output
    found = env.run("spikes", "--tool", "linker", "--json")
    assert found.code == 0, found.err
    spikes = json.loads(found.out)
    assert all(s["value"] != float(SECRET) for s in spikes), spikes
    assert SECRET not in found.out
    assert sentinel.read_text() == f"{SECRET}\n"  # nor written through the link
