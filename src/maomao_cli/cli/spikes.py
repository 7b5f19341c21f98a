"""`maomao spikes`: stored spikes as a table, live follow, recompute, any CSV, charts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..errors import BadInput
from ..frozen import frozen
from . import completion, output
from .state import CliState, use

if TYPE_CHECKING:
    from ..detect.detector import Verdict
    from ..models import Spike


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def _row(s: Spike) -> list[Any]:
    arrow = output.styled("▲ up", "red") if s.direction == "up" else output.styled("▼ down", "blue")
    return [
        s.tool,
        s.sortable,
        f"{s.value:.6g}",
        f"{s.baseline:.6g}",
        _pct(s.deviation_pct),
        f"{s.score:.1f}",
        arrow,
        s.member or "-",
        s.run_id or "-",
    ]


COLUMNS = ["tool", "time", "value", "baseline", "deviation", "score", "direction", "member", "run"]


def _table(title: str, found: list[Spike], width: int | None) -> Any:
    return output.table(
        title,
        COLUMNS,
        (_row(s) for s in found),
        whole=("tool", "time", "run"),
        optional=("baseline", "member", "score", "deviation", "direction", "value", "tool"),
        width=width,
    )


def _as_json(spike: Spike) -> dict[str, Any]:
    return output.iso_times(spike.to_dict(), "found")


def spikes(
    ctx: typer.Context,
    tool: str | None = typer.Option(
        None,
        "--tool",
        "-t",
        help="The tool whose spikes to show.",
        autocompletion=completion.tools,
    ),
    all_tools: bool = typer.Option(False, "--all", help="Every tool's spikes."),
    since: str | None = typer.Option(
        None, "--since", help="Only spikes at or after this time (ISO, e.g. 2026-11-01)."
    ),
    member: str | None = typer.Option(
        None, "--member", "-m", help="Only the spikes found in this member's runs."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Print each new spike as it is stored."
    ),
    recompute: bool = typer.Option(
        False, "--recompute", help="Run the detector over the tool's local history."
    ),
    csv_file: Path | None = typer.Option(
        None, "--csv", help="Detect in a CSV with columns timestamp,value."
    ),
    directory: Path | None = typer.Option(
        None, "--dir", help="Detect in a folder of control-*.csv files."
    ),
    method: str | None = typer.Option(
        None, "--method", help="robust (default) or seed (the 2019 rule)."
    ),
    sensitivity: float | None = typer.Option(
        None, "--sensitivity", help="Higher finds more spikes."
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", help="Relative gain for --method seed, e.g. 0.06."
    ),
    chart: bool = typer.Option(
        False, "--chart", help="Draw the series with spikes marked in the terminal."
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write a PNG chart (needs matplotlib: pip install 'maomao-cli[plot]')."
    ),
    explain: bool = typer.Option(
        False,
        "--explain",
        help="Say why the newest point is or is not a spike (with --json: an object "
        "with the spikes and the explanation).",
    ),
    wide: bool = typer.Option(False, "--wide", help="Every column, however wide the terminal."),
) -> None:
    """Spikes in a tool's control metric: list what workers found, follow, or detect anew."""
    state = use(ctx)
    if method is not None and method not in ("robust", "seed"):
        raise BadInput(f"invalid --method {method!r}: expected robust or seed")
    if csv_file is not None or directory is not None:
        options = _Options(method, sensitivity, threshold, as_json, explain)
        _detect_path(state, csv_file, directory, options)
        return
    if tool is None and not all_tools and not follow:
        raise BadInput(
            "name a tool with --tool NAME, or use --all, --follow, --csv FILE or --dir DIR"
        )
    context = state.services
    if tool is not None:
        from .. import validation

        # Checked before any key is built from it: `--tool $'\xff'` is bad input, not a
        # key etcd's client cannot encode.
        validation.name(tool, "tool name")
        context.registry.get_tool(tool) if recompute or chart or plot else None
    if follow:
        _follow(state, tool, as_json)
        return
    if recompute or chart or plot:
        assert tool is not None
        _recompute(
            state, tool, method, sensitivity, threshold, as_json, chart, plot, show_table=recompute
        )
        return
    found = _stored(state, None if all_tools else tool, since, member)
    verdict = None
    if tool is not None and not all_tools and (explain or (not found and not as_json)):
        verdict = _tool_verdict(state, tool, method, sensitivity, threshold)
    if as_json:
        rows = [_as_json(s) for s in found]
        if explain:
            state.out.print_json(
                {"spikes": rows, "explanation": verdict.to_dict() if verdict else None}
            )
        else:
            state.out.print_json(rows)
        return
    if not found:
        state.out.note(f"no spikes stored{' for ' + tool if tool else ''}")
    else:
        state.out.print_table(
            _table("Spikes (newest first)", found, state.out.fit(wide)), wide=wide
        )
    if verdict is not None:
        from ..services.spikes import describe

        state.out.note(output.safe(f"newest point of {tool}'s local series: {describe(verdict)}"))


def _stored(
    state: CliState, tool: str | None, since: str | None, member: str | None
) -> list[Spike]:
    if member is not None:
        from .. import validation

        validation.name(member, "member name")
    return state.services.spikes.stored(tool, since, member)


