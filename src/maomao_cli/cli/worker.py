"""`maomao worker` and `maomao members`."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

import typer

from ..errors import Unhealthy
from . import logformat, output
from .state import use


def worker(
    ctx: typer.Context,
    labels: str | None = typer.Option(
        None, "--labels", help="Member labels k=v,k2=v2 (schedules can target them with --on)."
    ),
    max_parallel: int | None = typer.Option(
        None, "--max-parallel", min=1, help="Runs at once on this member."
    ),
    check: bool = typer.Option(
        False, "--check", help="Exit 0 if this host's worker is alive, 1 otherwise."
    ),
    metrics: str | None = typer.Option(
        None,
        "--metrics",
        metavar="[HOST:]PORT",
        help="Serve Prometheus metrics on /metrics (a port alone: on loopback; default "
        "[worker] metrics, off).",
    ),
    log_format: str | None = typer.Option(
        None,
        "--log-format",
        metavar="text|json",
        help="Log as plain text or one JSON object per line (default [worker] log_format).",
    ),
) -> None:
    """Run the worker: follow schedules, claim due firings, run tools, detect spikes."""
    state = use(ctx)
    from .. import validation

    context = state.services
    settings = context.settings
    if check:
        from ..services.worker import check_health

        alive, message = check_health(
            context.store,
            context.keys,
            settings.member,
            settings.worker.lease_ttl,
            time.time(),
            settings.worker.max_clock_offset,
        )
        if not alive:
            raise Unhealthy(message)
        state.out.print(message)
        return
    member_labels = validation.labels(labels) if labels else None
    fmt = logformat.log_format(log_format, settings.worker.log_format)
    logformat.setup(state.out, fmt, member=settings.member)
    observing = context.observe_worker(metrics)
    if observing.metrics_address is not None:
        logging.getLogger("maomao.worker").info(
            "metrics on http://%s/metrics", observing.metrics_address
        )
    # The spike check needs scipy, which takes seconds of CPU to import: a worker loads it
    # when it wins its first firing, beside the container's run, rather than inside the
    # run's after-run hook (where it would hold the overlap guard); one that never runs a
    # tool never loads it.
    from ..services.worker.observer import Observers
    from ..services.worker.warmup import WarmDetector

    observers = [o for o in (observing.observer, WarmDetector()) if o is not None]
    worker_service = context.make_worker(
        labels=member_labels, max_parallel=max_parallel, observer=Observers(observers)
    )

    stop = threading.Event()
    signals_seen = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            logging.getLogger("maomao.worker").info(
                "%s: stopping; running runs finish first (%s again stops them now)",
                name,
                name,
                extra={"event": "signal"},
            )
            stop.set()
        else:
            worker_service.hurry()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        worker_service.run(stop)
    finally:
        observing.close()
    from ..processes import end_stopped_worker

    end_stopped_worker()


def _clock(offset: float | None) -> str:
    """How far the member's clock is off the collaboration's, by its own estimate."""
    return "-" if offset is None else f"{offset:+.2f}s"


def members(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
    wide: bool = typer.Option(False, "--wide", help="Every column, however wide the terminal."),
) -> None:
    """List the live members (workers) of the collaboration."""
    state = use(ctx)
    from ..services.members import live_members

    context = state.services
    found = live_members(context.store, context.keys)
    if as_json:
        state.out.print_json([output.iso_times(m.to_dict(), "started", "heartbeat") for m in found])
        return
    if not found:
        state.out.note("no live members; start one with `maomao worker`")
        return
    state.out.print_table(
        output.table(
            "Members",
            ["member", "host", "labels", "version", "started", "running", "clock"],
            (
                (
                    m.name,
                    m.host,
                    ",".join(f"{k}={v}" for k, v in m.labels.items()) or "-",
                    m.version,
                    output.when(m.started),
                    m.running,
                    _clock(m.clock_offset),
                )
                for m in found
            ),
            whole=("member", "started"),
            optional=("version", "labels", "host", "started"),
            width=state.out.fit(wide),
        ),
        wide=wide,
    )
