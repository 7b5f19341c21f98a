"""What a run hands its container and keeps from it: the run context in the environment,
the data directory made the container user's, insights.json; spikes kept per member."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from maomao_cli.adapters.containers import ScriptedRunner
from maomao_cli.config import DataSettings, DockerSettings, Settings, WorkerSettings
from maomao_cli.keys import Keys
from maomao_cli.models import Run, Spike, Tool
from maomao_cli.ports import ContainerResult
from maomao_cli.services import insights, ownership, runcontext
from maomao_cli.services.runs import RunService
from maomao_cli.services.spikes import SpikeService
from maomao_cli.store.memory import MemoryStore

KEYS = Keys("/t")
TOOL = Tool(name="dummy", image="img", env={"A": "1", "MAOMAO_MEMBER": "spoofed"})
FIRE = 1_800_000_003.0  # 2027-01-15T08:00:03Z


def service(tmp_path: Path, runner: ScriptedRunner, store: MemoryStore | None = None) -> RunService:
    settings = Settings(
        data=DataSettings(importdir=str(tmp_path / "data")),
        docker=DockerSettings(network="none"),
        worker=WorkerSettings(member="lab-a"),
    )
    return RunService(store or MemoryStore(), KEYS, settings, runner, "lab-a")


@pytest.mark.parametrize(
    ("trigger", "schedule", "fire_time", "attempt", "expected"),
    [
        ("schedule", "dummy-3s", FIRE, 1, ("dummy-3s", "2027-01-15T08:00:03Z", "schedule", "1")),
        ("retry", "dummy-3s", FIRE, 3, ("dummy-3s", "2027-01-15T08:00:03Z", "retry", "3")),
        ("catch-up", "d", FIRE + 60, 1, ("d", "2027-01-15T08:01:03Z", "catch-up", "1")),
    ],
)
def test_the_container_gets_the_run_context(
    tmp_path: Path,
    trigger: str,
    schedule: str,
    fire_time: float,
    attempt: int,
    expected: tuple[str, str, str, str],
) -> None:
    runner = ScriptedRunner()
    run = service(tmp_path, runner).execute(
        TOOL, trigger=trigger, schedule=schedule, fire_time=fire_time, attempt=attempt
    )
    [spec] = runner.specs
    env = spec.env
    assert env["A"] == "1"  # the tool's own
    assert env["MAOMAO_RUN_ID"] == run.id
    assert env["MAOMAO_MEMBER"] == "lab-a"  # never what the registration said
    assert env["MAOMAO_TOOL"] == "dummy"
    got = (env["MAOMAO_SCHEDULE"], env["MAOMAO_FIRE_TIME"], env["MAOMAO_TRIGGER"])
    assert (*got, env["MAOMAO_ATTEMPT"]) == expected
    assert run.fire_time == fire_time and run.member == "lab-a"


def test_a_manual_run_fires_when_it_starts_and_has_no_schedule() -> None:
    run = Run(id="x", tool="t", member="m", status="running", started=FIRE + 0.9)
    env = runcontext.environment(run)
    assert (env["MAOMAO_SCHEDULE"], env["MAOMAO_FIRE_TIME"], env["MAOMAO_TRIGGER"]) == (
        "",
        "2027-01-15T08:00:03Z",
        "manual",
    )


# Ownership -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("1000:1000", (1000, 1000)),
        ("1000", (1000, None)),
        ("nobody", None),
        (None, None),
        ("1000:staff", None),
    ],
)
def test_numeric_users(user: str | None, expected: tuple[int, int | None] | None) -> None:
    assert ownership.numeric_user(user) == expected


def test_as_root_the_data_directory_and_its_files_go_to_the_user(tmp_path: Path) -> None:
    data = tmp_path / "d"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "f.csv").write_text("1\n")
    os.symlink("/etc/passwd", data / "link")
    os.symlink(tmp_path, data / "dirlink")
    changed: list[tuple[object, int, int]] = []

    def chown(path: int | str, uid: int, gid: int, **kwargs: object) -> None:
        if isinstance(path, int):  # a folder, by its descriptor
            changed.append((os.readlink(f"/proc/self/fd/{path}"), uid, gid))
        else:
            assert kwargs == {"dir_fd": kwargs["dir_fd"], "follow_symlinks": False}
            changed.append((path, uid, gid))

    ownership.prepare(data, "1000:1001", is_root=True, chown=chown)
    assert sorted(map(str, (c[0] for c in changed))) == sorted(
        [str(data), str(data / "sub"), "f.csv", "link", "dirlink"]
    )  # the links themselves, never what they point to
    assert {(c[1], c[2]) for c in changed} == {(1000, 1001)}


def test_a_directory_the_user_cannot_write_fails_the_run_before_the_container(
    tmp_path: Path,
) -> None:
    runner = ScriptedRunner()
    runs = service(tmp_path, runner)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    runs.chown = refuse
    run = runs.execute(replace(TOOL, user="1000:1000"))
    assert run.status == "failed" and run.retryable is False
    assert runner.specs == []  # no container started
    error = run.error or ""
    assert "\n" not in error
    assert "is owned by" in error and "user 1000:1000" in error
    if os.geteuid() == 0:  # root tried to hand it over; anyone else only checked
        assert "Operation not permitted" in error


def test_not_root_a_foreign_directory_is_named_with_its_owner(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir(mode=0o755)
    st = data.stat()
    other = st.st_uid + 1
    with pytest.raises(ownership.NotWritable) as caught:
        ownership.prepare(data, f"{other}:{other}", is_root=False)
    assert f"owned by {st.st_uid}:{st.st_gid}" in str(caught.value)
    data.chmod(0o777)
    ownership.prepare(data, f"{other}:{other}", is_root=False)  # now it can write


# Insights --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "kept", "warned"),
    [
        ('{"records": 42, "source": "x"}', {"records": 42, "source": "x"}, None),
        ("[1, 2]", None, "not a JSON object"),
        ("{oops", None, "not valid JSON"),
        ('{"a": "' + "x" * insights.MAX_BYTES + '"}', None, "larger than 8192 bytes"),
        (None, None, None),
    ],
)
def test_insights_are_kept_with_the_run_or_one_warning(
    tmp_path: Path, content: str | None, kept: object, warned: str | None
) -> None:
    files = {} if content is None else {"insights.json": content}
    run = service(tmp_path, ScriptedRunner(files=files)).execute(TOOL)
    assert run.status == "succeeded"
    assert run.insights == kept
    if warned is None:
        assert run.warning is None
    else:
        assert run.warning is not None and warned in run.warning


def test_a_linked_insights_file_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "secret.json").write_text(json.dumps({"secret": 1}))
    os.symlink(tmp_path / "secret.json", tmp_path / "insights.json")
    found = insights.read(tmp_path)
    assert found.value is None and found.warning is not None


# Spikes per member -------------------------------------------------------------------


def spike(member: str | None, value: float) -> Spike:
    return Spike(
        tool="dummy",
        sortable="20270115T080003Z",
        value=value,
        baseline=100.0,
        deviation=value - 100.0,
        deviation_pct=None,
        score=9.0,
        direction="up",
        member=member,
    )


def test_a_spike_of_each_member_at_the_same_firing_is_stored_and_old_keys_are_read() -> None:
    store = MemoryStore()
    settings = Settings(worker=WorkerSettings(member="a"))
    # A record from before spikes were kept per member.
    store.put(
        KEYS.spike("dummy", "20270115T080000Z"),
        replace(spike(None, 5.0), sortable="20270115T080000Z").to_json(),
    )
    for member, value in (("a", 1000.0), ("b", 990.0), ("a", 1.0)):
        SpikeService(store, KEYS, settings, member)._store(spike(member, value))
    service = SpikeService(store, KEYS, settings, "a")
    found = service.stored("dummy")
    assert [(s.member, s.value) for s in found] == [("b", 990.0), ("a", 1000.0), (None, 5.0)]
    assert [s.value for s in service.stored("dummy", member="b")] == [990.0]
    assert service.get("dummy", "20270115T080003Z@b").value == 990.0
    assert service.get("dummy", "20270115T080000Z").value == 5.0


@pytest.mark.parametrize(
    ("runner", "retryable"),
    [
        (ScriptedRunner(image_error="cannot pull image x: manifest unknown", image_missing=True), False),
        (ScriptedRunner(image_error="cannot pull image x: i/o timeout"), True),
        (ScriptedRunner([ContainerResult(None, "failed", error="unable to find user", retryable=False)]), False),
        (ScriptedRunner([ContainerResult(3, "failed", error="exited with code 3")]), True),
    ],
)  # fmt: skip
def test_a_failure_a_retry_cannot_change_is_marked_so(
    tmp_path: Path, runner: ScriptedRunner, retryable: bool
) -> None:
    run = service(tmp_path, runner).execute(TOOL)
    assert run.status == "failed" and run.retryable is retryable
