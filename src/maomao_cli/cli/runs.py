"""`maomao run`, `runs`, `logs`."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import typer

from ..errors import BadInput, Interrupted, RunFailed
from . import completion, output
from .output import Output
from .state import CliState, use

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from ..models import Run
    from ..ports import PullProgress


def run(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Tool name.", autocompletion=completion.tools),
    hourly: bool = typer.Option(False, "--hourly", help="Schedule: every hour at minute 0."),
    daily: bool = typer.Option(False, "--daily", help="Schedule: every day at 00:00."),
    weekly: bool = typer.Option(False, "--weekly", help="Schedule: every Sunday at 00:00."),
    cron: str | None = typer.Option(
        None, "--cron", help="Schedule: cron expression, 5 fields or 6 with seconds first."
    ),
    tz: str = typer.Option("UTC", "--tz", help="Time zone of the schedule (IANA name)."),
    everywhere: bool = typer.Option(
        False, "--everywhere", help="Run each firing on every member, not once."
    ),
    on: str | None = typer.Option(None, "--on", help="Only members with these labels: k=v,k2=v2."),
    schedule_name: str | None = typer.Option(
        None, "--name", help="Schedule name (default: the tool name)."
    ),
    overlap: bool = typer.Option(
        False, "--allow-overlap", help="Let a firing start while the previous run still runs."
    ),
    retries: int | None = typer.Option(
        None, "--retries", min=0, help="Retries after a failure (default from config)."
    ),
    jitter: str | None = typer.Option(
        None, "--jitter", help="Spread starts by a stable offset below this (10s, 2m)."
    ),
) -> None:
    """Run a tool now, or schedule it with --daily/--weekly/--hourly/--cron."""
    scheduling = hourly or daily or weekly or cron is not None
    if scheduling:
        from .schedules import create_schedule

        create_schedule(
            use(ctx),
            name,
            cron=cron,
            hourly=hourly,
            daily=daily,
            weekly=weekly,
            timezone=tz,
            everywhere=everywhere,
            on=on,
            name=schedule_name,
            overlap=overlap,
            retries=retries,
            jitter=jitter,
        )
        return
    given = (everywhere, on, schedule_name, tz != "UTC", overlap, retries is not None, jitter)
    if any(given):
        raise BadInput(
            "--tz, --everywhere, --on, --name, --allow-overlap, --retries and --jitter need a schedule",
            hint="add --hourly, --daily, --weekly or --cron EXPR",
        )
    run_now(use(ctx), name)


def run_now(state: CliState, name: str) -> None:
    """Run the tool in a container now, streaming its output; exit 0 only on success."""
    context = state.services
    tool = context.registry.get_tool(name)
    cancel = threading.Event()
    pull_display = PullDisplay(state.out)
    started = time.monotonic()
    with _sigint_sets(cancel, state.out):
        try:
            record = context.runs.execute(
                tool,
                on_output=_Printer(pull_display, state.out),
                cancel=cancel,
                progress=pull_display,
                while_running=partial(_prepare_after_run, state),
            )
        finally:
            pull_display.close()
    summary = _summary(record, time.monotonic() - started)
    if cancel.is_set():
        raise Interrupted(f"interrupted: {summary}; the container was stopped and removed")
    if record.status != "succeeded":
        raise RunFailed(summary + (f": {record.error}" if record.error else ""))
    state.out.success(output.safe_markup(summary))
    if record.warning:
        state.out.note(f"warning: {record.warning}")


def _prepare_after_run(state: CliState) -> None:
    """What the end of a run needs, imported while its container starts."""
    state.out.prepare()
    state.services.runs.prepare_hooks()


def _summary(record: Run, elapsed: float) -> str:
    exit_part = f"exit {record.exit_code}" if record.exit_code is not None else "no exit code"
    took = record.duration if record.duration is not None else elapsed
    return (
        f"{record.tool} {record.status} ({exit_part}) in {output.duration(took)}, run {record.id}"
    )


@contextmanager
def _sigint_sets(cancel: threading.Event, out: Output) -> Iterator[None]:
    """Ctrl-C asks the run to stop (the container is stopped, removed and recorded);
    a second Ctrl-C gives up waiting."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        out.note("stopping the container (Ctrl-C again to give up waiting)...")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Printer:
    """Prints container output as it comes (from the runner's log thread)."""

    def __init__(self, pull_display: PullDisplay, out: Output) -> None:
        self.pull_display = pull_display
        self.out = out

    def __call__(self, line: str) -> None:
        self.pull_display.close()
        self.out.text(line)


