"""The full output a member keeps of its runs (services/fulllogs.py): every line's bytes,
capped per run with a last line saying what was dropped, 0600 files in a 0700 directory,
never written or read through a planted link, pruned with the records and by age."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from maomao_cli.adapters.containers import ScriptedRunner
from maomao_cli.config import DataSettings, DockerSettings, Settings, WorkerSettings
from maomao_cli.keys import Keys
from maomao_cli.models import Run, Tool
from maomao_cli.services.fulllogs import FullLogRefused, FullLogs, dropped_note
from maomao_cli.services.runs import RunService
from maomao_cli.store.memory import MemoryStore

TOOL = Tool(name="dummy", image="maomao/dummy-tool:test")
DAY = 86400.0
RUN = "20300317T174640Z-1a2b3c"


class Clock:
    """Stands still at the moment it is made: the files' times are the real ones."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def logs(tmp_path: Path, cap: int = 1024, clock: Clock | None = None) -> FullLogs:
    return FullLogs(tmp_path / "state" / "logs", cap, clock=clock or Clock())


@pytest.mark.parametrize(
    ("lines", "cap", "kept", "dropped"),
    [
        ([b"a" * 9] * 3, 30, 3, 0),  # 3 x 10 bytes: exactly the cap
        ([b"a" * 9] * 4, 30, 3, 1),
        ([b"a" * 99], 30, 0, 1),  # one line over the whole cap: nothing, and the note
        ([b"x" * 9, b"y" * 30, b"z"], 30, 1, 2),  # nothing after the first dropped line
        ([], 30, 0, 0),
    ],
)
def test_lines_past_the_cap_are_dropped_and_counted_in_a_last_line(
    tmp_path: Path, lines: list[bytes], cap: int, kept: int, dropped: int
) -> None:
    kept_logs = logs(tmp_path, cap)
    writer = kept_logs.open(RUN)
    assert writer is not None
    for line in lines:
        writer.write(line)
    writer.close()
    writer.write(b"after close")  # the runner's thread may outlive the run: ignored

    data = kept_logs.read(RUN)
    assert data is not None
    written = data.split(b"\n")[:-1]
    assert written[:kept] == lines[:kept]
    if dropped:
        size = sum(len(line) + 1 for line in lines[kept:])
        assert written[kept:] == [dropped_note(dropped, size, cap)]
        assert len(data) <= cap + kept_logs.read_limit - cap
    else:
        assert len(written) == kept


def test_bytes_are_kept_as_the_container_wrote_them(tmp_path: Path) -> None:
    kept_logs = logs(tmp_path)
    writer = kept_logs.open(RUN)
    assert writer is not None
    hostile = [b"\x1b]52;c;cHduZWQ=\x07", b"\xff\xfe not utf-8", b"\r\x1b[2J"]
    for line in hostile:
        writer.write(line)
    writer.close()

    assert kept_logs.read(RUN) == b"".join(line + b"\n" for line in hostile)


def test_files_are_0600_in_a_0700_directory_even_if_it_was_looser(tmp_path: Path) -> None:
    directory = tmp_path / "state" / "logs"
    directory.mkdir(parents=True)
    directory.chmod(0o755)
    writer = logs(tmp_path).open(RUN)
    assert writer is not None
    writer.close()

    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / f"{RUN}.log").stat().st_mode) == 0o600


def test_a_link_planted_at_the_log_path_is_refused_never_followed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"precious\n")
    directory = tmp_path / "state" / "logs"
    directory.mkdir(parents=True, mode=0o700)
    (directory / f"{RUN}.log").symlink_to(target)
    kept_logs = logs(tmp_path)

    with pytest.raises(FullLogRefused):
        kept_logs.open(RUN)
    with pytest.raises(FullLogRefused):
        kept_logs.read(RUN)  # nor sent: a link could name any file of the host
    assert target.read_bytes() == b"precious\n"
    assert kept_logs.remove(RUN)  # removing takes the link away, not its target
    assert target.exists()