def _tool_verdict(
    state: CliState,
    name: str,
    method: str | None,
    sensitivity: float | None,
    threshold: float | None,
) -> Verdict | None:
    """The verdict on the newest point of the tool's series on this member, if any."""
    from ..errors import NotFound

    context = state.services
    try:
        tool = context.registry.get_tool(name)
    except NotFound:
        return None
    params = context.spikes.params(
        tool, method=method, sensitivity=sensitivity, seed_threshold=threshold
    )
    return context.spikes.explain(tool, context.runs.data_dir_for(tool), params)


def _follow(state: CliState, tool: str | None, as_json: bool) -> None:
    import sys

    followed = state.services.spikes.follow(tool)  # the watch is open from here on
    state.out.note(f"following new spikes{' of ' + tool if tool else ''}; Ctrl-C to stop")
    try:
        for spike in followed:
            if as_json:
                sys.stdout.write(__import__("json").dumps(_as_json(spike)) + "\n")
                sys.stdout.flush()
            else:
                line = (
                    f"{spike.sortable}  {spike.tool}  {spike.direction}  value {spike.value:.6g} "
                    f"baseline {spike.baseline:.6g} ({_pct(spike.deviation_pct)}) score {spike.score:.1f} "
                    f"on {spike.member or '-'}"
                )
                state.out.print(output.safe(line), markup=False)
    except KeyboardInterrupt:
        return


def _recompute(
    state: CliState,
    tool_name: str,
    method: str | None,
    sensitivity: float | None,
    threshold: float | None,
    as_json: bool,
    chart: bool,
    plot: Path | None,
    *,
    show_table: bool,
) -> None:
    context = state.services
    tool = context.registry.get_tool(tool_name)
    params = context.spikes.params(
        tool, method=method, sensitivity=sensitivity, seed_threshold=threshold
    )
    data_dir = context.runs.data_dir_for(tool)
    result, skipped = context.spikes.recompute(tool, data_dir, params)
    for name, reason in skipped:
        state.out.note(f"skipped {name}: {reason}")
    if chart or plot:
        from ..detect.series import read_control_dir
        from .charts import terminal_chart, write_png

        points = read_control_dir(data_dir).points
        marks = {s.sortable: s.direction for s in result.found}
        if chart:
            state.out.print(terminal_chart(points, marks, title=f"{tool.name} control metric"))
        if plot:
            write_png(points, marks, plot, title=f"{tool.name} control metric")
            state.out.success(f"wrote {output.safe_markup(str(plot))}")
        if not show_table:
            return
    if as_json:
        state.out.print_json(
            {"found": [_as_json(s) for s in result.found], "new": result.new, "gone": result.gone}
        )
        return
    state.out.print(_table(f"Recomputed ({params.method})", result.found, state.out.fit(False)))
    if result.new or result.gone:
        state.out.note(
            f"differences from what is stored: {len(result.new)} new {result.new[:5]}, "
            f"{len(result.gone)} no longer found {result.gone[:5]}"
        )
    else:
        state.out.note("same as what is stored")


@frozen
class _Options:
    method: str | None
    sensitivity: float | None
    threshold: float | None
    as_json: bool
    explain: bool


def _detect_path(
    state: CliState, csv_file: Path | None, directory: Path | None, options: _Options
) -> None:
    from ..services.spikes import describe, detect_points, detector_params

    if csv_file is not None and directory is not None:
        raise BadInput("give --csv or --dir, not both")
    params = detector_params(
        state.services.settings.spikes,
        method=options.method,
        sensitivity=options.sensitivity,
        seed_threshold=options.threshold,
    )
    path = csv_file if csv_file is not None else directory
    assert path is not None
    result = detect_points(path, is_dir=directory is not None, params=params)
    for name, reason in result.skipped[:20]:
        state.out.note(f"skipped {name}: {reason}")
    rows: list[dict[str, Any]] = [
        {
            "index": d.index,
            "timestamp": d.sortable,
            "value": d.value,
            "baseline": d.baseline,
            "deviation": d.deviation,
            "deviation_pct": d.deviation_pct,
            "direction": d.direction,
            "score": d.score,
            "rule": d.rule,
        }
        for d in result.found
    ]
    if options.as_json:
        # The array alone unless --explain: scorers (nab_eval.py) parse it.
        if options.explain:
            state.out.print_json({"spikes": rows, "explanation": result.verdict.to_dict()})
        else:
            state.out.print_json(rows)
        return
    if not rows:
        state.out.note(f"no spikes found: {describe(result.verdict)}")
        return
    state.out.print(
        output.table(
            "Spikes",
            ["index", "timestamp", "value", "baseline", "deviation", "score", "direction", "rule"],
            (
                [
                    r["index"],
                    r["timestamp"],
                    f"{r['value']:.6g}",
                    f"{r['baseline']:.6g}",
                    _pct(r["deviation_pct"]),
                    f"{r['score']:.1f}",
                    r["direction"],
                    r["rule"],
                ]
                for r in rows
            ),
        )
    )
    if options.explain:
        state.out.note(f"newest point: {describe(result.verdict)}")
