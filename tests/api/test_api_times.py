"""Every time the API shows is ISO 8601 in UTC to the second, as `--json` shows it (one
format per output kind, issue 21); etcd keeps epoch seconds."""

from __future__ import annotations

import re
from typing import Any

import pytest

from maomao_cli.cli.output import iso
from maomao_cli.models import Member, Record, Run, Schedule, Spike
from maomao_cli.services.registry import DatasetSpec, ToolSpec

from .conftest import Api

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
WHEN = 1_796_146_111.75  # 2026-12-01T17:28:31Z and a fraction


def _times_of(body: dict[str, Any], cls: type[Record]) -> dict[str, Any]:
    return {name: body[name] for name in cls.times}


def test_runs_give_iso_times_as_runs_json_does(api: Api) -> None:
    run = Run(
        id="20261201T172831Z-abcdef", tool="probe", member="lab-a", status="succeeded",
        trigger="schedule", schedule="probe", fire_time=1_796_146_080.0, started=WHEN,
        finished=WHEN + 3,
    )  # fmt: skip
    api.store.put(api.keys.run(run.id), run.to_json())
    listed = api.client.get("/v1/runs").json()
    one = api.client.get(f"/v1/runs/{run.id}").json()
    expected = {
        "fire_time": "2026-12-01T17:28:00Z",
        "started": "2026-12-01T17:28:31Z",
        "finished": "2026-12-01T17:28:34Z",
    }
    assert _times_of(listed[0], Run) == _times_of(one, Run) == expected
    assert expected["started"] == iso(WHEN)  # the CLI's own format


@pytest.mark.parametrize(
    ("path", "cls", "put"),
    [
        ("/v1/members/lab-a", Member, "member"),
        ("/v1/spikes/probe/2026-12-01", Spike, "spike"),
    ],
)
def test_members_and_spikes_give_iso_times(
    api: Api, path: str, cls: type[Record], put: str
) -> None:
    if put == "member":
        record: Record = Member(
            name="lab-a", host="h", version="0.1.0", pid=1, started=WHEN, heartbeat=WHEN + 1
        )
        api.store.put(api.keys.member("lab-a"), record.to_json())
    else:
        record = Spike(
            tool="probe", sortable="2026-12-01", value=9.0, baseline=1.0, deviation=8.0,
            deviation_pct=800.0, score=5.0, direction="up", found=WHEN,
        )  # fmt: skip
        api.store.put(api.keys.spike("probe", "2026-12-01"), record.to_json())
    body = api.client.get(path).json()
    assert all(ISO.fullmatch(value) for value in _times_of(body, cls).values()), body


def test_tools_datasets_and_schedules_give_iso_times_and_none_for_unset(api: Api) -> None:
    tool = api.client.post("/v1/tools", json={"name": "probe", "image": "img"}).json()
    assert ISO.fullmatch(tool["created"]) and ISO.fullmatch(tool["updated"]), tool
    api.services.registry.add_dataset(DatasetSpec(name="d", url="https://example.org/d.git"))
    [dataset] = api.client.get("/v1/datasets").json()
    assert ISO.fullmatch(dataset["created"]), dataset
    made = api.client.post("/v1/schedules", json={"tool": "probe", "every": "daily"}).json()
    schedule = made["schedule"]
    assert ISO.fullmatch(schedule["created"]), schedule
    assert schedule["paused_until"] is None and schedule["paused_at"] is None
    assert schedule["next_fires"], "the schedule's own view keeps its next firings"
    # The schema says so too: a client generated from it parses datetimes.
    spec = api.client.get("/openapi.json").json()["components"]["schemas"]
    assert {"format": "date-time", "type": "string"} in spec["Run"]["properties"]["started"][
        "anyOf"
    ]
    for name in ("Schedule", "ScheduleOut"):
        assert set(Schedule.times) <= set(spec[name]["properties"]), sorted(spec)


def test_the_api_never_shows_an_epoch_number_for_a_time(api: Api) -> None:
    api.services.registry.register_tool(ToolSpec(name="probe", image="img"))
    for body in (api.client.get("/v1/tools").json(), api.client.get("/v1/runs").json()):
        for record in body:
            assert not any(isinstance(record.get(t), float) for t in ("created", "started"))
