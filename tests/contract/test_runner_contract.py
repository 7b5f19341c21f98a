"""One contract for the container-runner port (`ports.ContainerRunner`), run against the
scripted runner and against DockerRunner on the tests' private dockerd: what RunService
and the worker rely on. The dummy tool (examples/dummy-tool) does on Docker what the
scripted runner is told to do: print two lines, write a control file, exit with
EXIT_CODE, or sleep (SLEEP) until it is stopped."""

from __future__ import annotations

import gc
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from conftest import DUMMY_IMAGE
from maomao_cli.adapters.containers import ScriptedRunner
from maomao_cli.config import DockerSettings
from maomao_cli.errors import ContainerError, Unavailable
from maomao_cli.ports import ContainerResult, ContainerRunner, ContainerSpec
from servers import DockerDaemon

MISSING_IMAGE = "127.0.0.1:1/nosuch/image:1"  # port 1 on loopback: refused at once


@dataclass(frozen=True)
class Behaviour:
    """What the tool does: exit with `exit_code`, or run until it is stopped."""

    exit_code: int = 0
    sleeps: bool = False

    @property
    def env(self) -> dict[str, str]:
        env = {"EXIT_CODE": str(self.exit_code)}
        if self.sleeps:
            env["SLEEP"] = "300"
        return env


class Rig(Protocol):
    image: str

    def runner(self, behaviour: Behaviour) -> ContainerRunner: ...

    def leave_container(self, runner: ContainerRunner, labels: dict[str, str]) -> None:
        """A container with these labels that an earlier process left behind."""
        ...


class ScriptedRig:
    image = "maomao/dummy-tool:scripted"

    def runner(self, behaviour: Behaviour) -> ContainerRunner:
        failed = ContainerResult(behaviour.exit_code, "failed", None, [], "exited with code 3")
        return ScriptedRunner(
            [failed] if behaviour.exit_code else [],
            output=["dummy-tool: run 1 starting", "dummy-tool: wrote control-1.csv = 100"],
            files={"control-1.csv": "100\n"},
            block=behaviour.sleeps,
        )

    def leave_container(self, runner: ContainerRunner, labels: dict[str, str]) -> None:
        assert isinstance(runner, ScriptedRunner)
        runner.leftovers.append(dict(labels))


@dataclass
class DockerRig:
    daemon: DockerDaemon
    image: str = DUMMY_IMAGE
    made: list[Any] = field(default_factory=list)

    def runner(self, behaviour: Behaviour) -> ContainerRunner:
        from maomao_cli.adapters.docker_runner import DockerRunner

        runner = DockerRunner(DockerSettings(host=self.daemon.host, network="none"))
        self.made.append(runner)
        return runner

    def leave_container(self, runner: ContainerRunner, labels: dict[str, str]) -> None:
        client = api(self.daemon)
        try:
            client.create_container(self.image, labels=labels, command=["true"])
        finally:
            client.close()

    def close(self) -> None:
        for runner in self.made:
            runner.close()


def api(daemon: DockerDaemon) -> Any:
    import docker as docker_py

    return docker_py.APIClient(base_url=daemon.host, timeout=30)


@pytest.fixture(
    params=[
        "scripted",
        pytest.param("docker", marks=pytest.mark.docker),
        # The runner's calls through docker-py, as for an engine on tcp://, TLS or ssh://.
        pytest.param("docker-py", marks=pytest.mark.docker),
    ]
)
def rig(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    if request.param == "scripted":
        yield ScriptedRig()
        return
    if request.param == "docker-py":
        monkeypatch.setattr("maomao_cli.adapters.docker_runner.speaks", lambda host, env: False)
    docker_rig = DockerRig(request.getfixturevalue("docker"))
    yield docker_rig
    docker_rig.close()


def spec_for(
    rig: Rig, data_dir: Path, behaviour: Behaviour, *, timeout: float = 60.0
) -> ContainerSpec:
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o777)  # the tool may run as another user inside the container
    run = uuid.uuid4().hex[:12]
    return ContainerSpec(
        image=rig.image,
        name=f"maomao-contract-{run}",
        env=behaviour.env,
        data_dir=data_dir,
        labels={"maomao.tool": "contract", "maomao.run": run, "maomao.member": "contract"},
        network="none",
        memory="64m",
        pids=32,
        timeout=timeout,
    )


