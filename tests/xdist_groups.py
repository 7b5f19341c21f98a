"""Which tests must share one pytest-xdist worker, and the scheduler that keeps them there
(`--dist loadgroup`, as scripts/test.sh runs the suite).

xdist's own `xdist_group` mark does nothing under pytest 9.2: xdist 3.8 tags each item by
assigning `item._nodeid`, which pytest no longer reads, so marked tests spread over every
worker (each fault test then built a rig of its own). The groups are named here instead,
by module, and this scheduler reads them from the test ids the workers report: every
other test is its own unit, sent to whichever worker is free, the groups first.
"""

from __future__ import annotations

from typing import Any

import pytest
from xdist.scheduler import LoadGroupScheduling

# The modules whose tests must all run in one worker process, in order, and why.
GROUPS = {
    # Its faults run in order on one rig (a session fixture), the last one stopping it.
    "tests/faults/test_faults.py": "faults",
}


def group_of(nodeid: str) -> str | None:
    return GROUPS.get(nodeid.split("::", 1)[0])


class ModuleGroups(LoadGroupScheduling):  # type: ignore[misc]
    """xdist's loadgroup scheduler, with the groups taken from GROUPS."""

    def _split_scope(self, nodeid: str) -> str:
        group = group_of(nodeid)
        return group if group is not None else str(super()._split_scope(nodeid))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadgroup":
        return None  # xdist's own schedulers
    return ModuleGroups(config, log)
