"""The scheduler of scripts/test.sh keeps each group of tests/xdist_groups.py on one worker."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from xdist_groups import GROUPS, ModuleGroups, expected_durations

ROOT = Path(__file__).resolve().parents[2]


def test_every_grouped_module_exists() -> None:
    assert [path for path in GROUPS if not (ROOT / path).is_file()] == []


def test_a_grouped_module_is_one_unit_and_every_other_test_its_own() -> None:
    scheduler = object.__new__(ModuleGroups)  # _split_scope reads no state
    ids = [
        "tests/faults/test_faults.py::test_etcd_leader_sigkill",
        "tests/faults/test_faults.py::test_data_disk_full",
        "tests/unit/test_hardened_inputs.py::test_names",
        "tests/faults/test_checks.py::test_judge[records0-expected0]",
        "tests/unit/test_config.py::test_defaults",
    ]
    assert [scheduler._split_scope(i) for i in ids] == [
        "faults",
        "faults",
        "tests/unit/test_hardened_inputs.py::test_names",
        "tests/faults/test_checks.py::test_judge[records0-expected0]",
        "tests/unit/test_config.py::test_defaults",
    ]


def scheduler_with(queue: list[str], expected: dict[str, float]) -> ModuleGroups:
    scheduler = object.__new__(ModuleGroups)  # next_scope reads only these
    scheduler.workqueue = OrderedDict((nodeid, {nodeid: False}) for nodeid in queue)
    scheduler.assigned_work = {}
    scheduler.expected = expected
    scheduler.ordered = False
    return scheduler


def test_the_longest_go_first_the_rest_as_collected_and_no_long_one_waits_behind_another() -> None:
    expected = {"longest": 160.0, "long": 95.0, "mid": 30.0, "short": 3.0}
    queue = ["unknown-1", "mid", "short", "long", "longest", "unknown-2", "mid-2"]
    scheduler = scheduler_with(queue, {**expected, "mid-2": 30.0})
    assert scheduler.next_scope("idle") == "longest"
    assert list(scheduler.workqueue) == [
        "longest", "long", "unknown-1", "mid", "short", "unknown-2", "mid-2",
    ]  # fmt: skip
    scheduler.assigned_work["busy"] = {"longest": {"longest": False}}
    assert scheduler.next_scope("busy") == "unknown-2"  # not "long", nor "mid-2"
    scheduler.assigned_work["done"] = {"longest": {"longest": True}}  # its long test has run
    assert scheduler.next_scope("done") == "longest"


def test_durations_are_read_leniently(tmp_path: Path) -> None:
    path = tmp_path / "durations.json"
    assert expected_durations(path) == {}
    path.write_text("[1, 2]")
    assert expected_durations(path) == {}
    path.write_text('{"a": 2.5}')
    assert expected_durations(path) == {"a": 2.5}