class PullDisplay:
    """A Rich progress bar per layer while an image is pulled; nothing when it is present."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def __call__(self, event: PullProgress) -> None:
        with self._lock:
            if event.complete:
                self._close()
                return
            if self._progress is None:
                from rich.progress import (
                    BarColumn,
                    DownloadColumn,
                    Progress,
                    TextColumn,
                )

                self._progress = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    DownloadColumn(),
                    console=self.out.err_console,
                    transient=True,
                )
                self._progress.start()
                self.out.note(f"pulling {event.image}...")
            if event.layer is None:
                return
            task = self._tasks.get(event.layer)
            # The registry chose these strings; a task description is markup.
            description = output.safe_markup(f"{event.layer} {event.status.lower()}")
            if task is None:
                task = self._progress.add_task(description, total=event.total)
                self._tasks[event.layer] = task
            self._progress.update(
                task, description=description, completed=event.current or 0, total=event.total
            )

    def _close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._tasks.clear()

    def close(self) -> None:
        with self._lock:
            self._close()


def _as_json(record: Run) -> dict[str, Any]:
    return {
        "id": record.id,
        "tool": record.tool,
        "status": record.status,
        "exit_code": record.exit_code,
        "member": record.member,
        "started": output.iso(record.started),
        "finished": output.iso(record.finished),
        "duration": record.duration,
        "trigger": record.trigger,
        "schedule": record.schedule,
        "fire_time": output.iso(record.fire_time),
        "attempt": record.attempt,
        "image": record.image,
        "image_digest": record.image_digest,
        "error": record.error,
        "warning": record.warning,
        "data_warning": record.data_warning,
        "dataset_commit": record.dataset_commit,
        "pushed": record.pushed,
        "insights": record.insights,
        "retryable": record.retryable,
    }


def _pushed_mark(record: Run) -> Any:
    """Whether the run's dataset commit is on the remote: what `runs` shows, not only --json."""
    if record.pushed is None:
        return "-"
    return "yes" if record.pushed else output.styled("NOT PUSHED", "red")


_STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timed-out": "red",
    "lost": "yellow",
    "running": "cyan",
    "skipped": "dim",
}


# `maomao runs` reads only the pages holding this many records, however long the history.
DEFAULT_LIMIT = 50


def _origin(record: Run) -> str:
    if record.schedule is None:
        return record.trigger
    return (
        record.schedule if record.trigger == "schedule" else f"{record.schedule} ({record.trigger})"
    )


runs_app = typer.Typer(
    help="List run records, newest first; `runs show RUN` shows one.",
    invoke_without_command=True,
)


