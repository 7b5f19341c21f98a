"""`maomao schedule ...`, and the schedule branch of `maomao run NAME --daily`."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer

from . import completion, output
from .state import CliState, use

if TYPE_CHECKING:  # the config and the records cost 40 ms: `--help` needs neither
    from ..config import WorkerSettings
    from ..models import Schedule

app = typer.Typer(help="Schedules: list, show, pause, resume, rm.", no_args_is_help=True)


def _local(epoch: float | None, zone_name: str) -> str:
    if epoch is None:
        return "-"
    from ..scheduling import zone

    return datetime.fromtimestamp(epoch, zone(zone_name)).strftime("%Y-%m-%d %H:%M:%S %Z")


def create_schedule(
    state: CliState,
    tool: str,
    *,
    cron: str | None,
    hourly: bool,
    daily: bool,
    weekly: bool,
    timezone: str,
    everywhere: bool,
    on: str | None,
    name: str | None,
    overlap: bool,
    retries: int | None,
) -> None:
    """Store a schedule and print its next three fire times in its zone."""
    from ..scheduling import resolve_cron

    expression = resolve_cron(cron=cron, hourly=hourly, daily=daily, weekly=weekly)
    context = state.services
    schedule, created = context.schedules.create(
        tool,
        expression,
        timezone=timezone,
        mode="everywhere" if everywhere else "once",
        on=on,
        name=name,
        overlap=overlap,
        retries=retries,
    )
    upcoming = context.schedules.upcoming(schedule, time.time(), 3)
    verb = "scheduled" if created else "rescheduled"
    where = "on every member" if schedule.mode == "everywhere" else "once per firing"
    tool, name, when = (
        output.safe_markup(text)
        for text in (schedule.tool, schedule.name, f"{schedule.cron} ({schedule.timezone})")
    )
    state.out.success(f"{verb} [bold]{tool}[/bold] as [bold]{name}[/bold]: {when}, {where}")
    for epoch in upcoming:
        state.out.print(f"  next: {_local(epoch, schedule.timezone)}", markup=False)
    state.out.note("every running `maomao worker` picks it up at once")


def _last_runs(state: CliState) -> dict[str, Any]:
    """The newest run of each schedule."""
    latest: dict[str, Any] = {}
    for run in state.services.runs.list():
        if run.schedule and run.schedule not in latest:
            latest[run.schedule] = run
    return latest


@app.command("list")
def list_(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
    wide: bool = typer.Option(False, "--wide", help="Every column, however wide the terminal."),
) -> None:
    """List schedules with their next fire time and last run."""
    state = use(ctx)
    context = state.services
    schedules = sorted(context.schedules.all(), key=lambda s: s.name)
    last = _last_runs(state)
    now = time.time()
    rows = []
    for s in schedules:
        next_fire = None if s.paused else context.schedules.upcoming(s, now, 1)[0]
        run = last.get(s.name)
        rows.append((s, next_fire, run))
    if as_json:
        state.out.print_json(
            [
                {
                    **output.iso_times(s.to_dict(), "created"),
                    "next_fire": output.iso(nf),
                    "last_run": run.id if run else None,
                    "last_status": run.status if run else None,
                }
                for s, nf, run in rows
            ]
        )
        return
    if not rows:
        state.out.note("no schedules; create one with `maomao run TOOL --daily`")
        return
    state.out.print_table(
        output.table(
            "Schedules",
            [
                "name",
                "tool",
                "cron",
                "zone",
                "mode",
                "next fire",
                "last run",
                "last run at",
                "paused",
            ],
            (
                (
                    s.name,
                    s.tool,
                    s.cron,
                    s.timezone,
                    s.mode
                    + (f" on {','.join(f'{k}={v}' for k, v in s.on.items())}" if s.on else ""),
                    output.when(nf),
                    run.status if run else "-",
                    output.when(run.started) if run else "-",
                    "yes" if s.paused else "no",
                )
                for s, nf, run in rows
            ),
            whole=("name", "tool", "next fire"),
            optional=("last run at", "zone", "mode", "paused", "cron", "last run"),
            width=state.out.fit(wide),
        ),
        wide=wide,
    )


@app.command("show")
def show(
    ctx: typer.Context,
    name: str = typer.Argument(..., autocompletion=completion.schedules),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show one schedule and its next fire times."""
    state = use(ctx)
    context = state.services
    schedule = context.schedules.get(name)
    upcoming = [] if schedule.paused else context.schedules.upcoming(schedule, time.time(), 5)
    if as_json:
        state.out.print_json(
            {
                **output.iso_times(schedule.to_dict(), "created"),
                "next_fires": [output.iso(t) for t in upcoming],
            }
        )
        return
    for key, value in _shown_fields(schedule, context.settings.worker):
        state.out.print(output.safe(f"{key}: {value}"), markup=False)
    for epoch in upcoming:
        state.out.print(f"next: {_local(epoch, schedule.timezone)}", markup=False)


def _shown_fields(schedule: Schedule, defaults: WorkerSettings) -> list[tuple[str, str]]:
    """`schedule show`: every field in words, an unset one as the default it falls back on."""
    shown = []
    for key, value in schedule.to_dict().items():
        if key == "v":
            continue
        if key == "created":
            text = output.when(value)
        elif key == "retries" and value is None:
            text = f"default ({defaults.retries})"
        elif key == "grace" and value is None:
            text = f"default ({output.duration(defaults.misfire_grace)})"
        elif key == "grace":
            text = output.duration(value)
        elif isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, dict):
            text = ",".join(f"{k}={v}" for k, v in value.items()) or "every member"
        else:
            text = "-" if value is None else str(value)
        shown.append((key, text))
    return shown


@app.command("pause")
def pause(
    ctx: typer.Context, name: str = typer.Argument(..., autocompletion=completion.schedules)
) -> None:
    """Pause a schedule (workers stop firing it)."""
    state = use(ctx)
    state.services.schedules.set_paused(name, True)
    state.out.success(f"paused schedule [bold]{output.safe_markup(name)}[/bold]")


@app.command("resume")
def resume(
    ctx: typer.Context, name: str = typer.Argument(..., autocompletion=completion.schedules)
) -> None:
    """Resume a paused schedule."""
    state = use(ctx)
    state.services.schedules.set_paused(name, False)
    state.out.success(f"resumed schedule [bold]{output.safe_markup(name)}[/bold]")


@app.command("rm")
def rm(
    ctx: typer.Context, name: str = typer.Argument(..., autocompletion=completion.schedules)
) -> None:
    """Remove a schedule (its runs stay)."""
    state = use(ctx)
    state.services.schedules.remove(name)
    state.out.success(f"removed schedule [bold]{output.safe_markup(name)}[/bold]")
