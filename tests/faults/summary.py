"""The fault suite's summary table, printed at the end of the session.

The verdicts are judged where the faults run, which under pytest-xdist is a worker, and a
worker's terminal is not shown: each test's verdicts also travel to the controller in
its report (user property `fault-verdict`), and the controller prints the table. A
plugin of tests/conftest.py, because the controller never loads tests/faults/conftest.py
(it collects nothing).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from .checks import VERDICTS, Verdict
from .profiles import profile

PROPERTY = "fault-verdict"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    before = len(VERDICTS)
    try:
        return (yield)
    finally:
        item.user_properties.extend((PROPERTY, encode(v)) for v in VERDICTS[before:])


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if getattr(report, "node", None) is None:
        return  # not from an xdist worker: this process ran the test, VERDICTS has it
    if report.when != "call":
        return  # the teardown report carries the same user properties
    for name, value in report.user_properties:
        if name == PROPERTY:
            VERDICTS.append(decode(str(value)))


def encode(verdict: Verdict) -> str:
    # Not dataclasses.asdict: it rebuilds the Counter from (key, count) pairs.
    fields = {f.name: getattr(verdict, f.name) for f in dataclasses.fields(verdict)}
    return json.dumps({**fields, "outcomes": dict(verdict.outcomes)})


def decode(text: str) -> Verdict:
    fields = json.loads(text)
    return Verdict(**{**fields, "outcomes": Counter(fields["outcomes"])})


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not VERDICTS:
        return
    write = terminalreporter.write_line
    write("")
    write(f"fault suite summary (profile {profile().name})")
    header = (
        "fault",
        "firings checked",
        "duplicates",
        "unexplained misses",
        "records missing",
        "data lost",
        "containers left",
    )
    rows = [header, *(_row(v) for v in VERDICTS)]
    total = Verdict("total")
    for v in VERDICTS:
        total.firings += v.firings
        total.duplicates += v.duplicates
        total.unexplained += v.unexplained
        total.missing += v.missing
        total.data_lost += v.data_lost
        total.containers_left += v.containers_left
    rows.append(_row(total))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    for n, row in enumerate(rows):
        write("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            write("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for v in VERDICTS:
        outcomes = ", ".join(f"{k} {n}" for k, n in sorted(v.outcomes.items()))
        # A check of no firings (the clean stop) says what it checked instead.
        write(f"  {v.fault}: {outcomes or f'{v.containers_left} container(s) left'}")
        # Shown even when the fault passed: only the clean stop fails on containers left.
        for line in [d for d in v.details if d.startswith("container left:")][:5]:
            write(f"    {line}")
    write(f"  ({time.strftime('%Y-%m-%d %H:%M:%S')})")


def _row(v: Verdict) -> tuple[str, ...]:
    return (
        v.fault,
        str(v.firings),
        str(v.duplicates),
        str(v.unexplained),
        str(v.missing),
        str(v.data_lost),
        str(v.containers_left),
    )