def test_a_link_in_place_of_the_directory_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "logs").symlink_to(elsewhere)

    with pytest.raises(FullLogRefused):
        logs(tmp_path).open(RUN)
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("run_id", ["../escape", ".hidden", "a/b", "", "x" * 200])
def test_a_file_name_is_a_valid_run_id_only(tmp_path: Path, run_id: str) -> None:
    kept_logs = logs(tmp_path)
    with pytest.raises(ValueError, match="invalid run id"):
        kept_logs.open(run_id)
    with pytest.raises(ValueError, match="invalid run id"):
        kept_logs.read(run_id)
    assert not kept_logs.remove(run_id)


def test_no_full_logs_at_a_cap_of_zero(tmp_path: Path) -> None:
    assert logs(tmp_path, cap=0).open(RUN) is None
    assert not (tmp_path / "state" / "logs").exists()


def test_logs_older_than_the_age_are_pruned_and_others_kept(tmp_path: Path) -> None:
    clock = Clock()
    kept_logs = logs(tmp_path, clock=clock)
    for run_id in ("old-run", "new-run"):
        writer = kept_logs.open(run_id)
        assert writer is not None
        writer.close()
    directory = tmp_path / "state" / "logs"
    os.utime(directory / "old-run.log", (clock.now - 31 * DAY, clock.now - 31 * DAY))
    os.utime(directory / "new-run.log", (clock.now - 29 * DAY, clock.now - 29 * DAY))
    (directory / "notes.txt").write_text("not a log")

    assert kept_logs.prune(0) == 0  # no age limit: nothing goes by age
    assert kept_logs.prune(30 * DAY) == 1

    assert sorted(p.name for p in directory.iterdir()) == ["new-run.log", "notes.txt"]


class Ticking(Clock):
    """A second later at every reading: each run starts after the one before."""

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def service(tmp_path: Path, runner: ScriptedRunner, **worker: object) -> RunService:
    settings = Settings(
        data=DataSettings(importdir=str(tmp_path / "data"), statedir=str(tmp_path / "state")),
        docker=DockerSettings(network="none"),
        worker=WorkerSettings(**worker),  # type: ignore[arg-type]
    )
    return RunService(MemoryStore(), Keys("/t"), settings, runner, "member-a", clock=Ticking())


def test_a_run_keeps_every_line_beyond_the_records_tail(tmp_path: Path) -> None:
    printed = [f"line {n} " + "x" * 200 for n in range(400)]  # about 80 KiB
    runs = service(tmp_path, ScriptedRunner(output=printed, log_lines=10_000))

    record = runs.execute(TOOL)

    assert record.log_tail[-1] == printed[-1] and len(record.log_tail) < len(printed)
    assert runs.full_logs.read(record.id) == "".join(f"{line}\n" for line in printed).encode()


def test_a_run_goes_on_without_its_full_log_when_a_link_is_planted(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"precious\n")
    runs = service(tmp_path, ScriptedRunner(output=["hello"]))
    run_id = "20300317T174641Z-abcdef"
    directory = tmp_path / "state" / "logs"
    directory.mkdir(parents=True, mode=0o700)
    (directory / f"{run_id}.log").symlink_to(target)

    record = runs.execute(TOOL, run_id=run_id)

    assert (record.status, record.log_tail) == ("succeeded", ["hello"])
    assert target.read_bytes() == b"precious\n"


def test_a_pruned_record_takes_its_full_log_along(tmp_path: Path) -> None:
    runs = service(tmp_path, ScriptedRunner(output=["hello"]), runs_kept=1)
    first = runs.execute(TOOL)
    assert runs.full_logs.read(first.id) == b"hello\n"

    second = runs.execute(TOOL)  # keeps 1: the first record goes, and its log

    assert runs.full_logs.read(first.id) is None
    assert runs.full_logs.read(second.id) == b"hello\n"
    assert [r.id for r in runs.list("dummy")] == [second.id]


def test_run_records_of_other_members_are_pruned_without_touching_local_logs(
    tmp_path: Path,
) -> None:
    runs = service(tmp_path, ScriptedRunner(output=["mine"]), runs_kept=1)
    mine = runs.execute(TOOL)
    other = Run(id="20300101T000000Z-000000", tool="dummy", member="member-b", status="running")
    runs.save(other)
    runs.save(Run(id=other.id, tool="dummy", member="member-b", status="succeeded"))

    runs.prune("dummy")

    assert runs.full_logs.read(mine.id) == b"mine\n"
    assert runs.store.get(runs.keys.run(other.id)) is None