class Lines:
    """Collects on_output's lines (from the runner's thread) and says when one arrived."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.first = threading.Event()

    def __call__(self, line: str) -> None:
        self.seen.append(line)
        self.first.set()


def run_in_thread(
    runner: ContainerRunner, spec: ContainerSpec, **options: Any
) -> tuple[threading.Thread, list[ContainerResult]]:
    results: list[ContainerResult] = []
    thread = threading.Thread(target=lambda: results.append(runner.run(spec, **options)))
    thread.start()
    return thread, results


def test_success_streams_output_writes_data_and_leaves_no_container(
    rig: Rig, tmp_path: Path
) -> None:
    runner = rig.runner(Behaviour())
    lines = Lines()
    digest = runner.ensure_image(rig.image)
    spec = spec_for(rig, tmp_path / "data", Behaviour())

    result = runner.run(spec, on_output=lines)

    assert digest.startswith("sha256:")
    assert (result.exit_code, result.status, result.error) == (0, "succeeded", None)
    assert lines.seen[0] == "dummy-tool: run 1 starting"
    assert any(line.startswith("dummy-tool: wrote control-") for line in lines.seen)
    assert result.log_tail == lines.seen
    [control] = (tmp_path / "data").glob("control-*.csv")
    assert 95 <= float(control.read_text()) <= 105
    assert runner.remove_containers(spec.labels) == 0  # the run removed its container


def test_on_raw_gets_each_line_as_bytes_before_its_text(rig: Rig, tmp_path: Path) -> None:
    """The full log (services/fulllogs.py) keeps the bytes; the display gets the text."""
    runner = rig.runner(Behaviour())
    runner.ensure_image(rig.image)
    spec = spec_for(rig, tmp_path / "data", Behaviour())
    events: list[tuple[str, object]] = []

    runner.run(
        spec,
        on_output=lambda line: events.append(("text", line)),
        on_raw=lambda raw: events.append(("raw", raw)),
    )

    raws = [value for kind, value in events if kind == "raw"]
    texts = [value for kind, value in events if kind == "text"]
    assert raws[0] == b"dummy-tool: run 1 starting"
    assert [bytes(r).decode() for r in raws if isinstance(r, bytes)] == texts
    assert events[0] == ("raw", raws[0]) and events[1] == ("text", texts[0])


def test_on_starting_is_called_once_before_the_container_says_anything(
    rig: Rig, tmp_path: Path
) -> None:
    runner = rig.runner(Behaviour())
    runner.ensure_image(rig.image)
    events: list[str] = []

    runner.run(
        spec_for(rig, tmp_path / "data", Behaviour()),
        on_output=lambda line: events.append("line"),
        on_starting=lambda: events.append("starting"),
    )

    assert events[0] == "starting" and events.count("starting") == 1
    assert "line" in events


def test_a_non_zero_exit_is_failed_with_its_code(rig: Rig, tmp_path: Path) -> None:
    behaviour = Behaviour(exit_code=3)
    runner = rig.runner(behaviour)
    runner.ensure_image(rig.image)

    result = runner.run(spec_for(rig, tmp_path / "data", behaviour))

    assert (result.exit_code, result.status) == (3, "failed")
    assert result.error == "exited with code 3"


def test_past_its_timeout_a_run_is_stopped_as_timed_out(rig: Rig, tmp_path: Path) -> None:
    behaviour = Behaviour(sleeps=True)
    runner = rig.runner(behaviour)
    runner.ensure_image(rig.image)
    spec = spec_for(rig, tmp_path / "data", behaviour, timeout=1.0)

    result = runner.run(spec)

    assert result.status == "timed-out"
    assert result.error is not None and "timeout" in result.error
    assert runner.remove_containers(spec.labels) == 0


def test_cancel_stops_a_run_as_interrupted(rig: Rig, tmp_path: Path) -> None:
    behaviour = Behaviour(sleeps=True)
    runner = rig.runner(behaviour)
    runner.ensure_image(rig.image)
    spec = spec_for(rig, tmp_path / "data", behaviour)
    cancel = threading.Event()
    lines = Lines()

    thread, results = run_in_thread(runner, spec, on_output=lines, cancel=cancel)
    assert lines.first.wait(60), "the tool never started"
    cancel.set()
    thread.join(60)

    [result] = results
    assert (result.status, result.error) == ("interrupted", "interrupted")
    assert "dummy-tool: run 1 starting" in result.log_tail
    assert runner.remove_containers(spec.labels) == 0


def test_remove_containers_takes_those_with_every_label(rig: Rig) -> None:
    runner = rig.runner(Behaviour())
    member = f"gone-{uuid.uuid4().hex[:8]}"
    rig.leave_container(runner, {"maomao.member": member, "maomao.tool": "a"})
    rig.leave_container(runner, {"maomao.member": member, "maomao.tool": "b"})
    rig.leave_container(runner, {"maomao.member": "someone-else", "maomao.tool": "a"})

    assert runner.remove_containers({"maomao.member": member, "maomao.tool": "a"}) == 1
    assert runner.remove_containers({"maomao.member": member}) == 1
    assert runner.remove_containers({"maomao.member": member}) == 0
    assert runner.remove_containers({"maomao.member": "someone-else"}) == 1


def test_a_missing_image_is_one_container_error(rig: Rig) -> None:
    runner = rig.runner(Behaviour())
    if isinstance(runner, ScriptedRunner):
        runner.image_error = f"cannot pull image {MISSING_IMAGE}: connection refused"

    with pytest.raises(ContainerError) as info:
        runner.ensure_image(MISSING_IMAGE)

    assert info.value.message.startswith(f"cannot pull image {MISSING_IMAGE}")
    assert "\n" not in info.value.message


def test_ping_answers(rig: Rig) -> None:
    rig.runner(Behaviour()).ping()  # raises Unavailable when the engine is down


# DockerRunner alone: how it locks a container down, and an engine that is not there. ------


@pytest.mark.docker
def test_a_running_container_is_locked_down(docker: DockerDaemon, tmp_path: Path) -> None:
    docker_rig = DockerRig(docker)
    behaviour = Behaviour(sleeps=True)
    runner = docker_rig.runner(behaviour)
    runner.ensure_image(docker_rig.image)
    spec = spec_for(docker_rig, tmp_path / "data", behaviour)
    spec = ContainerSpec(**{**spec.__dict__, "user": "1000:1000"})
    cancel, lines = threading.Event(), Lines()
    thread, _ = run_in_thread(runner, spec, on_output=lines, cancel=cancel)
    try:
        assert lines.first.wait(60), "the tool never started"
        client = api(docker)
        [found] = client.containers(filters={"label": f"maomao.run={spec.labels['maomao.run']}"})
        info = client.inspect_container(found["Id"])
        client.close()
    finally:
        cancel.set()
        thread.join(60)
        docker_rig.close()

    host = info["HostConfig"]
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"]
    assert any(opt.startswith("no-new-privileges") for opt in host["SecurityOpt"])
    assert host["Memory"] == 64 * 1024**2
    assert host["PidsLimit"] == 32
    assert host["NetworkMode"] == "none"
    [mount] = info["Mounts"]
    assert mount["Type"] == "bind"
    assert mount["Source"] == str(spec.data_dir)
    assert mount["Destination"] == "/usr/src/app/data"
    assert mount["RW"] is True
    assert info["Config"]["Labels"] == spec.labels
    assert info["Config"]["User"] == "1000:1000"


# docker-py leaves the socket of a failed connection to a missing unix socket unclosed.
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
@pytest.mark.parametrize(
    "call",
    [
        lambda runner: runner.ping(),
        lambda runner: runner.ensure_image(DUMMY_IMAGE),
        lambda runner: runner.remove_containers({"maomao.member": "x"}),
    ],
    ids=["ping", "ensure_image", "remove_containers"],
)
@pytest.mark.parametrize("client", ["engine_api", "docker-py"])
def test_an_engine_that_is_not_there_is_one_unavailable(
    tmp_path: Path,
    call: Callable[[ContainerRunner], object],
    client: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from maomao_cli.adapters.docker_runner import DockerRunner

    if client == "docker-py":
        monkeypatch.setattr("maomao_cli.adapters.docker_runner.speaks", lambda host, env: False)
    runner = DockerRunner(DockerSettings(host=f"unix://{tmp_path}/no-such-docker.sock"))
    try:
        with pytest.raises(Unavailable) as info:
            call(runner)
        message, hint = info.value.message, info.value.hint
        del info  # the error's context's traceback holds that socket
    finally:
        runner.close()
        gc.collect()  # collected here, under the filter above
    assert (
        message == f"cannot reach Docker at unix://{tmp_path}/no-such-docker.sock: no such socket"
    )
    assert hint is not None
