"""POST /v1/schedules refuses non-location zones through the same rule as the CLI."""

from __future__ import annotations

import pytest

from .conftest import Api


@pytest.mark.parametrize(
    ("zone", "status"),
    [("Europe/Zurich", 201), ("localtime", 400), ("posixrules", 400), ("Factory", 400)],
)
def test_schedule_zone_rule(api: Api, zone: str, status: int) -> None:
    made = api.client.post("/v1/tools", json={"name": "probe", "image": "alpine:3.19"})
    assert made.status_code == 201, made.text
    scheduled = api.client.post(
        "/v1/schedules", json={"tool": "probe", "cron": "0 * * * *", "timezone": zone}
    )
    assert scheduled.status_code == status, scheduled.text
    if status == 201:
        assert api.client.get("/v1/schedules/probe").json()["timezone"] == zone
    else:
        assert f"timezone {zone!r}" in scheduled.json()["error"]["message"]
        assert api.store.get(api.keys.schedule("probe")) is None
