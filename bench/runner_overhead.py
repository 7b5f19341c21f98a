#!/usr/bin/env python3
"""maomao's runner against `docker run --rm`, on a private dockerd and a real etcd.

Runs a trivial image (static busybox running `true`) N times through RunService in one
process, as the worker does (run records written to etcd, retention included), and N
times with the docker CLI (`docker -H <private daemon> run --rm` with the same limits
and bind mount), interleaved so both see the same machine state. Prints the ratio of
medians (goal: at most 1.1), then `maomao run` end to end (command start to exit)
against `docker run --rm` again, interleaved (goal: at most 1.5).

    .venv/bin/python bench/runner_overhead.py [--runs 20] [--src DIR (another tree's src/)]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from servers import DockerDaemon, EtcdCluster  # noqa: E402

IMAGE = "maomao/bench-true:latest"


def build_trivial_image(host: str) -> None:
    import docker

    client = docker.APIClient(base_url=host, timeout=120)
    with tempfile.TemporaryDirectory(prefix="maomao-bench-") as ctx:
        shutil.copy2("/bin/busybox", Path(ctx) / "busybox")
        (Path(ctx) / "Dockerfile").write_text(
            'FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT ["/bin/busybox", "true"]\n'
        )
        for event in client.build(path=ctx, tag=IMAGE, rm=True, network_mode="none", decode=True):
            if "error" in event:
                raise SystemExit(event["error"])
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--src", type=Path, default=ROOT / "src", help="the maomao sources `maomao run` runs"
    )
    args = parser.parse_args()
    if shutil.which("docker") is None:
        raise SystemExit("the docker CLI is needed for the comparison: apt-get install docker.io")

    from maomao_cli.adapters.docker_runner import DockerRunner
    from maomao_cli.config import DataSettings, DockerSettings, EtcdSettings, Settings
    from maomao_cli.keys import Keys
    from maomao_cli.models import Tool
    from maomao_cli.services.runs import RunService
    from maomao_cli.store.etcd import EtcdStore

    etcd = EtcdCluster(1).start()
    daemon = DockerDaemon().start()
    work = Path(tempfile.mkdtemp(prefix="maomao-bench-data-"))
    prefix = "/maomao-bench"
    try:
        build_trivial_image(daemon.host)
        settings = Settings(
            etcd=EtcdSettings(endpoints=(etcd.endpoints,), prefix=prefix),
            data=DataSettings(importdir=str(work / "data")),
            docker=DockerSettings(host=daemon.host, network="none"),
        )
        store = EtcdStore(settings.etcd)
        runner = DockerRunner(settings.docker)
        service = RunService(store, Keys(prefix), settings, runner, "bench")
        tool = Tool(name="true", image=IMAGE)
        docker_dir = work / "docker-run"
        docker_dir.mkdir(parents=True)
        docker_cmd = [
            "docker", "-H", daemon.host, "run", "--rm", "--network", "none",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--memory", "512m", "--pids-limit", "256",
            "-v", f"{docker_dir}:/usr/src/app/data", IMAGE,
        ]  # fmt: skip
        # Warm both paths once (image metadata, page cache, client set-up).
        service.execute(tool)
        subprocess.run(docker_cmd, check=True, capture_output=True)

        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(args.runs):
            start = time.perf_counter()
            run = service.execute(tool)
            ours.append(time.perf_counter() - start)
            assert run.status == "succeeded", run
            start = time.perf_counter()
            subprocess.run(docker_cmd, check=True, capture_output=True)
            theirs.append(time.perf_counter() - start)

        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MAOMAO_", "DOCKER_"))},
            "MAOMAO_ETCD_ENDPOINTS": etcd.endpoints,
            "MAOMAO_ETCD_PREFIX": prefix,
            "MAOMAO_DOCKER_HOST": daemon.host,
            "MAOMAO_IMPORTDIR": str(work / "data"),
            "MAOMAO_CONFIG": str(work / "config.toml"),
            "MAOMAO_MEMBER": "bench",
            "PYTHONPATH": str(args.src.resolve()),  # this tree's maomao, whatever is installed
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # cached bytecode, as an installed copy
        (work / "config.toml").write_text('[docker]\nnetwork = "none"\n')
        subprocess.run(
            [sys.executable, "-m", "maomao_cli", "register", "true", IMAGE],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        end_to_end: list[float] = []
        docker_again: list[float] = []
        for _ in range(max(args.runs // 2, 5)):
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "maomao_cli", "run", "true"],
                env=env, check=True, capture_output=True,
            )  # fmt: skip
            end_to_end.append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run(docker_cmd, check=True, capture_output=True)
            docker_again.append(time.perf_counter() - start)
        kept = len(service.list("true"))
        store.close()
        runner.close()

        ours_median = statistics.median(ours)
        theirs_median = statistics.median(theirs)
        print(f"runs: {args.runs} each, interleaved; records kept for the tool: {kept}")
        print(
            f"maomao RunService.execute  median {ours_median * 1000:7.1f} ms "
            f"(min {min(ours) * 1000:.1f}, max {max(ours) * 1000:.1f})"
        )
        print(
            f"docker run --rm            median {theirs_median * 1000:7.1f} ms "
            f"(min {min(theirs) * 1000:.1f}, max {max(theirs) * 1000:.1f})"
        )
        print(
            f"ratio of medians (maomao / docker): {ours_median / theirs_median:.2f} (goal <= 1.1)"
        )
        e2e, cli = statistics.median(end_to_end), statistics.median(docker_again)
        print(
            f"`maomao run` end to end (command start to exit, {len(end_to_end)} runs, "
            f"interleaved with `docker run --rm`): median {e2e * 1000:.1f} ms "
            f"(min {min(end_to_end) * 1000:.1f}, max {max(end_to_end) * 1000:.1f}); "
            f"docker run --rm median {cli * 1000:.1f} ms"
        )
        print(f"ratio of medians (maomao run / docker run --rm): {e2e / cli:.2f} (goal <= 1.5)")
    finally:
        daemon.stop()
        etcd.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
