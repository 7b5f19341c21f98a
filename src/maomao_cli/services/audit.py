"""Peer validation (the 2019 project's later `Docs/Peer_validation.md`): the members that
ran one firing of an --everywhere schedule compare their snapshots of it.

A snapshot is what a run produced (services/snapshots.py, on the run record): its files by
content hash and its control value. Members whose snapshots are equal agree; the largest
such group is the majority (none on a tie), the rest are the odd ones out, and each file
some member holds differently from the majority is named. A member whose control value is
off the majority's (the median of the members' values) by more than the tool's
tolerance (`--audit-tolerance`, default 0) is a divergence: stored once in etcd under
divergences/<tool>/<epoch>@<member> and notified like a spike (kind "divergence").

Everything compared comes from run records, which any member could have written: only
records of succeeded runs of the tool's --everywhere schedules are used, and one per member
(its newest attempt of the firing).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import field, replace
from typing import Any

from ..errors import BadInput, NotFound
from ..frozen import frozen
from ..keys import Keys
from ..models import FINAL_STATUSES, Divergence, Run, Schedule, Tool
from ..store.base import Store
from .records import load, load_all

log = logging.getLogger("maomao.audit")

# A member's claim of a firing: <epoch>@<member>, or <epoch>@<member>.r<n> for a retry.
_CLAIM = re.compile(r"(\d+)@(.+?)(?:\.r\d+)?")

Notify = Callable[[dict[str, object]], None]


@frozen
class MemberSnapshot:
    member: str
    run_id: str
    files: dict[str, str]
    control: float | None


@frozen
class Audit:
    tool: str
    schedule: str
    fire_time: float
    snapshots: list[MemberSnapshot]
    groups: list[list[str]]  # members with equal snapshots, largest group first
    majority: list[str]  # empty: no majority (a tie)
    odd_ones_out: list[str]
    differing_files: dict[str, list[str]]  # path -> members whose copy is not the majority's
    majority_control: float | None
    divergences: list[Divergence] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "schedule": self.schedule,
            "fire_time": self.fire_time,
            "members": {
                s.member: {"run": s.run_id, "files": s.files, "control": s.control}
                for s in self.snapshots
            },
            "agreeing": self.groups,
            "majority": self.majority,
            "odd_ones_out": self.odd_ones_out,
            "differing_files": self.differing_files,
            "majority_control": self.majority_control,
            "divergences": [d.to_dict() for d in self.divergences],
        }


def compare(
    tool: str, schedule: str, fire_time: float, runs: list[Run], tolerance: float = 0.0
) -> Audit:
    """The audit of one firing from its runs (pure: no store, no clock)."""
    newest: dict[str, Run] = {}
    for run in sorted(runs, key=lambda r: (r.attempt, r.finished or 0.0)):
        newest[run.member] = run
    snaps = [
        MemberSnapshot(m, r.id, dict(r.outputs or {}), r.control) for m, r in sorted(newest.items())
    ]
    by_content: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for snap in snaps:
        by_content.setdefault(tuple(sorted(snap.files.items())), []).append(snap.member)
    groups = sorted(by_content.values(), key=lambda g: (-len(g), g))
    majority = groups[0] if groups and (len(groups) == 1 or len(groups[0]) > len(groups[1])) else []
    odd = sorted(m for g in groups for m in g if m not in majority) if majority else []
    reference = next((s.files for s in snaps if majority and s.member == majority[0]), {})
    differing: dict[str, list[str]] = {}
    if majority:
        for snap in snaps:
            for path in sorted(reference.keys() | snap.files.keys()):
                if snap.files.get(path) != reference.get(path):
                    differing.setdefault(path, []).append(snap.member)
    values = [s.control for s in snaps if s.control is not None]
    import statistics  # decimal and fractions with it: 5 ms on every run's path otherwise

    middle = statistics.median(values) if values else None
    divergences = [
        Divergence(
            tool=tool,
            fire_time=fire_time,
            member=s.member,
            value=s.control,
            majority=middle,
            tolerance=tolerance,
            run_id=s.run_id,
            schedule=schedule,
        )
        for s in snaps
        if s.control is not None and middle is not None and abs(s.control - middle) > tolerance
    ]
    return Audit(
        tool, schedule, fire_time, snaps, groups, majority, odd, differing, middle, divergences
    )


class AuditService:
    def __init__(self, store: Store, keys: Keys, notify: Notify | None = None) -> None:
        self.store = store
        self.keys = keys
        self.notify = notify

    def audit(self, tool: Tool, fire_time: float | None = None, *, record: bool = True) -> Audit:
        """Compare the members' runs of one firing (default: the newest that two or more
        members finished); with `record`, store and notify each new divergence."""
        schedules = {
            s.name
            for s in load_all(self.store, self.keys.schedules(), Schedule)
            if s.tool == tool.name and s.mode == "everywhere"
        }
        if not schedules:
            raise BadInput(
                f"tool {tool.name!r} has no --everywhere schedule: nothing to compare",
                hint=f"schedule it with `maomao run {tool.name} --cron ... --everywhere`",
            )
        runs = [
            r
            for r in load_all(self.store, self.keys.runs(), Run)
            if r.tool == tool.name
            and r.schedule in schedules
            and r.status == "succeeded"
            and r.fire_time is not None
        ]
        firings: dict[tuple[float, str], list[Run]] = {}
        for run in runs:
            assert run.fire_time is not None and run.schedule is not None
            firings.setdefault((run.fire_time, run.schedule), []).append(run)
        chosen = self._choose(tool, firings, fire_time)
        audit = compare(
            tool.name, chosen[1], chosen[0], firings[chosen], tool.audit_tolerance or 0.0
        )
        if record:
            for divergence in audit.divergences:
                self._store(divergence)
        return audit

    def _choose(
        self, tool: Tool, firings: dict[tuple[float, str], list[Run]], fire_time: float | None
    ) -> tuple[float, str]:
        if fire_time is not None:
            found = [key for key in firings if key[0] == fire_time]
            if not found:
                shown = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(fire_time))
                raise NotFound(
                    f"no succeeded run of {tool.name} at the firing {shown}",
                    hint=f"see `maomao runs --tool {tool.name}`",
                )
            return found[0]
        shared = [key for key, runs in firings.items() if len({r.member for r in runs}) > 1]
        if not shared:
            raise NotFound(
                f"no firing of {tool.name} that two or more members ran",
                hint="audit compares the members' runs of one --everywhere firing",
            )
        return max(shared)

    def _store(self, divergence: Divergence) -> None:
        divergence = replace(divergence, found=time.time())
        key = self.keys.divergence(divergence.tool, int(divergence.fire_time), divergence.member)
        if self.store.create(key, divergence.to_json()):
            log.warning(
                "divergence in %s at %s: %s wrote %g, the majority %g (tolerance %g)",
                divergence.tool,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(divergence.fire_time)),
                divergence.member,
                divergence.value,
                divergence.majority,
                divergence.tolerance,
            )
            if self.notify is not None:
                self.notify({"kind": "divergence", **divergence.to_dict()})

    def after_run(self, tool: Tool, run: Run, data_dir: object) -> Run | None:
        """The after-run hook: once every member that claimed this --everywhere firing has
        a finished run of it, audit the firing (each member that finishes last may; the
        divergences are stored once). A retry finishing later audits it again."""
        if run.schedule is None or run.fire_time is None or run.trigger == "manual":
            return None
        schedule = load(self.store, self.keys.schedule(run.schedule), Schedule)
        if schedule is None or schedule.mode != "everywhere":
            return None
        epoch = int(run.fire_time)
        claimed = {
            found.group(2)
            for entry in self.store.scan(self.keys.firings(run.schedule))
            if (found := _CLAIM.fullmatch(self.keys.leaf(entry.key)))
            and int(found.group(1)) == epoch
        }
        finished = {
            r.member
            for r in load_all(self.store, self.keys.runs(), Run)
            if r.schedule == run.schedule
            and r.fire_time == run.fire_time
            and r.status in FINAL_STATUSES
        }
        if len(claimed) < 2 or not claimed <= finished:
            return None
        try:
            self.audit(tool, run.fire_time)
        except (BadInput, NotFound) as exc:
            log.info("audit of %s at %s skipped: %s", tool.name, epoch, exc)
        return None

    def stored(self, tool: str | None = None) -> list[Divergence]:
        prefix = self.keys.divergences(tool) if tool else self.keys.divergences()
        found = load_all(self.store, prefix, Divergence)
        return sorted(found, key=lambda d: (d.fire_time, d.tool, d.member), reverse=True)
