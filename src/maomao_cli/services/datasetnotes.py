"""What a dataset's run commits and its warnings say: the commit message with its
trailers, a merge conflict, the entries of a run that were not copied back."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..models import Dataset, Run, Tool
from . import runcontext

if TYPE_CHECKING:
    from ..gitmodels import PullResult

log = logging.getLogger("maomao.datasets")


def commit_message(tool: Tool, run: Run) -> str:
    """The subject and the trailers of a run's commit: who, what and which firing."""
    when = runcontext.iso_utc(run.finished or time.time())
    fired = run.fire_time if run.fire_time is not None else run.started
    trailers = [
        f"maomao-tool: {tool.name}",
        f"maomao-run: {run.id}",
        f"maomao-member: {run.member}",
        f"maomao-fire-time: {runcontext.iso_utc(fired if fired is not None else time.time())}",
    ]
    if run.schedule:
        trailers.append(f"maomao-schedule: {run.schedule}")
    return f"{tool.name}: run {run.id} by {run.member} at {when}\n\n" + "\n".join(trailers) + "\n"


def conflict_text(dataset: Dataset, result: PullResult) -> str:
    paths = ", ".join(result.conflicts[:5]) + (" ..." if len(result.conflicts) > 5 else "")
    return (
        f"dataset {dataset.name}: not pushed: the remote changed the same file(s) "
        f"({paths or 'unknown'}); local commits stay, resolve with git and push, "
        "or the next run retries"
    )


def skipped_note(dataset: Dataset, tool: Tool, skipped: list[tuple[str, str]]) -> str | None:
    """One warning line per entry the run made that is not copied; a summary for the run."""
    for rel, why in skipped:
        log.warning("dataset %s: %s from tool %s not copied: %s", dataset.name, rel, tool.name, why)
    if not skipped:
        return None
    shown = ", ".join(f"{rel} ({why})" for rel, why in skipped[:5])
    more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    return f"dataset {dataset.name}: not copied from the run: {shown}{more}"
