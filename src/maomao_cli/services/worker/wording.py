"""How the worker says what became of a firing: the reasons its records give and the
fields of its log lines."""

from __future__ import annotations

import time

from ...models import Schedule
from .timetable import Due


def coalesced_note(due: Due) -> str:
    if due.coalesced is None:
        return "catch-up of the newest missed firing; older missed ones are not replayed"
    first = hms(due.missed_from if due.missed_from is not None else due.fire_time)
    return f"coalesced {due.coalesced} missed firings ({first} to {hms(due.fire_time)})"


def missed_reason(due: Due, late_by: float, grace: float) -> str:
    if due.coalesced is not None and due.coalesced > 1:
        first = hms(due.missed_from if due.missed_from is not None else due.fire_time)
        return (
            f"missed: {due.coalesced} firings ({first} to {hms(due.fire_time)}) could not be "
            f"claimed; the newest is {late_by:.0f}s old, beyond the grace window of {grace:.0f}s"
        )
    return f"missed: ran {late_by:.0f}s late, beyond the grace window of {grace:.0f}s"


def log_fields(event: str, schedule: Schedule, due: Due, **more: object) -> dict[str, object]:
    """The fields of a log line about a firing (shown by --log-format json)."""
    return {
        "event": event,
        "schedule": schedule.name,
        "tool": schedule.tool,
        "nominal": due.fire_time,
        "attempt": due.attempt,
        **{key: value for key, value in more.items() if value is not None},
    }


def hms(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch))
