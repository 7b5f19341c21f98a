"""`maomao worker` and `maomao members`."""

from __future__ import annotations

import signal
import sys
import threading
import time
from types import FrameType

import typer

from ..errors import Unhealthy
from . import output
from .output import Output
from .state import use


def _setup_worker_logging(out: Output) -> None:
    import logging

    logger = logging.getLogger("maomao")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(
            console=out.err_console, show_path=False, markup=False, log_time_format="%H:%M:%S"
        )
        handler.setFormatter(output.safe_formatter("%(message)s"))
    else:
        # Plain, one line per event: for journald, files and pipes.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            output.safe_formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
        )
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


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
) -> None:
    """Run the worker: follow schedules, claim due firings, run tools, detect spikes."""
    state = use(ctx)
    from .. import validation

    context = state.services
    settings = context.settings
    if check:
        from ..services.worker import check_health

        alive, message = check_health(
            context.store, context.keys, settings.member, settings.worker.lease_ttl, time.time()
        )
        if not alive:
            raise Unhealthy(message)
        state.out.print(message)
        return
    member_labels = validation.labels(labels) if labels else None
    _setup_worker_logging(state.out)
    worker_service = context.make_worker(labels=member_labels, max_parallel=max_parallel)

    stop = threading.Event()
    signals_seen = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            state.out.note(
                f"{signal.Signals(signum).name}: finishing running runs (again to stop them now)"
            )
            stop.set()
        else:
            worker_service.hurry()

    # The spike check needs scipy, which takes seconds to import: load it now, beside the
    # start-up, rather than inside the first run (where it would hold the overlap guard).
    threading.Thread(target=_warm_detector, name="warm-up", daemon=True).start()
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    worker_service.run(stop)
    from ..processes import exit_when_threads_linger

    exit_when_threads_linger()


def _warm_detector() -> None:
    import numpy  # noqa: F401
    import scipy.ndimage
    import scipy.signal  # noqa: F401


def members(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print a JSON array.")
) -> None:
    """List the live members (workers) of the collaboration."""
    state = use(ctx)
    from ..services.members import live_members

    context = state.services
    found = live_members(context.store, context.keys)
    if as_json:
        state.out.print_json([m.to_dict() for m in found])
        return
    if not found:
        state.out.note("no live members; start one with `maomao worker`")
        return
    state.out.print(
        output.table(
            "Members",
            ["member", "host", "labels", "version", "started", "running"],
            (
                (
                    m.name,
                    m.host,
                    ",".join(f"{k}={v}" for k, v in m.labels.items()) or "-",
                    m.version,
                    output.when(m.started),
                    m.running,
                )
                for m in found
            ),
        )
    )
