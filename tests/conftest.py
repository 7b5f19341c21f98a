"""Shared fixtures: one real etcd per session, an isolated key prefix per test, the
subprocess `Env` for end-to-end tests and the in-process `cli` (tests/cli_harness.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli_harness import cli, make_cli
from servers import DockerDaemon, EtcdCluster

__all__ = ["cli", "make_cli"]  # the in-process CLI fixtures, for every test folder
# Loaded by the xdist controller too, which reads no other conftest: the scheduler that
# keeps some modules on one worker, and the fault suite's summary table.
pytest_plugins = ["xdist_groups", "faults.summary"]

ROOT = Path(__file__).resolve().parent.parent

# A test that uses one of these session fixtures (directly or through another fixture)
# starts that server: it carries the marker, so `-m "not etcd and not docker"` starts none.
SERVER_FIXTURES = ("etcd", "docker")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        used = getattr(item, "fixturenames", ())
        for server in SERVER_FIXTURES:
            if server in used and item.get_closest_marker(server) is None:
                item.add_marker(server)


_current: list[pytest.Item] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _current[:] = [item]


def _require_marker(server: str) -> None:
    """A test reaching a server fixture dynamically (`request.getfixturevalue`) is not
    marked by the hook above: it must carry the marker itself, else fail loudly."""
    if _current and _current[0].get_closest_marker(server) is None:
        pytest.fail(
            f"{_current[0].nodeid} starts {server} without the {server} marker: add "
            f'pytest.mark.{server} (for a parameter: pytest.param("{server}", marks=...))',
            pytrace=False,
        )


@pytest.fixture(scope="session")
def etcd() -> Iterator[EtcdCluster]:
    _require_marker("etcd")
    cluster = EtcdCluster(1).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def prefix() -> str:
    return f"/maomao-test/{uuid.uuid4().hex[:12]}"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


@dataclass
class Env:
    """A maomao configuration for one test: its own prefix, importdir and config file."""

    vars: dict[str, str]
    home: Path

    def run(self, *args: str, timeout: float = 60, input: str | None = None) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "maomao_cli", *args],
            capture_output=True,
            text=True,
            env=self.vars,
            timeout=timeout,
            input=input,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "maomao_cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.vars,
        )


def make_env(tmp_path: Path, endpoints: str, prefix: str, **extra: str) -> Env:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    config = tmp_path / "config.toml"
    if not config.exists():
        config.write_text(
            f'[data]\nimportdir = "{tmp_path / "data"}"\n[docker]\nnetwork = "none"\n'
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAOMAO_", "DOCKER_", "XDG_"))}
    env.update(
        HOME=str(home),
        MAOMAO_CONFIG=str(config),
        MAOMAO_ETCD_ENDPOINTS=endpoints,
        MAOMAO_ETCD_PREFIX=prefix,
        MAOMAO_MEMBER="member-a",
        COLUMNS="200",
        PYTHONPATH=str(ROOT / "src"),
        **extra,
    )
    return Env(env, home)


@pytest.fixture
def env(tmp_path: Path, etcd: EtcdCluster, prefix: str) -> Env:
    return make_env(tmp_path, etcd.endpoints, prefix)


DUMMY_IMAGE = "maomao/dummy-tool:test"


@pytest.fixture(scope="session")
def docker() -> Iterator[DockerDaemon]:
    """A private dockerd with the example tool built into it as DUMMY_IMAGE; everything it
    holds (containers, images) goes with its data root at the end."""
    _require_marker("docker")
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "maomao_dummy_build", ROOT / "examples" / "dummy-tool" / "build.py"
    )
    assert spec is not None and spec.loader is not None
    dummy_build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dummy_build)

    daemon = DockerDaemon().start()
    try:
        dummy_build.build(DUMMY_IMAGE, host=daemon.host, quiet=True)
        yield daemon
    finally:
        import docker as docker_py

        client = docker_py.APIClient(base_url=daemon.host, timeout=30)
        for container in client.containers(all=True):
            client.remove_container(container["Id"], force=True)
        # An image built FROM another must go first: a parent with children refuses (409).
        for _ in range(5):
            images = client.images()
            for image in images:
                with contextlib.suppress(docker_py.errors.APIError):
                    client.remove_image(image["Id"], force=True)
            if not images:
                break
        client.close()
        daemon.stop()


@pytest.fixture
def docker_env(tmp_path: Path, etcd: EtcdCluster, prefix: str, docker: DockerDaemon) -> Env:
    """Like `env`, with MAOMAO_DOCKER_HOST pointing at the private dockerd."""
    return make_env(tmp_path, etcd.endpoints, prefix, MAOMAO_DOCKER_HOST=docker.host)


SCRIPT_IMAGE = "maomao/script-tool:test"


@pytest.fixture(scope="session")
def script_image(docker: DockerDaemon) -> str:
    """The dummy tool's busybox running the shell script in $SCRIPT: a tool a test writes
    in one line (`register NAME IMAGE --env SCRIPT=...`). Removed with the daemon."""
    import io

    import docker as docker_py

    client = docker_py.APIClient(base_url=docker.host, timeout=120)
    dockerfile = f'FROM {DUMMY_IMAGE}\nENTRYPOINT ["/bin/sh", "-c", "eval \\"$SCRIPT\\""]\n'
    try:
        for event in client.build(
            fileobj=io.BytesIO(dockerfile.encode()),
            tag=SCRIPT_IMAGE,
            rm=True,
            pull=False,
            network_mode="none",
            decode=True,
        ):
            assert "error" not in event, event
    finally:
        client.close()
    return SCRIPT_IMAGE
