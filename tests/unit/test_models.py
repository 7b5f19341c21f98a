"""Records round-trip through JSON; decoding ignores unknown fields and refuses bad ones."""

from __future__ import annotations

import json
from typing import Any

import pytest

from maomao_cli.errors import RecordError
from maomao_cli.models import (
    SCHEMA_VERSION,
    Dataset,
    Member,
    Record,
    Run,
    Schedule,
    Spike,
    Tool,
)

FULL: list[Record] = [
    Tool(name="dummy", image="img"),
    Tool(
        name="weather",
        image="ghcr.io/lab/weather:1.2",
        dataset="obs",
        author="ana",
        description="hourly readings",
        env={"CITY": "Lyon", "EMPTY": ""},
        network="none",
        memory="256m",
        pids=64,
        timeout=120.5,
        user="1000:1000",
        data_subdir="weather/raw",
        sensitivity=1.5,
        created=1.0,
        updated=2.0,
    ),
    Dataset(name="obs", url="https://git.example.org/obs.git"),
    Dataset(name="obs2", url="/srv/obs", branch="main", push=True, depth=5, created=3.0),
    Schedule(name="weather", tool="weather", cron="0 * * * *"),
    Schedule(
        name="nightly",
        tool="weather",
        cron="0 0 3 * * *",
        timezone="Europe/Paris",
        mode="everywhere",
        paused=True,
        on={"region": "eu"},
        overlap=True,
        retries=3,
        grace=60.0,
        created=4.0,
    ),
    Run(id="r1", tool="dummy", member="a", status="running"),
    Run(
        id="r2",
        tool="dummy",
        member="a",
        status="failed",
        trigger="retry",
        schedule="weather",
        fire_time=100.0,
        attempt=2,
        image="img",
        image_digest="sha256:" + "0" * 64,
        exit_code=3,
        started=100.0,
        finished=112.5,
        error="exit 3",
        warning="slow",
        log_tail=["line 1", "line 2"],
    ),
    Member(name="a", host="host-a", version="0.1.0", started=5.0),
    Member(
        name="b",
        host="host-b",
        version="0.1.0",
        started=5.0,
        labels={"gpu": "yes"},
        running=2,
        pid=42,
        heartbeat=6.0,
    ),
    Spike(
        tool="dummy",
        sortable="2024-01-01",
        value=10.0,
        baseline=5.0,
        deviation=5.0,
        deviation_pct=100.0,
        score=4.2,
        direction="up",
    ),
    Spike(
        tool="dummy",
        sortable="2024-01-02T00:00:00",
        value=0.0,
        baseline=0.0,
        deviation=0.0,
        deviation_pct=None,
        score=3,
        direction="down",
        method="seed",
        run_id="r2",
        member="b",
        found=7.0,
    ),
]


@pytest.mark.parametrize("record", FULL, ids=lambda r: f"{r.kind}")
def test_round_trip(record: Record) -> None:
    raw = record.to_json()
    data = json.loads(raw)
    assert data["v"] == SCHEMA_VERSION
    back = type(record).from_json(raw)
    assert back == record
    assert back.to_json() == raw


def test_run_duration() -> None:
    assert FULL[7].duration == 12.5  # type: ignore[attr-defined]
    assert FULL[6].duration is None  # type: ignore[attr-defined]


def test_tuples_and_lists_decode_alike() -> None:
    run = Run.from_dict({"id": "r", "tool": "t", "member": "m", "status": "lost", "log_tail": []})
    assert run.log_tail == []


@pytest.mark.parametrize("record", FULL[::2], ids=lambda r: f"{r.kind}")
def test_unknown_fields_ignored(record: Record) -> None:
    data: dict[str, Any] = json.loads(record.to_json())
    data["v"] = SCHEMA_VERSION + 1
    data["added_by_a_newer_member"] = {"nested": [1, 2]}
    assert type(record).from_json(json.dumps(data).encode()) == record


