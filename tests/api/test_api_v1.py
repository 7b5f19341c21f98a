"""The v1 API in-process: each resource's round trip, with status codes and bodies."""

from __future__ import annotations

from maomao_cli.models import Member, Spike
from maomao_cli.services.registry import ToolSpec

from .conftest import Api

SPIKE = Spike(
    tool="probe", sortable="2024-01-02", value=9.0, baseline=1.0, deviation=8.0,
    deviation_pct=800.0, score=5.0, direction="up",
)  # fmt: skip


def test_v1_round_trip(api: Api) -> None:
    client = api.client
    made = client.post("/v1/tools", json={"name": "probe", "image": "alpine:3.19"})
    assert made.status_code == 201, made.text
    assert client.get("/v1/tools/probe").json()["image"] == "alpine:3.19"
    scheduled = client.post(
        "/v1/schedules",
        json={"tool": "probe", "cron": "*/5 * * * *", "timezone": "Europe/Paris"},
    )
    assert scheduled.status_code == 201, scheduled.text
    assert scheduled.json()["status"] == "scheduled"
    shown = client.get("/v1/schedules/probe").json()
    assert shown["timezone"] == "Europe/Paris" and len(shown["next_fires"]) == 5
    assert shown["next_fires"][0].endswith(("+01:00", "+02:00"))  # in the schedule's zone
    api.store.put(api.keys.spike("probe", "2024-01-02"), SPIKE.to_json())
    assert client.get("/v1/spikes", params={"tool": "probe"}).json()[0]["value"] == 9.0
    assert client.get("/v1/spikes/probe/2024-01-02").json()["score"] == 5.0
    assert client.get("/v1/members").status_code == 200
    missing = client.get("/v1/runs/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]
    assert client.delete("/v1/schedules/probe").status_code == 200
    assert api.store.get(api.keys.schedule("probe")) is None
    assert client.delete("/v1/tools/probe").status_code == 200
    assert client.get("/v1/tools/probe").status_code == 404


def test_tools_carry_every_option_and_refuse_bad_ones(api: Api) -> None:
    body = {
        "name": "probe", "image": "alpine:3.19", "author": "ana", "description": "d",
        "env": {"A": "1"}, "network": "none", "memory": "256m", "pids": 64, "timeout": 60.0,
        "user": "1000:1000", "spike_method": "seed", "sensitivity": 2.0, "min_history": 5,
    }  # fmt: skip
    made = api.client.post("/v1/tools", json=body)
    assert made.status_code == 201, made.text
    tool = made.json()
    assert {k: tool[k] for k in body} == body
    assert api.client.get("/v1/tools").json() == [tool]
    again = api.client.post("/v1/tools", json={"name": "probe", "image": "alpine:3.20"})
    assert again.status_code == 201 and again.json()["created"] == tool["created"]

    for bad, words in (
        ({"network": "host"}, "network"),
        ({"env": {"1A": "x"}}, "1A"),
        ({"dataset": "ghost"}, "no dataset named 'ghost'"),
        ({"spike_method": "zscore"}, "spike method"),
        ({"min_history": 2}, "min history"),
    ):
        refused = api.client.post("/v1/tools", json={"name": "other", "image": "img", **bad})
        assert refused.status_code in (400, 404), refused.text
        assert words in refused.json()["error"]["message"], refused.text
    assert api.client.get("/v1/tools/other").status_code == 404
    assert api.client.delete("/v1/tools/other").json()["error"]["code"] == "not-found"


def test_datasets_round_trip(api: Api) -> None:
    url = "https://git.example.org/lab/obs.git"
    body = {"name": "obs", "url": url, "branch": "main", "push": True, "depth": 3}
    made = api.client.post("/v1/datasets", json=body)
    assert made.status_code == 201, made.text
    assert {k: made.json()[k] for k in body} == body
    assert api.client.get("/v1/datasets/obs").json() == made.json()
    assert api.client.get("/v1/datasets").json() == [made.json()]
    missing = api.client.get("/v1/datasets/ghost")
    assert missing.status_code == 404
    assert missing.json()["error"]["hint"].startswith("see `maomao dataset list`")


def test_schedules_every_mode_selector_and_replacement(api: Api) -> None:
    api.services.registry.register_tool(ToolSpec(name="probe", image="img"))
    body = {
        "tool": "probe", "every": "hourly", "mode": "everywhere", "on": {"site": "lab"},
        "name": "probe-hourly", "overlap": True, "retries": 1, "grace": 30.0,
    }  # fmt: skip
    made = api.client.post("/v1/schedules", json=body)
    assert made.status_code == 201, made.text
    schedule = made.json()["schedule"]
    assert schedule["cron"] == "0 * * * *" and schedule["on"] == {"site": "lab"}
    assert schedule["mode"] == "everywhere" and len(schedule["next_fires"]) == 3
    replaced = api.client.post("/v1/schedules", json={**body, "every": "daily"})
    assert replaced.json()["status"] == "rescheduled"
    listed = api.client.get("/v1/schedules").json()
    assert [(s["name"], s["cron"], len(s["next_fires"])) for s in listed] == [
        ("probe-hourly", "0 0 * * *", 1)
    ]
    api.services.schedules.set_paused("probe-hourly", True)
    assert api.client.get("/v1/schedules/probe-hourly").json()["next_fires"] == []
    removed = api.client.delete("/v1/schedules/probe-hourly")
    assert removed.status_code == 200 and "next_fires" not in removed.json()
    assert api.client.delete("/v1/schedules/probe-hourly").status_code == 404


def test_runs_list_filter_and_run_now(api: Api) -> None:
    api.services.registry.register_tool(ToolSpec(name="probe", image="img"))
    api.services.registry.register_tool(ToolSpec(name="other", image="img"))
    started = [api.client.post("/v1/runs", json={"tool": t}) for t in ("probe", "other")]
    assert [s.status_code for s in started] == [202, 202], [s.text for s in started]
    ids = [s.json()["run_id"] for s in started]
    shown = api.client.get(f"/v1/runs/{ids[0]}")
    assert shown.status_code == 200 and shown.json()["tool"] == "probe"
    assert [r["id"] for r in api.client.get("/v1/runs", params={"tool": "probe"}).json()] == [
        ids[0]
    ]
    assert len(api.client.get("/v1/runs", params={"limit": 1}).json()) == 1
    assert api.client.get("/v1/runs", params={"tool": "Bad"}).status_code == 400
    assert api.client.get("/v1/runs/..bad").status_code == 400
    ghost = api.client.post("/v1/runs", json={"tool": "ghost"})
    assert ghost.status_code == 404 and ghost.json()["error"]["code"] == "not-found"


def test_spikes_newest_first_since_limit_and_one(api: Api) -> None:
    for tool, sortable in (
        ("probe", "2024-01-01"),
        ("probe", "2024-01-03"),
        ("other", "2024-01-02"),
    ):
        spike = Spike(**{**SPIKE.to_dict(), "tool": tool, "sortable": sortable})
        api.store.put(api.keys.spike(tool, sortable), spike.to_json())
    api.store.put(api.keys.spike("probe", "2024-01-09"), b"{not json")  # skipped, not a 500
    listed = api.client.get("/v1/spikes").json()
    assert [(s["tool"], s["sortable"]) for s in listed] == [
        ("probe", "2024-01-03"), ("other", "2024-01-02"), ("probe", "2024-01-01"),
    ]  # fmt: skip
    since = api.client.get("/v1/spikes", params={"since": "2024-01-02", "limit": 1}).json()
    assert [s["sortable"] for s in since] == ["2024-01-03"]
    one = api.client.get("/v1/spikes/other/2024-01-02")
    assert one.status_code == 200 and one.json()["tool"] == "other"
    missing = api.client.get("/v1/spikes/other/2024-01-01")
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "code": "not-found",
        "message": "no spike '2024-01-01' for tool 'other'",
        "hint": "see GET /v1/spikes",
    }
    assert api.client.get("/v1/spikes/Bad/2024-01-01").status_code == 400


def test_members_lists_the_live_ones(api: Api) -> None:
    for name in ("lab-b", "lab-a"):
        member = Member(name=name, host=name, version="0.1.0", pid=1, started=1.0, heartbeat=1.0)
        api.store.put(api.keys.member(name), member.to_json())
    assert [m["name"] for m in api.client.get("/v1/members").json()] == ["lab-a", "lab-b"]
    assert api.client.get("/v1/members/lab-b").json()["host"] == "lab-b"
    missing = api.client.get("/v1/members/lab-c")
    assert missing.status_code == 404
    assert missing.json()["error"]["hint"] == "see GET /v1/members"
    assert api.client.get("/v1/members/Bad").status_code == 400
