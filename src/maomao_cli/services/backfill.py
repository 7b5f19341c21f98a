"""Backfill planning: which nominal fire times in a range get a requested firing, at which
attempt, and why the others are left alone. Pure: it is given the schedule's clock, the
claims and requests already there, and the runs, and decides.

Rules (docs/scheduling.md, "Backfill"):
- a nominal time with a running run is left alone (it is being run);
- `--missing-only`: one with a succeeded run is left alone; one claimed before without
  a succeeded run (failed, lost, skipped, or its record deleted) is run again as the
  next attempt of that firing, so the claim path still takes it once;
- otherwise one claimed before is left alone (it was run, or is being run), and an
  unclaimed one (never fired, or its claim expired after [worker] firings_ttl) is run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..frozen import frozen
from ..models import Run
from ..scheduling import CronClock

# <epoch>[@member][.r<attempt>]: a firing key's leaf (keys.py); and a request's.
_FIRING_LEAF = re.compile(r"(\d+)(?:@[^.]+)?(?:\.r(\d+))?")
_REQUEST_LEAF = re.compile(r"(\d+)-a(\d+)")


@frozen
class Planned:
    fire_time: float
    attempt: int
    skip: str | None  # why it is left alone; None: it is requested


def nominal_times(clock: CronClock, start: float, end: float, limit: int) -> list[float]:
    """Fire times in [start, end], at most `limit` + 1 (one more says: too many)."""
    return clock.between(start - 1e-6, end, limit + 1)


def claimed_attempts(firing_leaves: Iterable[str], request_leaves: Iterable[str]) -> dict[int, int]:
    """The highest attempt claimed or requested per nominal epoch."""
    highest: dict[int, int] = {}
    for leaf in firing_leaves:
        match = _FIRING_LEAF.fullmatch(leaf)
        if match:
            epoch, attempt = int(match[1]), int(match[2] or 1)
            highest[epoch] = max(highest.get(epoch, 0), attempt)
    for leaf in request_leaves:
        match = _REQUEST_LEAF.fullmatch(leaf)
        if match:
            epoch, attempt = int(match[1]), int(match[2])
            highest[epoch] = max(highest.get(epoch, 0), attempt)
    return highest


def plan(
    times: list[float], *, claimed: dict[int, int], runs: list[Run], missing_only: bool
) -> list[Planned]:
    statuses: dict[int, set[str]] = {}
    for run in runs:
        if run.fire_time is not None:
            statuses.setdefault(int(run.fire_time), set()).add(run.status)
    planned = []
    for fire in times:
        epoch = int(fire)
        seen = statuses.get(epoch, set())
        before = claimed.get(epoch, 0)
        if "running" in seen:
            planned.append(Planned(fire, before, "running now"))
        elif missing_only and "succeeded" in seen:
            planned.append(Planned(fire, before, "succeeded already"))
        elif before and not missing_only:
            planned.append(Planned(fire, before, f"claimed already (attempt {before})"))
        else:
            planned.append(Planned(fire, before + 1, None))
    return planned


def request_leaf(fire_time: float, attempt: int) -> str:
    return f"{int(fire_time)}-a{attempt}"
