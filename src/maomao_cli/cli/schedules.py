"""`maomao schedule ...`, and the schedule branch of `maomao run NAME --daily`."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer

from . import completion, output
from .state import CliState, use

if TYPE_CHECKING:  # the config and the records cost 40 ms: `--help` needs neither
    from ..config import WorkerSettings
    from ..models import Schedule

app = typer.Typer(
    help="Schedules: list, show, pause, resume, trigger, backfill, rm.", no_args_is_help=True
)


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
    jitter: str | None = None,
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
        jitter=jitter,
    )
    upcoming = context.schedules.upcoming(schedule, context.schedules.now(), 3)
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
    last = context.run_records.latest_of({s.name for s in schedules})
    now = context.schedules.now()
    rows = []
    for s in schedules:
        paused = context.schedules.is_paused(s)
        next_fire = context.schedules.upcoming(s, max(now, s.paused_until or now), 1)[0]
        run = last.get(s.name)
        rows.append((s, None if paused and s.paused_until is None else next_fire, run))
    if as_json:
        counters = context.coverage.counters(schedules)
        state.out.print_json(
            [
                {
                    **output.iso_times(_with_pause(s, context.schedules.is_paused(s)), "created"),
                    "next_fire": output.iso(nf),
                    "last_run": run.id if run else None,
                    "last_status": run.status if run else None,
                    "counters": _counters_json(counters.get(s.name)),
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
                    _pause_cell(s, context.schedules.is_paused(s)),
                )
                for s, nf, run in rows
            ),
            whole=("name", "tool", "next fire"),
            optional=("last run at", "zone", "mode", "paused", "cron", "last run"),
            width=state.out.fit(wide),
        ),
        wide=wide,
    )


def _with_pause(schedule: Schedule, paused: bool) -> dict[str, Any]:
    """The record for JSON: times as ISO, `paused` as it is now (an ended pause is over)."""
    data = schedule.to_dict()
    data["paused"] = paused
    for key in ("paused_until", "paused_at"):
        data[key] = output.iso(data[key])
    return data


def _pause_cell(schedule: Any, paused: bool) -> str:
    if not paused:
        return "no"
    parts = ["yes"]
    if schedule.paused_until is not None:
        parts.append(f"until {_local(schedule.paused_until, schedule.timezone)}")
    if schedule.pause_note:
        parts.append(f"({schedule.pause_note})")
    return " ".join(parts)


def _who() -> str:
    """Who is pausing or requesting: user@host, for the record."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@app.command("show")
