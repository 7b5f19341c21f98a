"""The API in-process: `create_app` on a memory store, a scripted runner and a fake git,
behind the same guards as `maomao serve`, driven by FastAPI's TestClient."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning
from typer.testing import CliRunner

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its test client; httpx (a test extra) still works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from fakes.git import FakeGit
from maomao_cli.adapters.containers import ScriptedRunner
from maomao_cli.api.app import create_app
from maomao_cli.api.guard import allowed_hosts, guard
from maomao_cli.cli.app import app as cli_app
from maomao_cli.composition import Services
from maomao_cli.config import DataSettings, DockerSettings, EtcdSettings, Settings, WorkerSettings
from maomao_cli.keys import Keys
from maomao_cli.store.memory import MemoryStore

PREFIX = "/maomao-api"
TOKEN = "token-of-the-api-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# What DockerRunner says when no engine answers: a run-now then fails at the pull.
NO_ENGINE = "cannot reach the Docker engine at unix:///nonexistent/docker.sock"


def make_services(
    tmp_path: Path,
    store: MemoryStore,
    runner: ScriptedRunner,
    prefix: str = PREFIX,
    git: FakeGit | None = None,
) -> Services:
    settings = Settings(
        etcd=EtcdSettings(prefix=prefix),
        data=DataSettings(importdir=str(tmp_path / "data")),
        docker=DockerSettings(network="none"),
        worker=WorkerSettings(member="member-a", shutdown_grace=5.0),
    )
    return Services(settings, store=store, runner=runner, git=git or FakeGit())


@dataclass
class Api:
    services: Services
    store: MemoryStore
    runner: ScriptedRunner
    git: FakeGit
    client: TestClient

    @property
    def keys(self) -> Keys:
        return self.services.keys


def guarded(services: Services, token: str = TOKEN, extra_hosts: tuple[str, ...] = ()) -> Any:
    """The app as `maomao serve` wraps it on 127.0.0.1: Host, token, body limit."""
    settings = services.settings.serve
    return guard(
        create_app(services),
        max_body=settings.max_body,
        token=token,
        hosts=allowed_hosts(settings.host, (*settings.allowed_hosts, *extra_hosts)),
    )


def open_client(
    services: Services, token: str | None = None, *, raise_server_exceptions: bool = True
) -> TestClient:
    """A client of the app as `maomao serve` wraps it. Without `token` the client sends
    the tests' token on every request; with one, it sends none by itself."""
    return TestClient(
        guarded(services, token or TOKEN),
        base_url="http://localhost",
        headers=None if token else AUTH,
        raise_server_exceptions=raise_server_exceptions,
    )


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def runner() -> ScriptedRunner:
    return ScriptedRunner(image_error=NO_ENGINE)


@pytest.fixture
def api(tmp_path: Path, store: MemoryStore, runner: ScriptedRunner) -> Iterator[Api]:
    git = FakeGit()
    services = make_services(tmp_path, store, runner, git=git)
    with open_client(services) as client:  # runs the lifespan: runs stop at the end
        yield Api(services, store, runner, git, client)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


Cli = Callable[[list[str], Services], CliResult]


@pytest.fixture
def cli() -> Cli:
    """Runs a maomao command in-process on the given services: (args, services) -> result."""

    def invoke(args: list[str], services: Services) -> CliResult:
        # The CLI's callback points the "maomao" logger at the runner's captured stderr,
        # which closes when the command ends: put the logger back as it was.
        logger = logging.getLogger("maomao")
        handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
        try:
            result = CliRunner().invoke(cli_app, args, obj=services)
        finally:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return invoke
