"""Strings another member wrote to etcd reach no terminal raw: every table and line of the
CLI shows their control characters escaped, so an escape sequence (an OSC title change,
a CSI cursor move, an OSC 8 link, a bidi override) planted in a tool's author, a run's
error or a member's labels does nothing. And a name that is not valid UTF-8 is bad input.

The records are written straight into the store, as a member with a modified client
could: the CLI must not rely on anyone's validation but its own rendering.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fakes.git import FakeGit
from maomao_cli import validation
from maomao_cli.adapters.containers import ScriptedRunner
from maomao_cli.cli import root as cli_root
from maomao_cli.cli.app import app as cli_app
from maomao_cli.cli.output import safe, safe_formatter, safe_lines
from maomao_cli.composition import Services
from maomao_cli.config import DataSettings, DockerSettings, EtcdSettings, Settings, WorkerSettings
from maomao_cli.errors import BadInput, Unavailable
from maomao_cli.keys import Keys
from maomao_cli.models import Dataset, Member, Run, Schedule, Spike, Tool
from maomao_cli.ports import ContainerResult
from maomao_cli.services.registry import ToolSpec
from maomao_cli.store.base import Entry
from maomao_cli.store.memory import MemoryStore

PREFIX = "/maomao-rendering"
KEYS = Keys(PREFIX)

OSC_TITLE = "\x1b]0;owned\x07"  # sets the terminal's title
CSI_CLEAR = "\x1b[2J\x1b[H"  # clears the screen
OSC8_LINK = "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\"
C1_CSI = "\x9b31m"  # CSI as one C1 character
BIDI = "\u202egnp.exe"  # right-to-left override
CR = "looks fine\rREWRITTEN"
MARKUP = "[link=https://evil.example/]click[/link] [/]"  # Rich markup is an OSC 8 link too
EMOJI = ":warning: :white_check_mark:"  # Rich would print other symbols than were written
HOSTILE = f"{OSC_TITLE}{CSI_CLEAR}{OSC8_LINK}{C1_CSI}{BIDI}{CR}{MARKUP}{EMOJI}"

# What must never reach the output when a hostile string is shown.
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\r")
RUN_ID = "20240501T101500Z-3f2a1c"


@dataclass
class Result:
    code: int
    out: str
    err: str


def invoke(services: Services, *args: str) -> Result:
    """A maomao command in-process on `services`; the "maomao" logger is put back after."""
    logger = logging.getLogger("maomao")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    try:
        result = CliRunner().invoke(cli_app, list(args), obj=services, env={"COLUMNS": "400"})
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
    return Result(result.exit_code, result.stdout, result.stderr)


def make_services(tmp_path: Path, store: MemoryStore, runner: ScriptedRunner) -> Services:
    settings = Settings(
        etcd=EtcdSettings(prefix=PREFIX),
        data=DataSettings(importdir=str(tmp_path / "data")),
        docker=DockerSettings(network="none"),
        worker=WorkerSettings(member="member-a"),
    )
    return Services(settings, store=store, runner=runner, git=FakeGit())


def plant_hostile_records(store: MemoryStore) -> None:
    """Every field another member can write, holding escape sequences."""
    tool = Tool(
        name="probe", image="img", author=HOSTILE, description=HOSTILE, created=1.0, updated=2.0
    )
    store.put(KEYS.tool("probe"), tool.to_json())
    store.put(KEYS.tool("evil"), Tool(name=HOSTILE, image=HOSTILE, dataset=HOSTILE).to_json())
    store.put(KEYS.dataset("obs"), Dataset(name="obs", url=HOSTILE, branch=HOSTILE).to_json())
    run = Run(
        id=RUN_ID,
        tool="probe",
        member=HOSTILE,
        status="failed",
        trigger="schedule",
        schedule=HOSTILE,
        image=HOSTILE,
        exit_code=3,
        started=10.0,
        finished=11.0,
        error=HOSTILE,
        warning=HOSTILE,
        log_tail=[HOSTILE, "plain line"],
    )
    store.put(KEYS.run(RUN_ID), run.to_json())
    member = Member(
        name="lab-x",
        host=HOSTILE,
        version=HOSTILE,
        started=1.0,
        labels={"region": HOSTILE},
        running=1,
    )
    store.put(KEYS.member("lab-x"), member.to_json())
    spike = Spike(
        tool="probe",
        sortable=HOSTILE,
        value=3.0,
        baseline=1.0,
        deviation=2.0,
        deviation_pct=200.0,
        score=4.0,
        direction="up",
        method=HOSTILE,
        run_id=HOSTILE,
        member=HOSTILE,
    )
    store.put(KEYS.spike("probe", "2024-05-01"), spike.to_json())
    schedule = Schedule(name="probe", tool=HOSTILE, cron="0 0 * * *", on={"region": HOSTILE})
    store.put(KEYS.schedule("probe"), schedule.to_json())


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    store = MemoryStore()
    plant_hostile_records(store)
    yield make_services(tmp_path, store, ScriptedRunner(output=[HOSTILE]))


def assert_nothing_raw(result: Result, command: tuple[str, ...]) -> None:
    for stream, text in (("stdout", result.out), ("stderr", result.err)):
        for raw in RAW:
            assert raw not in text, (command, stream, repr(raw), text)
        assert "\x1b]8;" not in text, (command, stream, "OSC 8 link", text)


SHOWN = [
    ("tools",),
    ("runs",),
    ("runs", "--tool", "probe"),
    ("logs", RUN_ID),
    ("members",),
    ("spikes", "--all"),
    ("spikes", "--tool", "probe"),
    ("schedule", "list"),
    ("schedule", "show", "probe"),
    ("dataset", "list"),
    ("dataset", "show", "obs"),
]


@pytest.mark.parametrize("command", SHOWN, ids=" ".join)
def test_no_escape_sequence_from_etcd_reaches_the_terminal(
    services: Services, command: tuple[str, ...]
) -> None:
    result = invoke(services, *command)
    assert result.code == 0, (result.out, result.err)
    assert_nothing_raw(result, command)
    assert "\\x1b" in result.out  # shown, escaped, not dropped


@pytest.mark.parametrize("command", SHOWN, ids=" ".join)
def test_json_output_escapes_too(services: Services, command: tuple[str, ...]) -> None:
    if command[0] == "logs":
        pytest.skip("logs has no --json")
    result = invoke(services, *command, "--json")
    assert result.code == 0, (result.out, result.err)
    assert_nothing_raw(result, command)


def test_markup_from_etcd_is_shown_as_text(services: Services) -> None:
    shown = invoke(services, "tools")
    assert "[link=https://evil.example/]click[/link] [/]" in shown.out  # not a link, no crash
    # Fields printed inside maomao's own markup: emoji codes too print as written.
    detail = invoke(services, "dataset", "show", "obs")
    assert detail.code == 0 and EMOJI in detail.out.replace("\n", ""), detail.out


def test_logs_raw_prints_the_tail_as_the_container_wrote_it(services: Services) -> None:
    escaped = invoke(services, "logs", RUN_ID)
    assert escaped.out.splitlines() == [safe(HOSTILE), "plain line"]
    raw = invoke(services, "logs", RUN_ID, "--raw")
    assert raw.code == 0 and raw.out == f"{HOSTILE}\nplain line\n"


def test_a_run_streams_container_output_escaped(services: Services) -> None:
    result = invoke(services, "run", "probe")
    assert result.code == 0, result.err
    assert safe(HOSTILE) in result.out
    assert_nothing_raw(result, ("run", "probe"))


def test_a_failed_run_error_line_is_escaped(tmp_path: Path) -> None:
    store = MemoryStore()
    runner = ScriptedRunner([ContainerResult(3, "failed", error=HOSTILE)])
    services = make_services(tmp_path, store, runner)
    services.registry.register_tool(ToolSpec(name="probe", image="img"))
    result = invoke(services, "run", "probe")
    assert result.code == 1
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert_nothing_raw(result, ("run", "probe"))


def hostile_record() -> logging.LogRecord:
    record = logging.LogRecord(
        "maomao.worker", logging.WARNING, __file__, 1, "run %s: %s", None, None
    )
    record.args = ("r1", HOSTILE)
    return record


def test_log_lines_are_escaped() -> None:
    record = hostile_record()
    for formatter in (safe_formatter("%(levelname)s %(message)s"), _cli_formatter()):
        line = formatter.format(record)
        assert "\n" not in line
        for raw in RAW:
            assert raw not in line, (formatter, repr(raw))
        assert safe(HOSTILE) in line


def _cli_formatter() -> logging.Formatter:
    """The one-line formatter the CLI gives the "maomao" logger."""
    logger = logging.getLogger("maomao")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    logger.handlers[:] = []
    try:
        cli_root._setup_logging()
        formatter = logger.handlers[0].formatter
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
    assert formatter is not None
    return formatter


def test_worker_log_handlers_escape(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    from maomao_cli.cli import logformat
    from maomao_cli.cli.output import Output

    logger = logging.getLogger("maomao")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    try:
        for tty in (False, True):
            monkeypatch.setattr(sys.stderr, "isatty", lambda tty=tty: tty, raising=False)
            logformat.setup(Output(), "text")
            [handler] = logger.handlers
            assert handler.formatter is not None
            line = handler.formatter.format(hostile_record())
            assert safe(HOSTILE) in line and not any(raw in line for raw in RAW), (tty, line)
            logformat.setup(Output(), "json")  # json.dumps escapes every control character
            [handler] = logger.handlers
            assert handler.formatter is not None
            line = handler.formatter.format(hostile_record())
            assert json.loads(line)["message"] == f"run r1: {HOSTILE}"
            assert not any(raw in line for raw in RAW), (tty, line)
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain é ü 日本", "plain é ü 日本"),
        ("tab\tstays", "tab\tstays"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("bell\x07", "bell\\x07"),
        ("c1\x9b", "c1\\x9b"),
        ("del\x7f", "del\\x7f"),
        ("two\nlines", "two\\x0alines"),
        ("cr\r", "cr\\x0d"),
        ("\u202eevil", "\\u202eevil"),
        ("\u2066iso\u2069", "\\u2066iso\\u2069"),
        ("line\u2028sep", "line\\u2028sep"),
        ("not utf-8 \udcff", "not utf-8 \\udcff"),
    ],
)
def test_safe_escapes_what_a_terminal_acts_on(text: str, shown: str) -> None:
    assert safe(text) == shown
    assert safe_lines(text) == (text if text == "two\nlines" else shown)


# Bad input: names that are not UTF-8 ------------------------------------------------


class KeyEncodingStore(MemoryStore):
    """A memory store that, like etcd's client, cannot encode a key that is not UTF-8:
    a surrogate reaching a key would be reported as an unreachable etcd."""

    @staticmethod
    def _encode(key: str) -> str:
        try:
            key.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise Unavailable(f"etcd at memory is unreachable: {exc}") from None
        return key

    def get(self, key: str) -> Entry | None:
        return super().get(self._encode(key))

    def scan_with_revision(self, prefix: str) -> tuple[list[Entry], int]:
        return super().scan_with_revision(self._encode(prefix))

    def put(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        return super().put(self._encode(key), value, lease=lease)

    def create(self, key: str, value: bytes, *, lease: int | None = None) -> bool:
        return super().create(self._encode(key), value, lease=lease)

    def delete(self, key: str) -> bool:
        return super().delete(self._encode(key))


NOT_UTF8 = "\udcff"  # what Python makes of the byte 0xff in argv (`$'\xff'`)


@pytest.mark.parametrize(
    "command",
    [
        ("spikes", "--tool", NOT_UTF8),
        ("spikes", "--tool", "a\x1bb"),
        ("runs", "--tool", NOT_UTF8),
        ("logs", NOT_UTF8),
        ("register", NOT_UTF8, "img"),
        ("register", "ok", NOT_UTF8),
        ("register", "ok", "img", "--dataset", NOT_UTF8),
        ("register", "ok", "img", "--data-subdir", f"a{NOT_UTF8}"),
        ("register", "ok", "img", "--env", f"A={NOT_UTF8}"),
        ("unregister", NOT_UTF8),
        ("run", NOT_UTF8),
        ("run", NOT_UTF8, "--daily"),
        ("run", "probe", "--daily", "--name", NOT_UTF8),
        ("schedule", "show", NOT_UTF8),
        ("schedule", "pause", NOT_UTF8),
        ("schedule", "rm", NOT_UTF8),
        ("dataset", "add", NOT_UTF8, "https://git.example.org/a/b.git"),
        ("dataset", "add", "obs", f"https://git.example.org/a/{NOT_UTF8}.git"),
        ("dataset", "add", "obs", "https://git.example.org/a/b.git", "--branch", NOT_UTF8),
        ("dataset", "add", "obs", "https://git.example.org/a/\u202eb.git"),
        ("dataset", "show", NOT_UTF8),
        ("dataset", "rm", NOT_UTF8),
        ("dataset", "status", NOT_UTF8),
    ],
    ids=repr,
)
def test_a_name_that_is_not_utf8_is_bad_input(tmp_path: Path, command: tuple[str, ...]) -> None:
    store = KeyEncodingStore()
    services = make_services(tmp_path, store, ScriptedRunner())
    services.registry.register_tool(ToolSpec(name="probe", image="img"))
    before = [e.key for e in store.scan("/")]
    result = invoke(services, *command)
    assert result.code == 2, (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid "), result.err
    assert "unreachable" not in result.err
    for raw in (*RAW, NOT_UTF8, "\x1b"):
        assert raw not in result.err
    assert [e.key for e in store.scan("/")] == before


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (NOT_UTF8, "not valid UTF-8"),
        ("a\x1b[2J", "U+001B"),
        ("a\x9bb", "U+009B"),
        ("a\u202eb", "U+202E"),
        ("a\rb", "U+000D"),
        ("a\nb", "U+000A"),
        ("a\x00", "U+0000"),
    ],
)
def test_text_refuses_with_the_field_named(value: str, why: str) -> None:
    with pytest.raises(BadInput) as caught:
        validation.text(value, "tool author")
    assert caught.value.message.startswith("invalid tool author ")
    assert why in caught.value.message
    assert "\n" not in caught.value.message and NOT_UTF8 not in caught.value.message


def test_text_takes_plain_and_multiline_text() -> None:
    assert validation.text("Lab A, Paris — é", "author") == "Lab A, Paris — é"
    assert validation.text("two\nlines\tand a tab", "description", multiline=True)
    with pytest.raises(BadInput):
        validation.text("two\nlines\x1b", "description", multiline=True)