def show(
    ctx: typer.Context,
    name: str = typer.Argument(..., autocompletion=completion.schedules),
    next_count: int | None = typer.Option(
        None, "--next", help="List the next N nominal fire times, DST marks and jitter."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show one schedule, its counters and its next fire times."""
    state = use(ctx)
    context = state.services
    schedule = context.schedules.get(name)
    paused = context.schedules.is_paused(schedule)
    members = context.members.live() if schedule.jitter > 0 else []
    firings = context.schedules.next_firings(
        schedule, 5 if next_count is None else next_count, members
    )
    counters = context.coverage.counters([schedule]).get(schedule.name)
    if as_json:
        state.out.print_json(
            {
                **output.iso_times(_with_pause(schedule, paused), "created"),
                "next_fires": [output.iso(f.instant) for f in firings if f.instant is not None],
                "next": [_next_json(f) for f in firings],
                "counters": _counters_json(counters),
            }
        )
        return
    shown = replace(schedule, paused=paused)  # an ended pause is over
    for key, value in _shown_fields(shown, context.settings.worker):
        state.out.print(output.safe(f"{key}: {value}"), markup=False)
    if counters is not None:
        for window, counts in counters.items():
            state.out.print(output.safe(f"{window}: {_counts_text(counts)}"), markup=False)
    if next_count is None:
        for f in firings:
            if f.instant is not None:
                state.out.print(f"next: {_local(f.instant, schedule.timezone)}", markup=False)
        return
    state.out.print(
        output.table(
            f"Next {next_count} firings of {schedule.name} ({schedule.timezone})",
            ["wall time", "local", "UTC", "DST", "jitter"],
            (
                (
                    f.wall,
                    _local(f.instant, schedule.timezone),
                    output.when(f.instant) if f.instant is not None else "-",
                    f.mark or "",
                    ", ".join(f"{m} +{o:.3f}s" for m, o in f.jitter.items()),
                )
                for f in firings
            ),
        )
    )


def _next_json(firing: Any) -> dict[str, Any]:
    return {
        "wall": firing.wall,
        "utc": output.iso(firing.instant),
        "mark": firing.mark,
        "jitter": firing.jitter,
    }


def _counters_json(counters: dict[str, Any] | None) -> dict[str, Any] | None:
    if counters is None:
        return None
    return {w: {**c, "from": output.iso(c["from"])} for w, c in counters.items()}


def _counts_text(counts: dict[str, Any]) -> str:
    skipped = ", ".join(f"{reason} {n}" for reason, n in counts["skipped"].items()) or "0"
    return f"missed {counts['missed']}, failed {counts['failed']}, skipped {skipped}"


def _shown_fields(schedule: Schedule, defaults: WorkerSettings) -> list[tuple[str, str]]:
    """`schedule show`: every field in words, an unset one as the default it falls back on."""
    shown = []
    for key, value in schedule.to_dict().items():
        if key == "v":
            continue
        if key in ("created", "paused_until", "paused_at"):
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
    ctx: typer.Context,
    name: str = typer.Argument(..., autocompletion=completion.schedules),
    note: str | None = typer.Option(None, "--note", help="Why (shown by `schedule list`)."),
    until: str | None = typer.Option(
        None,
        "--until",
        help="Resume by itself then: a time (ISO, the schedule's zone) or a duration (2h).",
    ),
) -> None:
    """Pause a schedule: its firings are not run, and never caught up."""
    state = use(ctx)
    schedule = state.services.schedules.pause(name, note=note, until=until, by=_who())
    end = (
        f" until {_local(schedule.paused_until, schedule.timezone)}"
        if schedule.paused_until is not None
        else ""
    )
    state.out.success(f"paused schedule [bold]{output.safe_markup(name)}[/bold]{end}")


@app.command("resume")
def resume(
    ctx: typer.Context, name: str = typer.Argument(..., autocompletion=completion.schedules)
) -> None:
    """Resume a paused schedule."""
    state = use(ctx)
    state.services.schedules.resume(name)
    state.out.success(f"resumed schedule [bold]{output.safe_markup(name)}[/bold]")


@app.command("trigger")
def trigger(
    ctx: typer.Context,
    name: str = typer.Argument(..., autocompletion=completion.schedules),
    force: bool = typer.Option(
        False, "--force", help="Run even if the previous run still runs (overlap forbidden)."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Fire the schedule once now, through the workers' normal claim path."""
    state = use(ctx)
    request = state.services.schedules.trigger(name, force=force, by=_who())
    if as_json:
        state.out.print_json({**request.to_dict(), "fire_time": output.iso(request.fire_time)})
        return
    state.out.success(
        f"requested a firing of [bold]{output.safe_markup(name)}[/bold] at "
        f"{output.when(request.fire_time)} UTC{' (forced)' if force else ''}"
    )
    state.out.note("a running `maomao worker` claims it; see `maomao runs`")


@app.command("backfill")
def backfill(
    ctx: typer.Context,
    name: str = typer.Argument(..., autocompletion=completion.schedules),
    start: str = typer.Option(
        ..., "--from", help="First time (ISO, the schedule's zone) or a duration ago."
    ),
    end: str = typer.Option(
        ..., "--to", help="Last time (ISO, the schedule's zone) or a duration ago."
    ),
    missing_only: bool = typer.Option(
        False, "--missing-only", help="Skip fire times that have a succeeded run."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; write nothing."),
    max_parallel: int = typer.Option(1, "--max-parallel", help="Backfill runs at once."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run the schedule's past firings in a range, each once, on the free members."""
    state = use(ctx)
    plan = state.services.schedules.backfill(
        name,
        start=start,
        end=end,
        missing_only=missing_only,
        dry_run=dry_run,
        max_parallel=max_parallel,
        by=_who(),
    )
    chosen = [f for f in plan.firings if f.skip is None]
    if as_json:
        state.out.print_json(
            {
                "schedule": name,
                "dry_run": dry_run,
                "requested": plan.requested,
                "firings": [
                    {"fire_time": output.iso(f.fire_time), "attempt": f.attempt, "skip": f.skip}
                    for f in plan.firings
                ],
            }
        )
        return
    zone_name = plan.schedule.timezone
    for f in plan.firings:
        what = f"skip: {f.skip}" if f.skip else ("would run" if dry_run else "requested")
        state.out.print(output.safe(f"{_local(f.fire_time, zone_name)}  {what}"), markup=False)
    verb = "would request" if dry_run else "requested"
    count = len(chosen) if dry_run else plan.requested
    state.out.success(
        f"{verb} {count} of {len(plan.firings)} firing(s) of [bold]{output.safe_markup(name)}[/bold]"
    )


@app.command("rm")
def rm(
    ctx: typer.Context, name: str = typer.Argument(..., autocompletion=completion.schedules)
) -> None:
    """Remove a schedule (its runs stay)."""
    state = use(ctx)
    state.services.schedules.remove(name)
    state.out.success(f"removed schedule [bold]{output.safe_markup(name)}[/bold]")
