"""`maomao logs RUN --full` in-process: from this host's full log, from another member
answering through the (memory) store, and the one-line errors when it cannot."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from cli_harness import Cli, MakeCli
from maomao_cli.adapters.containers import ScriptedRunner
from maomao_cli.clock import SystemClock
from maomao_cli.composition import Services
from maomao_cli.models import Member
from maomao_cli.services.fulllogs import FullLogs
from maomao_cli.services.worker.loganswers import LogAnswers

PRINTED = [f"line {n:04d} " + "x" * 100 for n in range(300)]  # ~32 KiB: twice the tail
HOSTILE = "\x1b]52;c;cHduZWQ=\x07 clipboard"


def ran(make_cli: MakeCli) -> tuple[Cli, str]:
    cli = make_cli(runner=ScriptedRunner(output=[*PRINTED, HOSTILE], log_lines=10_000))
    assert cli.invoke("register", "noisy", "img").code == 0
    assert cli.invoke("run", "noisy").code == 0
    [record] = cli.invoke("runs", "--json").json()
    return cli, str(record["id"])


def test_full_prints_every_line_escaped_and_raw_as_written(make_cli: MakeCli) -> None:
    cli, run_id = ran(make_cli)

    tail = cli.invoke("logs", run_id)
    full = cli.invoke("logs", run_id, "--full")
    raw = cli.invoke("logs", run_id, "--full", "--raw")

    assert (tail.code, tail.err) == (0, "")
    assert "line 0000" not in tail.out and PRINTED[-1] in tail.out  # the record's 16 KiB
    assert (full.code, full.err) == (0, "")
    assert full.out.splitlines() == [*PRINTED, "\\x1b]52;c;cHduZWQ=\\x07 clipboard"]
    assert (raw.code, raw.err) == (0, "")
    assert raw.out == "".join(f"{line}\n" for line in [*PRINTED, HOSTILE])


@contextmanager
def member_a_answering(cli: Cli) -> Iterator[None]:
    """member-a's worker: in the member list, answering from its state directory."""
    settings = cli.settings
    member = Member(name="member-a", host="host-a", version="0", started=0.0)
    cli.store.put(cli.keys.member("member-a"), member.to_json())
    logs = FullLogs(settings.data.state_path / "logs", 16 << 20, clock=SystemClock().now)
    answers = LogAnswers(
        store_factory=lambda: cli.store,
        keys=cli.keys,
        member="member-a",
        logs=logs,
        clock=SystemClock(),
    )
    # The worker's log lines are its own process's, not the command's stderr.
    worker_log = logging.getLogger("maomao.worker")
    worker_log.propagate = False
    answers.start()
    try:
        yield
    finally:
        answers.stop()
        worker_log.propagate = True


def test_full_from_another_member_gets_every_line_from_the_one_that_ran_it(
    make_cli: MakeCli,
) -> None:
    cli, run_id = ran(make_cli)
    other = make_cli(store=cli.store, env={"MAOMAO_MEMBER": "member-b"})
    assert other.settings.data.state_path != cli.settings.data.state_path

    with member_a_answering(cli):
        full = other.invoke("logs", run_id, "--full")

    assert (full.code, full.err) == (0, "")
    assert full.out.splitlines()[:-1] == PRINTED
    assert other.records("logreq/") == [] and other.records("logs/") == []


def test_full_names_a_member_not_in_the_member_list(make_cli: MakeCli) -> None:
    cli, run_id = ran(make_cli)
    other = make_cli(store=cli.store, env={"MAOMAO_MEMBER": "member-b"})

    result = other.invoke("logs", run_id, "--full")

    assert (result.code, result.out) == (1, "")
    assert result.err_lines == [
        f"error: member member-a is not in the member list: the full log of run {run_id} "
        f"is kept on its host; run `maomao logs {run_id} --full` there, or `maomao logs "
        f"{run_id}` for the last 16 KiB"
    ]


class InstantClock:
    def now(self) -> float:
        return 1_900_000_000.0

    def monotonic(self) -> float:
        return self.at

    def __init__(self) -> None:
        self.at = 0.0

    def wait(self, event: threading.Event, timeout: float) -> bool:
        self.at += timeout
        return event.is_set()


def test_full_names_a_member_that_does_not_answer(make_cli: MakeCli) -> None:
    cli, run_id = ran(make_cli)
    other = make_cli(store=cli.store, env={"MAOMAO_MEMBER": "member-b"})
    member = Member(name="member-a", host="host-a", version="0", started=0.0)
    cli.store.put(cli.keys.member("member-a"), member.to_json())
    services = Services(other.settings, store=cli.store, runner=cli.runner, clock=InstantClock())

    result = other.invoke("logs", run_id, "--full", "--wait", "3", services=services)

    assert (result.code, result.out) == (1, "")
    assert result.err_lines == [
        f"error: member member-a did not answer within 3s: the full log of run {run_id} is "
        f"kept on its host (host host-a); run `maomao logs {run_id} --full` there, or "
        f"`maomao logs {run_id}` for the last 16 KiB"
    ]


def test_wait_without_full_is_refused(cli: Cli) -> None:
    result = cli.invoke("logs", "20300317T174640Z-1a2b3c", "--wait", "3")

    assert (result.code, result.out) == (2, "")
    assert result.err_lines == [
        "error: --wait goes with --full (hint: maomao logs 20300317T174640Z-1a2b3c --full --wait N)"
    ]
