"""Peer validation: members' snapshots of one --everywhere firing, compared (a table of
cases), divergences stored once and notified; what a run produced, hashed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from maomao_cli.errors import BadInput, NotFound
from maomao_cli.keys import Keys
from maomao_cli.models import Run, Schedule, Tool
from maomao_cli.services import snapshots
from maomao_cli.services.audit import AuditService, compare
from maomao_cli.store.memory import MemoryStore

FIRE = 1_800_000_003.0
KEYS = Keys("/t")
SAME = {"data-1.txt": "aa", "control-1.csv": "cc"}


def run(member: str, files: dict[str, str], control: float | None, **fields: object) -> Run:
    values: dict[str, object] = {
        "id": f"r-{member}",
        "tool": "t",
        "member": member,
        "status": "succeeded",
        "trigger": "schedule",
        "schedule": "s",
        "fire_time": FIRE,
        "outputs": files,
        "control": control,
        **fields,
    }
    return Run(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("runs", "tolerance", "majority", "odd", "differing", "divergent"),
    [
        # Everyone agrees.
        ([run("a", SAME, 100), run("b", SAME, 100), run("c", SAME, 100)], 0, ["a", "b", "c"], [], {}, []),
        # One member wrote a different value: the odd one out, its files named, a divergence.
        (
            [run("a", SAME, 100), run("b", SAME, 100), run("c", {**SAME, "control-1.csv": "dd"}, 110)],
            0, ["a", "b"], ["c"], {"control-1.csv": ["c"]}, ["c"],
        ),
        # Within the tolerance: still the odd one out by content, but no divergence.
        (
            [run("a", SAME, 100), run("b", SAME, 100), run("c", {**SAME, "control-1.csv": "dd"}, 101)],
            2, ["a", "b"], ["c"], {"control-1.csv": ["c"]}, [],
        ),
        # A file only one member produced.
        (
            [run("a", SAME, 100), run("b", {**SAME, "extra.txt": "ee"}, 100), run("c", SAME, 100)],
            0, ["a", "c"], ["b"], {"extra.txt": ["b"]}, [],
        ),
        # Two against two: no majority, nobody named.
        (
            [run("a", SAME, 1), run("b", SAME, 1), run("c", {"x": "1"}, 1), run("d", {"x": "1"}, 1)],
            0, [], [], {}, [],
        ),
    ],
)  # fmt: skip
def test_compare(
    runs: list[Run],
    tolerance: float,
    majority: list[str],
    odd: list[str],
    differing: dict[str, list[str]],
    divergent: list[str],
) -> None:
    audit = compare("t", "s", FIRE, runs, tolerance)
    assert audit.majority == majority
    assert audit.odd_ones_out == odd
    assert audit.differing_files == differing
    assert [d.member for d in audit.divergences] == divergent


def test_the_newest_attempt_of_a_member_counts() -> None:
    runs = [
        run("a", {"x": "1"}, 5, attempt=1, id="old"),
        run("a", SAME, 100, attempt=2, id="new"),
        run("b", SAME, 100),
    ]
    audit = compare("t", "s", FIRE, runs)
    assert [s.run_id for s in audit.snapshots] == ["new", "r-b"]
    assert audit.majority == ["a", "b"]


@pytest.fixture
def store() -> MemoryStore:
    store = MemoryStore()
    schedule = Schedule(name="s", tool="t", cron="* * * * * */3", mode="everywhere")
    store.put(KEYS.schedule("s"), schedule.to_json())
    return store


def test_divergences_are_stored_once_and_notified(store: MemoryStore) -> None:
    for r in (run("a", SAME, 100), run("b", SAME, 100), run("c", SAME, 150)):
        store.put(KEYS.run(r.id), r.to_json())
    store.put(KEYS.run("failed"), run("d", {}, 1, id="failed", status="failed").to_json())
    events: list[dict[str, object]] = []
    service = AuditService(store, KEYS, notify=events.append)
    tool = Tool(name="t", image="i")
    first = service.audit(tool)
    again = service.audit(tool, FIRE)
    assert [s.member for s in first.snapshots] == ["a", "b", "c"]  # the failed run is not
    assert [d.member for d in first.divergences] == ["c"] == [d.member for d in again.divergences]
    assert [e["member"] for e in events] == ["c"] and events[0]["kind"] == "divergence"
    [stored] = service.stored("t")
    assert (stored.value, stored.majority, stored.run_id) == (150, 100, "r-c")


def test_no_everywhere_schedule_or_no_shared_firing_is_one_line(store: MemoryStore) -> None:
    service = AuditService(store, KEYS)
    with pytest.raises(BadInput, match="no --everywhere schedule"):
        service.audit(Tool(name="other", image="i"))
    store.put(KEYS.run("r-a"), run("a", SAME, 1).to_json())
    with pytest.raises(NotFound, match="two or more members"):
        service.audit(Tool(name="t", image="i"))
    with pytest.raises(NotFound, match="no succeeded run"):
        service.audit(Tool(name="t", image="i"), FIRE + 3)


def test_a_snapshot_holds_what_the_run_wrote_or_changed_and_its_control(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("kept\n")
    (tmp_path / "changed.txt").write_text("1\n")
    before = snapshots.listing(tmp_path)
    (tmp_path / "changed.txt").write_text("22\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "control-20270115T080003Z.csv").write_text("101\n")
    (tmp_path / ".state-a").write_text("7\n")  # hidden: a tool's own state
    (tmp_path / "insights.json").write_text("{}")
    os.symlink("/etc/passwd", tmp_path / "link.txt")
    made = snapshots.produced(tmp_path, before)
    assert sorted(made.files) == ["changed.txt", "sub/control-20270115T080003Z.csv"]
    assert made.files["changed.txt"] == hashlib.sha256(b"22\n").hexdigest()
    assert made.control == 101.0


def test_the_firing_is_audited_once_every_member_that_claimed_it_has_finished(
    store: MemoryStore,
) -> None:
    epoch = int(FIRE)
    for member in ("a", "b", "c"):
        store.put(KEYS.firing("s", epoch, member), b"{}")
    store.put(KEYS.firing("s", epoch, "c") + ".r2", b"{}")  # c's retry
    store.put(KEYS.firing("s", epoch + 3, "d"), b"{}")  # another firing
    service = AuditService(store, KEYS)
    tool = Tool(name="t", image="i")
    done = [run("a", SAME, 100), run("b", SAME, 100), run("c", SAME, 130)]
    for finished in done:
        store.put(KEYS.run(finished.id), finished.to_json())
        assert service.after_run(tool, finished, None) is None
        audited = [d.member for d in service.stored("t")]
        assert audited == ([] if finished.member != "c" else ["c"])
    manual = run("a", SAME, 1, trigger="manual")
    assert service.after_run(tool, manual, None) is None
