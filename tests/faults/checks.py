"""The verdict on one fault: pure functions over run records, no I/O.

A firing is one fire time of the every-second schedule. Inside the measured window each
firing must have run exactly once (one `succeeded` record), or be explained: its last
record is `skipped` with a reason, or `lost`/`failed`/`timed-out` with a reason and either
a later attempt recorded or its attempts used up. A firing without a record of its own is
explained when a catch-up run coalesced it ("coalesced N missed firings (from to)"): the
worker could not claim it (etcd unreachable) and ran the newest of the stretch instead.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

RETRYABLE = {"lost", "failed", "timed-out"}
_COALESCED = re.compile(
    r"coalesced \d+ missed firings \((\d\d):(\d\d):(\d\d) to (\d\d):(\d\d):(\d\d)\)"
)
FINAL = {"succeeded", "skipped", *RETRYABLE}


@dataclass
class Verdict:
    fault: str
    firings: int = 0
    duplicates: int = 0
    unexplained: int = 0
    missing: int = 0
    data_lost: int = 0
    containers_left: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    details: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.duplicates or self.unexplained or self.missing or self.data_lost)


def epoch(value: Any) -> float:
    """A record's fire_time (ISO text from `runs --json`, or a number) as epoch seconds."""
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def by_fire_time(runs: list[dict[str, Any]], schedule: str) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        if run.get("schedule") == schedule and run.get("fire_time") is not None:
            grouped[round(epoch(run["fire_time"]))].append(run)
    return grouped


def coalesced(runs: list[dict[str, Any]], schedule: str) -> set[int]:
    """The seconds covered by the catch-up runs of `schedule`: each stands for the missed
    firings of its stretch (the note gives its first and last fire time, UTC, HH:MM:SS)."""
    covered: set[int] = set()
    for run in runs:
        if run.get("schedule") != schedule or run.get("trigger") != "catch-up":
            continue
        found = _COALESCED.search(run.get("warning") or "")
        if found is None or run.get("fire_time") is None:
            continue
        h1, m1, s1, h2, m2, s2 = (int(g) for g in found.groups())
        span = ((h2 - h1) * 3600 + (m2 - m1) * 60 + (s2 - s1)) % 86400
        fire = round(epoch(run["fire_time"]))
        covered.update(range(fire - span, fire + 1))
    return covered


def settled(
    runs: list[dict[str, Any]], schedule: str, window: tuple[int, int], retries: int
) -> bool:
    """True when every firing in the window has a record and nothing is still to come:
    no record is running and every retryable failure has its retry or is used up."""
    grouped = by_fire_time(runs, schedule)
    covered = coalesced(runs, schedule)
    for fire in range(window[0], window[1] + 1):
        records = grouped.get(fire)
        if not records:
            if fire in covered:
                continue
            return False
        if any(r["status"] not in FINAL for r in records):
            return False
        if any(r["status"] == "succeeded" for r in records):
            continue
        last = max(records, key=lambda r: r["attempt"])
        if last["status"] in RETRYABLE and last["attempt"] <= retries:
            return False
    return True


def judge(
    fault: str,
    runs: list[dict[str, Any]],
    schedule: str,
    window: tuple[int, int],
    retries: int,
) -> Verdict:
    verdict = Verdict(fault)
    grouped = by_fire_time(runs, schedule)
    covered = coalesced(runs, schedule)
    for fire in range(window[0], window[1] + 1):
        verdict.firings += 1
        records = grouped.get(fire, [])
        if not records and fire in covered:
            verdict.outcomes["coalesced into a catch-up"] += 1
            continue
        if not records:
            verdict.missing += 1
            verdict.details.append(f"{fire}: no record")
            continue
        per_attempt = Counter(r["attempt"] for r in records)
        succeeded = [r for r in records if r["status"] == "succeeded"]
        if len(succeeded) > 1 or max(per_attempt.values()) > 1:
            verdict.duplicates += 1
            verdict.details.append(f"{fire}: ran twice {_brief(records)}")
        if succeeded:
            verdict.outcomes["succeeded" if len(records) == 1 else "succeeded on retry"] += 1
            continue
        last = max(records, key=lambda r: r["attempt"])
        verdict.outcomes[str(last["status"])] += 1
        if _explained(records, last, retries):
            continue
        verdict.unexplained += 1
        verdict.details.append(f"{fire}: not run, not explained {_brief(records)}")
    return verdict


def _explained(records: list[dict[str, Any]], last: dict[str, Any], retries: int) -> bool:
    if not all(r.get("error") for r in records):
        return False  # every record that is not a success says why
    if last["status"] == "skipped":
        return True
    # A lost or failed firing was retried until its attempts were used up.
    return last["status"] in RETRYABLE and last["attempt"] > retries


def _brief(records: list[dict[str, Any]]) -> str:
    return str(
        sorted(
            (r["attempt"], r["status"], r.get("member"), (r.get("error") or "")[:160])
            for r in records
        )
    )


VERDICTS: list[Verdict] = []  # filled by the tests, printed by conftest