@runs_app.callback()
def runs(
    ctx: typer.Context,
    tool: str | None = typer.Option(
        None, "--tool", "-t", help="Only the runs of this tool.", autocompletion=completion.tools
    ),
    limit: int = typer.Option(
        DEFAULT_LIMIT, "--limit", "-n", min=1, help="At most this many, the newest."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
    wide: bool = typer.Option(False, "--wide", help="Every column, however wide the terminal."),
) -> None:
    """List run records, newest first (only the newest --limit are read from etcd; the
    pushed column: is its dataset commit on the remote); `maomao runs show RUN` shows one
    with its insights."""
    if ctx.invoked_subcommand is not None:
        return
    state = use(ctx)
    if tool is not None:
        from .. import validation

        validation.name(tool, "tool name")
    found = state.services.run_records.list(tool, limit)
    if as_json:
        state.out.print_json([_as_json(r) for r in found])
        return
    if not found:
        state.out.note("no runs recorded" + (f" for tool {tool}" if tool else ""))
        return
    state.out.print_table(
        output.table(
            "Runs",
            [
                "id",
                "tool",
                "status",
                "exit",
                "from",
                "member",
                "started",
                "took",
                "pushed",
                "error",
            ],
            (
                (
                    r.id,
                    r.tool,
                    output.styled(r.status, _STATUS_STYLE.get(r.status, "")),
                    "-" if r.exit_code is None else str(r.exit_code),
                    _origin(r),
                    r.member,
                    output.when(r.started),
                    output.duration(r.duration),
                    _pushed_mark(r),
                    r.error or "",
                )
                for r in found
            ),
            whole=("id", "tool", "status", "from", "member", "started"),
            clip=("error",),
            optional=("member", "exit", "from", "took", "started"),
            width=state.out.fit(wide),
        ),
        wide=wide,
    )
    if len(found) == limit:
        total = state.services.run_records.count(tool)
        # Counted by etcd without reading them; unknown for a tool without an index.
        more = f"the newest {limit}; -n N for more" if total is None else None
        more = more or output.more_note(len(found), total or 0)
        if more:
            state.out.note(more)


@runs_app.command("show")
def show(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Run id, from `maomao runs`."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """One run's record: provenance (fire time, member, image digest, dataset commit,
    pushed) and the insights its tool left."""
    state = use(ctx)
    if as_json:
        state.out.json_mode = True
    record = state.services.run_records.get(run_id)
    shown = _as_json(record)
    if as_json:
        state.out.print_json(shown)
        return
    import json

    for key, value in shown.items():
        if key == "insights":
            continue
        text = "-" if value is None else str(value)
        state.out.print(f"[bold]{key}[/bold]: {output.safe_markup(text)}", markup=True)
    if record.insights is not None:
        state.out.print("[bold]insights[/bold]:", markup=True)
        pretty = json.dumps(record.insights, indent=2, sort_keys=True)
        state.out.print(output.safe_markup(pretty), markup=True)


def logs(
    ctx: typer.Context,
    run_id: str = typer.Argument(
        ..., help="Run id, from `maomao runs`.", autocompletion=completion.runs
    ),
    raw: bool = typer.Option(
        False, "--raw", help="Print the output as the container wrote it, escape sequences too."
    ),
    full: bool = typer.Option(
        False,
        "--full",
        help="Every line (up to [worker] full_log_max), from the member that ran the run.",
    ),
    wait: float | None = typer.Option(
        None,
        "--wait",
        min=0.1,
        help="With --full: seconds to wait for the member's answer (default [worker] full_log_wait).",
    ),
) -> None:
    """Print the stored output tail of a run (control characters shown escaped); --full
    prints every line, kept by the member that ran it."""
    state = use(ctx)
    if wait is not None and not full:
        raise BadInput("--wait goes with --full", hint=f"maomao logs {run_id} --full --wait N")
    if full:
        _print_full(state, run_id, raw=raw, wait=wait)
        return
    record = state.services.run_records.get(run_id)
    if not record.log_tail:
        state.out.note(f"run {record.id} recorded no output")
        return
    # The container wrote these lines: escaped, unless the user asked for them as they are.
    shown = record.log_tail if raw else [output.safe(line) for line in record.log_tail]
    sys.stdout.write("".join(line + "\n" for line in shown))
    sys.stdout.flush()


def _print_full(state: CliState, run_id: str, *, raw: bool, wait: float | None) -> None:
    found = state.services.run_logs.full(run_id, wait=wait)
    if not found.data:
        state.out.note(f"run {found.run.id} wrote no output")
        return
    if raw:  # the bytes as the container wrote them
        sys.stdout.flush()
        sys.stdout.buffer.write(found.data)
        sys.stdout.buffer.flush()
        return
    lines = found.data.decode("utf-8", errors="replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    sys.stdout.write("".join(output.safe(line.rstrip("\r")) + "\n" for line in lines))
    sys.stdout.flush()