@pytest.mark.parametrize(
    ("cls", "data", "field"),
    [
        (Tool, {"image": "img"}, "name"),
        (Tool, {"name": "t"}, "image"),
        (Dataset, {"name": "d"}, "url"),
        (Schedule, {"name": "s", "tool": "t"}, "cron"),
        (Run, {"id": "r", "tool": "t", "member": "m"}, "status"),
        (Member, {"name": "m", "host": "h", "version": "1"}, "started"),
        (Spike, {"tool": "t", "sortable": "s", "value": 1.0}, "baseline"),
    ],
)
def test_missing_required_field(cls: type[Record], data: dict[str, Any], field: str) -> None:
    with pytest.raises(RecordError) as caught:
        cls.from_dict(data)
    assert repr(field) in caught.value.message
    assert cls.kind in caught.value.message


@pytest.mark.parametrize(
    ("cls", "data", "field"),
    [
        (Tool, {"name": 5, "image": "img"}, "name"),
        (Tool, {"name": "t", "image": None}, "image"),
        (Tool, {"name": "t", "image": "i", "env": {"A": 1}}, "env"),
        (Tool, {"name": "t", "image": "i", "env": ["A=1"]}, "env"),
        (Tool, {"name": "t", "image": "i", "pids": True}, "pids"),
        (Tool, {"name": "t", "image": "i", "pids": 1.5}, "pids"),
        (Tool, {"name": "t", "image": "i", "timeout": "60"}, "timeout"),
        (Dataset, {"name": "d", "url": "u", "push": "yes"}, "push"),
        (Schedule, {"name": "s", "tool": "t", "cron": "*", "mode": "sometimes"}, "mode"),
        (Schedule, {"name": "s", "tool": "t", "cron": "*", "on": {"a": None}}, "on"),
        (Run, {"id": "r", "tool": "t", "member": "m", "status": "done"}, "status"),
        (
            Run,
            {"id": "r", "tool": "t", "member": "m", "status": "lost", "log_tail": "x"},
            "log_tail",
        ),
        (
            Run,
            {"id": "r", "tool": "t", "member": "m", "status": "lost", "log_tail": [1]},
            "log_tail",
        ),
        (Member, {"name": "m", "host": "h", "version": "1", "started": "now"}, "started"),
        (
            Spike,
            {
                "tool": "t",
                "sortable": "s",
                "value": 1.0,
                "baseline": 1.0,
                "deviation": 0.0,
                "deviation_pct": None,
                "score": 1.0,
                "direction": "sideways",
            },
            "direction",
        ),
    ],
)
def test_ill_typed_field(cls: type[Record], data: dict[str, Any], field: str) -> None:
    with pytest.raises(RecordError) as caught:
        cls.from_dict(data)
    assert repr(field) in caught.value.message


@pytest.mark.parametrize(
    "raw", [b"", b"not json", b"{", b"\xff\xfe", b"[1, 2]", b'"tool"', b"null", b"42"]
)
@pytest.mark.parametrize("cls", [Tool, Dataset, Schedule, Run, Member, Spike])
def test_not_a_json_object(cls: type[Record], raw: bytes) -> None:
    with pytest.raises(RecordError) as caught:
        cls.from_json(raw)
    assert cls.kind in caught.value.message


def test_records_are_frozen() -> None:
    tool = Tool(name="t", image="i")
    with pytest.raises(AttributeError):
        tool.name = "u"  # type: ignore[misc]


def test_to_dict_copies_containers_and_to_json_keeps_the_stored_form() -> None:
    run = Run(
        id="r",
        tool="t",
        member="m",
        status="succeeded",
        log_tail=["a"],
        insights={"rows": {"kept": [1, 2]}},
    )
    as_dict = run.to_dict()
    as_dict["log_tail"].append("b")
    as_dict["insights"]["rows"]["kept"].append(3)
    assert run.log_tail == ["a"] and run.insights == {"rows": {"kept": [1, 2]}}
    stored = json.loads(run.to_json())
    assert stored == {"v": 1, **run.to_dict()}
    assert list(stored) == sorted(stored)  # keys sorted: one record, one byte string
    assert Run.from_json(run.to_json()) == run


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "finished"),  # not one of the Literal's values
        ("attempt", True),  # a bool is not an int
        ("started", "1.5"),
        ("log_tail", ["a", 1]),
        ("outputs", {"a": 1}),
        ("insights", ["not", "a", "dict"]),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_by_name(field: str, value: object) -> None:
    data = {"id": "r", "tool": "t", "member": "m", "status": "running", field: value}
    with pytest.raises(RecordError, match=f"bad value for '{field}'"):
        Run.from_dict(data)
