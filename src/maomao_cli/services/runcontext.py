"""The run context a tool sees in its environment: who and when it is (docs/tools.md).

A tool names its files from these (per member and firing, so members never collide) and
keeps any state per member. maomao sets them after the tool's own --env values, so a
registration cannot make a run claim another member, firing or run id.
"""

from __future__ import annotations

import time

from ..models import Run

PREFIX = "MAOMAO_"


def iso_utc(epoch: float) -> str:
    """ISO 8601 in UTC, to the second: 2026-12-01T09:01:45Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def environment(run: Run) -> dict[str, str]:
    """MAOMAO_RUN_ID, _MEMBER, _TOOL, _SCHEDULE, _FIRE_TIME, _TRIGGER, _ATTEMPT of a run.
    The fire time is the nominal one of a scheduled run (not when it started); a manual
    run's is its start. A manual run's schedule is empty."""
    nominal = run.fire_time if run.fire_time is not None else run.started
    return {
        "MAOMAO_RUN_ID": run.id,
        "MAOMAO_MEMBER": run.member,
        "MAOMAO_TOOL": run.tool,
        "MAOMAO_SCHEDULE": run.schedule or "",
        "MAOMAO_FIRE_TIME": iso_utc(nominal if nominal is not None else time.time()),
        "MAOMAO_TRIGGER": run.trigger,
        "MAOMAO_ATTEMPT": str(run.attempt),
    }


def with_context(tool_env: dict[str, str], run: Run) -> dict[str, str]:
    """The tool's environment with the run context on top (a tool's MAOMAO_* is dropped)."""
    own = {k: v for k, v in tool_env.items() if not k.startswith(PREFIX)}
    return {**own, **environment(run)}
