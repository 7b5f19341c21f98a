"""`maomao audit TOOL`: compare the members' snapshots of one --everywhere firing."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from ..errors import BadInput
from . import output
from .state import use


def _firing(text: str) -> float:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(
            f"invalid --firing {text!r}: expected an ISO 8601 time such as 2026-12-01T09:00:03Z"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def audit(
    ctx: typer.Context,
    tool: str = typer.Argument(..., help="Tool name."),
    firing: str | None = typer.Option(
        None,
        "--firing",
        help="The firing's nominal time, ISO 8601 (default: the newest "
        "that two or more members ran).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Compare the members' snapshots of one --everywhere firing: which members agree,
    the majority, the odd ones out, the files that differ; a control value off the
    majority's by more than the tool's --audit-tolerance is stored as a divergence."""
    state = use(ctx)
    if as_json:
        state.out.json_mode = True
    fire_time = _firing(firing) if firing is not None else None
    registered = state.services.registry.get_tool(tool)
    found = state.services.audit.audit(registered, fire_time)
    if as_json:
        state.out.print_json(found.to_dict())
        return
    escape = output.safe_markup
    when = output.iso(found.fire_time)
    state.out.print(
        f"[bold]{escape(found.tool)}[/bold] firing {when} of {escape(found.schedule)}: "
        f"{len(found.snapshots)} member(s)",
        markup=True,
    )
    odd = set(found.odd_ones_out)
    diverged = {d.member for d in found.divergences}
    state.out.print(
        output.table(
            "Snapshots",
            ["member", "run", "files", "control", "verdict"],
            (
                (
                    s.member,
                    s.run_id,
                    str(len(s.files)),
                    "-" if s.control is None else f"{s.control:g}",
                    _verdict(s.member in odd, s.member in diverged, bool(found.majority)),
                )
                for s in found.snapshots
            ),
        )
    )
    if not found.majority:
        state.out.note("no majority: the snapshots split evenly")
    elif odd:
        state.out.note("odd one(s) out: " + ", ".join(sorted(odd)))
    else:
        state.out.success("every member's snapshot agrees")
    for path, members in list(found.differing_files.items())[:20]:
        state.out.note(escape(f"differs: {path} on {', '.join(members)}"))
    for d in found.divergences:
        state.out.note(
            escape(
                f"divergence: {d.member} wrote {d.value:g}, the majority {d.majority:g} "
                f"(tolerance {d.tolerance:g})"
            )
        )


def _verdict(is_odd: bool, diverged: bool, has_majority: bool) -> object:
    if diverged:
        return output.styled("divergent", "red")
    if is_odd:
        return output.styled("odd one out", "yellow")
    return "agrees" if has_majority else "-"
