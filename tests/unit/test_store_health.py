"""What `maomao status` says about etcd's storage (services/storehealth.py), and the status it
exits with: a table of store statuses, and the real command in-process on a memory store
that reports them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cli_harness import MakeCli
from maomao_cli.services import storehealth
from maomao_cli.store.base import StoreStatus
from maomao_cli.store.memory import MemoryStore

MiB = 2**20
BASE = StoreStatus("e:1", "3.4.23", 1, 1, 10, 2 * MiB, 500, (), 16 * MiB, 400)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (BASE, []),
        (replace(BASE, db_size=13 * MiB), ["at 81 % of its quota (13.0 of 16 MiB)"]),
        (replace(BASE, db_size=12 * MiB), []),
        (replace(BASE, alarms=("NOSPACE",)), ["full (NOSPACE alarm)"]),
        (replace(BASE, compact_revision=-1, revision=200_000), ["never compacted"]),
        (replace(BASE, compact_revision=-1, revision=5_000), []),  # young: nothing to say
        (replace(BASE, compact_revision=None, quota=None), []),  # metrics unreadable
    ],
)
def test_storage_warnings(status: StoreStatus, expected: list[str]) -> None:
    found = storehealth.warnings(status)
    assert len(found) == len(expected)
    for line, words in zip(found, expected, strict=True):
        assert words in line


def test_compaction_is_said_as_known() -> None:
    assert storehealth.compaction(BASE) == "on (compacted up to revision 400)"
    assert storehealth.compaction(replace(BASE, compact_revision=-1)) == "off (never compacted)"
    assert storehealth.compaction(replace(BASE, compact_revision=None)) == "unknown"


class ReportingStore(MemoryStore):
    def __init__(self, status: StoreStatus) -> None:
        super().__init__()
        self.reported = status

    def status(self) -> StoreStatus:
        return self.reported


def test_status_shows_storage_and_exits_1_on_an_alarm(make_cli: MakeCli) -> None:
    healthy = make_cli(store=ReportingStore(BASE)).invoke("status", "--json")
    assert healthy.code == 0, healthy.err
    etcd = healthy.json()["etcd"]
    assert (etcd["db_size"], etcd["quota"], etcd["revision"]) == (2 * MiB, 16 * MiB, 500)
    assert etcd["compaction"].startswith("on") and healthy.json()["warnings"] == []

    full = make_cli(store=ReportingStore(replace(BASE, alarms=("NOSPACE",))))
    as_json = full.invoke("status", "--json")
    assert as_json.code == 1
    assert as_json.json()["etcd"]["alarms"] == ["NOSPACE"]  # one JSON object: the status
    text = full.invoke("status")
    assert text.code == 1
    assert "NOSPACE alarm" in text.out and text.err == ""
