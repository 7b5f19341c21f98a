"""The real `maomao` commands in-process: Typer's CliRunner on a memory store and a
scripted runner, stdout and stderr kept apart.

    def test_x(cli: Cli) -> None:
        result = cli.invoke("tools", "--json")
        assert (result.code, result.json(), result.err) == (0, [], "")

Each invocation gets a fresh `Services` (as each `maomao` process does) over the same
injected store and runner, so what one command writes the next one reads. The settings
come from a config file and environment built the way the subprocess `Env` of
tests/conftest.py builds them, through `config.load`. The etcd endpoint is a closed
port: nothing here ever reaches a real etcd.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from maomao_cli import config
from maomao_cli.adapters.containers import ScriptedRunner
from maomao_cli.cli.app import app
from maomao_cli.composition import Services
from maomao_cli.config import Settings
from maomao_cli.keys import Keys
from maomao_cli.ports import ContainerRunner
from maomao_cli.store.base import Store
from maomao_cli.store.memory import MemoryStore
from servers import free_port

PREFIX = "/maomao-cli-test"
MEMBER = "member-a"
DEFAULT_CONFIG = '[data]\nimportdir = "{importdir}"\n[docker]\nnetwork = "none"\n'


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.strip().splitlines()

    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    """One test's maomao: its config file, importdir, memory store and scripted runner."""

    def __init__(
        self,
        root: Path,
        *,
        store: MemoryStore | None = None,
        runner: ContainerRunner | None = None,
        config_text: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.importdir = root / "data"
        self.config_file = root / "config.toml"
        text = config_text if config_text is not None else DEFAULT_CONFIG
        self.config_file.write_text(text.format(importdir=self.importdir))
        self.closed_endpoint = f"127.0.0.1:{free_port()}"
        self.env = {
            "MAOMAO_CONFIG": str(self.config_file),
            "MAOMAO_ETCD_ENDPOINTS": self.closed_endpoint,
            "MAOMAO_ETCD_PREFIX": PREFIX,
            "MAOMAO_MEMBER": MEMBER,
            **(env or {}),
        }
        self.store = store if store is not None else MemoryStore()
        self.runner = runner if runner is not None else ScriptedRunner()

    @property
    def settings(self) -> Settings:
        return config.load(env=self.env)

    @property
    def keys(self) -> Keys:
        return Keys(self.settings.etcd.prefix)

    def services(
        self,
        *,
        store: Store | None = None,
        runner: ContainerRunner | None = None,
        settings: Settings | Callable[[], Settings] | None = None,
    ) -> Services:
        return Services(
            settings if settings is not None else self.settings,
            store=store if store is not None else self.store,
            runner=runner if runner is not None else self.runner,
        )

    def invoke(
        self, *args: str, services: Services | None = None, input: str | None = None
    ) -> Outcome:
        """Run `maomao ARGS` on this test's services (or the given ones)."""
        return self._invoke(list(args), services or self.services(), input)

    def invoke_unwired(self, *args: str) -> Outcome:
        """Run `maomao ARGS` with nothing injected: the root callback builds the services
        from the options and the environment, as the real program does (for `config`,
        and for failures before any connection)."""
        return self._invoke(list(args), None, None)

    def _invoke(self, args: list[str], services: Services | None, input: str | None) -> Outcome:
        # CliRunner.invoke would rebuild the Click group from the Typer app on every call
        # (a quarter of a second); the group is built once and run in the same isolation.
        with _fresh_maomao_logger(), CliRunner().isolation(input=input, env=self.env) as streams:
            try:
                returned = _command().main(args=args, prog_name="maomao", obj=services)
                code = returned if isinstance(returned, int) else 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            out, err = streams[0].getvalue(), streams[1].getvalue()
        return Outcome(code, out.decode(), err.decode())

    def records(self, under: str = "") -> list[str]:
        """The keys under the prefix (or under `under` inside it)."""
        return [entry.key for entry in self.store.scan(f"{PREFIX}/{under}")]


@functools.cache
def _command() -> TyperGroup:
    """The `maomao` Click group, as `maomao` builds it at start-up (Boundary at its root)."""
    command = typer.main.get_command(app)
    assert isinstance(command, TyperGroup)
    return command


class FailingStore:
    """A store whose every operation raises: an unreachable etcd, or a bug in an adapter."""

    endpoint = "127.0.0.1:1"

    def __init__(self, error: Callable[[], BaseException]) -> None:
        self._error = error

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def fail(*args: object, **kwargs: object) -> Any:
            raise self._error()

        return fail

    def close(self) -> None:
        return None

    def as_store(self) -> Store:
        return cast(Store, self)


@contextlib.contextmanager
def _fresh_maomao_logger() -> Iterator[None]:
    """The CLI gives the "maomao" logger a handler on the stderr of its first call; in
    one process that would be an earlier test's captured stream. Each invocation gets
    its own, and the logger is put back as it was."""
    logger = logging.getLogger("maomao")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    logger.handlers.clear()
    try:
        yield
    finally:
        for handler in logger.handlers:
            handler.close()
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]


ISOLATED = ("MAOMAO_", "DOCKER_", "XDG_", "FORCE_COLOR", "NO_COLOR", "TTY_")


def isolate_environment(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """No MAOMAO_*, DOCKER_*, XDG_* or colour settings of the machine reach a command; a
    fixed width keeps Rich tables from folding."""
    for name in list(os.environ):
        if name.startswith(ISOLATED):
            monkeypatch.delenv(name)
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")


class MakeCli(Protocol):
    def __call__(
        self,
        *,
        store: MemoryStore | None = None,
        runner: ContainerRunner | None = None,
        config_text: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Cli: ...


@pytest.fixture
def make_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MakeCli:
    """A `Cli` with other settings: `make_cli(config_text=..., env={...}, runner=...)`;
    `config_text` may name the importdir as {importdir}."""
    isolate_environment(monkeypatch, tmp_path / "home")
    made = 0

    def make(
        *,
        store: MemoryStore | None = None,
        runner: ContainerRunner | None = None,
        config_text: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Cli:
        nonlocal made
        made += 1
        root = tmp_path / f"cli{made}"
        root.mkdir()
        return Cli(root, store=store, runner=runner, config_text=config_text, env=env)

    return make


@pytest.fixture
def cli(make_cli: MakeCli) -> Cli:
    return make_cli()
