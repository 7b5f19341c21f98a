"""`maomao coverage`: which expected firings produced a run, and which did not, and why."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import typer

from . import output
from .state import use

if TYPE_CHECKING:
    from ..services.coverage import Coverage

STRIP_WIDTH = 56  # days per strip line: with its label it fits 80 columns
GAPS_SHOWN = 10

ORDER = ("succeeded", "running", "failed", "lost", "skipped", "missed", "paused", "unknown")


def coverage(
    ctx: typer.Context,
    tool: str | None = typer.Option(None, "--tool", help="Only this tool's schedules."),
    member: str | None = typer.Option(
        None, "--member", help="Only this member's firings (mode everywhere)."
    ),
    since: str | None = typer.Option(
        None, "--since", help="Start: a duration ago (7d, 12h) or an ISO time; default 7d."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """Expected firings per schedule against what happened: gaps and a per-day strip."""
    state = use(ctx)
    found = state.services.coverage.report(tool=tool, member=member, since=since)
    if as_json:
        state.out.print_json([_json(c) for c in found])
        return
    if not found:
        state.out.note("no schedules; create one with `maomao run TOOL --daily`")
        return
    for item in found:
        _render(state.out, item)
    state.out.print(
        "strip: one mark a day: # all ran, + some, x none, p paused, . none expected",
        markup=False,
    )


def _json(item: Coverage) -> dict[str, object]:
    data = item.to_dict()
    data["from"], data["to"] = output.iso(item.start), output.iso(item.end)
    for entry in (*data["gaps"], *data["firings"]):
        for key in ("start", "end", "fire_time"):
            if key in entry:
                entry[key] = output.iso(entry[key])
    return data


def _local(epoch: float, zone_name: str) -> str:
    from ..scheduling import zone

    return datetime.fromtimestamp(epoch, zone(zone_name)).strftime("%Y-%m-%d %H:%M")


def _render(out: output.Output, item: Coverage) -> None:
    s = item.schedule
    counts = item.counts
    summary = ", ".join(f"{k} {counts[k]}" for k in ORDER if counts.get(k))
    out.print(
        output.safe(f"{s.name} ({s.tool}, {s.mode}): {len(item.slots)} expected; {summary}"),
        markup=False,
    )
    members: list[str | None] = [*sorted({x.member for x in item.slots if x.member})] or [None]
    for who in members:
        marks = "".join(mark for _, mark in item.days(who))
        label = f"  {who[:12]:<12} " if who else "  "
        for start in range(0, max(len(marks), 1), STRIP_WIDTH):
            out.print(output.safe(f"{label}{marks[start : start + STRIP_WIDTH]}"), markup=False)
            label = " " * len(label)
    gaps = item.gaps()
    for gap in gaps[:GAPS_SHOWN]:
        span = _local(gap.start, s.timezone)
        if gap.end != gap.start:
            span += f" .. {_local(gap.end, s.timezone)}"
        who = f" {gap.member}" if gap.member else ""
        reason = f": {gap.reason}" if gap.reason else ""
        out.print(
            output.safe(f"  gap{who} {span} ({gap.count}) {gap.outcome}{reason}"[:79]),
            markup=False,
        )
    if len(gaps) > GAPS_SHOWN:
        out.print(f"  ... {len(gaps) - GAPS_SHOWN} more gap(s); see --json", markup=False)
