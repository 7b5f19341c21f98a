"""Which tests must share one pytest-xdist worker, and the scheduler that keeps them there
(`--dist loadgroup`, as scripts/test.sh runs the suite).

xdist's own `xdist_group` mark does nothing under pytest 9.2: xdist 3.8 tags each item by
assigning `item._nodeid`, which pytest no longer reads, so marked tests spread over every
worker (each fault test then built a rig of its own). The groups are named here instead,
by module, and this scheduler reads them from the test ids the workers report: every
other test is its own unit.

The order keeps the suite short. The few longest units (over FIRST seconds in
tests/durations.json, the times of a measured run) go out first, so none of them starts
near the end; the rest in collection order, which mixes heavy scenario tests with light
ones (all the heavy ones at once slowed each other: the tests' summed time grew by a
quarter). An xdist worker starts a test only once it knows the next one, so each worker
holds one test waiting behind the one it runs: behind a long one (over LONG seconds) goes
the shortest unit left, never another long one. Refresh the times with
`bash scripts/test.sh --store-durations tests/durations.json`.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadGroupScheduling

DURATIONS = Path(__file__).with_name("durations.json")
# A unit expected to take this long gets the shortest unit left queued behind it.
LONG = 10.0
# Units expected to take this long go out before all others.
FIRST = 80.0
# Tests faster than this are not worth a line in durations.json.
WORTH_KEEPING = 2.0

# The modules whose tests must all run in one worker process, in order, and why.
GROUPS = {
    # Its faults run in order on one rig (a session fixture), the last one stopping it.
    "tests/faults/test_faults.py": "faults",
}


def group_of(nodeid: str) -> str | None:
    return GROUPS.get(nodeid.split("::", 1)[0])


def expected_durations(path: Path = DURATIONS) -> dict[str, float]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # no measure: collection order, as xdist itself would
    return {str(k): float(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


class ModuleGroups(LoadGroupScheduling):  # type: ignore[misc]
    """xdist's loadgroup scheduler, with the groups taken from GROUPS and the units sent
    longest first, never a long one queued behind another."""

    def __init__(self, config: Any, log: Any = None, expected: dict[str, float] | None = None):
        super().__init__(config, log)
        self.expected = expected_durations() if expected is None else expected
        self.ordered = False

    def _split_scope(self, nodeid: str) -> str:
        group = group_of(nodeid)
        return group if group is not None else str(super()._split_scope(nodeid))

    def seconds(self, work_unit: dict[str, bool]) -> float:
        """Expected seconds of a unit's tests that have not run yet."""
        return sum(self.expected.get(nodeid, 0.0) for nodeid, done in work_unit.items() if not done)

    def rank(self, unit: tuple[str, dict[str, bool]]) -> float:
        """The longest units first, longest of all first; the others as collected."""
        seconds = self.seconds(unit[1])
        return -seconds if seconds >= FIRST else 0.0

    def next_scope(self, node: Any) -> str:
        queue: OrderedDict[str, dict[str, bool]] = getattr(self, "workqueue")  # noqa: B009 (untyped base)
        if not self.ordered:  # once, when the queue is complete
            queue = OrderedDict(sorted(queue.items(), key=self.rank))
            self.workqueue, self.ordered = queue, True
        assigned: dict[str, dict[str, bool]] = self.assigned_work.get(node, {})
        ahead = sum(self.seconds(unit) for unit in assigned.values())
        if ahead >= LONG:  # a short one, from the end (unit tests, mostly)
            short = (scope for scope in reversed(queue) if self.seconds(queue[scope]) < LONG)
            return next(short, next(reversed(queue)))
        return next(iter(queue))

    def _assign_work_unit(self, node: Any) -> None:
        # xdist's own, but which unit is this scheduler's choice.
        scope = self.next_scope(node)
        work_unit = self.workqueue.pop(scope)
        self.assigned_work.setdefault(node, {})[scope] = work_unit
        collection = self.registered_collections[node]
        node.send_runtest_some(
            [collection.index(nodeid) for nodeid, done in work_unit.items() if not done]
        )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store-durations",
        metavar="PATH",
        help="write each test's seconds (setup, call, teardown) there, for the scheduler",
    )


class DurationStore:
    """Adds up each test's phases as reported (to the controller, under xdist)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration

    def pytest_sessionfinish(self) -> None:
        kept = {k: round(v, 1) for k, v in sorted(self.seconds.items()) if v >= WORTH_KEEPING}
        self.path.write_text(json.dumps(kept, indent=0) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    where = config.getoption("--store-durations")
    if where and not hasattr(config, "workerinput"):  # the controller (or a lone process)
        config.pluginmanager.register(DurationStore(Path(where)), "maomao-durations")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadgroup":
        return None  # xdist's own schedulers
    return ModuleGroups(config, log)
