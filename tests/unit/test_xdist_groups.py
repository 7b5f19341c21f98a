"""The scheduler of scripts/test.sh keeps each group of tests/xdist_groups.py on one worker."""

from __future__ import annotations

from pathlib import Path

from xdist_groups import GROUPS, ModuleGroups

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
