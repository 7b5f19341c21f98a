"""The operator controls over HTTP: trigger, backfill, pause/resume, next firings and
coverage, refusing what the CLI refuses with the same message (the rules are the schedule
service's), and writing nothing when they refuse."""

from __future__ import annotations

from maomao_cli.models import FiringRequest
from maomao_cli.services.registry import ToolSpec

from .conftest import Api


def setup(api: Api) -> None:
    api.services.registry.register_tool(ToolSpec(name="probe", image="img"))
    made = api.client.post(
        "/v1/schedules",
        json={"tool": "probe", "cron": "*/10 * * * *", "timezone": "Europe/Zurich", "jitter": "5s"},
    )
    assert made.status_code == 201, made.text
    assert made.json()["schedule"]["jitter"] == 5.0


def revision(api: Api) -> int:
    return api.store.scan_with_revision("/")[1]


def test_trigger_writes_a_request_the_workers_claim(api: Api) -> None:
    setup(api)
    sent = api.client.post("/v1/schedules/probe/trigger", json={"force": True})
    assert sent.status_code == 202, sent.text
    body = sent.json()
    assert (body["trigger"], body["force"], body["attempt"]) == ("manual", True, 1)
    [entry] = api.store.scan(api.keys.requests("probe"))
    assert FiringRequest.from_json(entry.value).by == "api"
    assert api.client.post("/v1/schedules/ghost/trigger", json={}).status_code == 404


def test_backfill_dry_run_and_the_cli_refusals(api: Api) -> None:
    setup(api)
    before = revision(api)
    dry = api.client.post(
        "/v1/schedules/probe/backfill", json={"from": "1h", "to": "1s", "dry_run": True}
    )
    assert dry.status_code == 202, dry.text
    assert dry.json()["requested"] == 0 and len(dry.json()["firings"]) == 6
    assert revision(api) == before
    future = api.client.post(
        "/v1/schedules/probe/backfill", json={"from": "1h", "to": "2999-01-01T00:00"}
    )
    assert future.status_code == 400
    assert future.json()["error"]["message"] == (
        "invalid backfill range: --to is in the future; a backfill runs past firings only"
    )
    wide = api.client.post("/v1/schedules/probe/backfill", json={"from": "400d", "to": "1s"})
    assert wide.status_code == 400 and "too large" in wide.json()["error"]["message"]
    assert revision(api) == before
    written = api.client.post("/v1/schedules/probe/backfill", json={"from": "1h", "to": "1s"})
    assert written.json()["requested"] == 6
    assert len(api.store.scan(api.keys.requests("probe"))) == 6


def test_pause_with_note_and_end_then_resume(api: Api) -> None:
    setup(api)
    past = api.client.post("/v1/schedules/probe/pause", json={"until": "2001-01-01T00:00"})
    assert past.status_code == 400 and "must be in the future" in past.json()["error"]["message"]
    paused = api.client.post("/v1/schedules/probe/pause", json={"until": "2h", "note": "laser"})
    assert paused.status_code == 200, paused.text
    body = paused.json()
    assert (body["paused"], body["pause_note"], body["paused_by"]) == (True, "laser", "api")
    assert body["next_fires"], "a pause with an end still has next firings, after it"
    resumed = api.client.post("/v1/schedules/probe/resume").json()
    assert resumed["paused"] is False and len(resumed["pauses"]) == 1


def test_next_firings_and_coverage(api: Api) -> None:
    setup(api)
    found = api.client.get("/v1/schedules/probe/next", params={"count": 3})
    assert found.status_code == 200 and len(found.json()) == 3
    assert set(found.json()[0]) == {"wall", "utc", "mark", "jitter"}
    assert api.client.get("/v1/schedules/probe/next", params={"count": 0}).status_code == 422
    covered = api.client.get("/v1/coverage", params={"since": "1h"})
    assert covered.status_code == 200, covered.text
    [report] = covered.json()
    assert report["schedule"] == "probe" and "from" in report
    assert api.client.get("/v1/coverage", params={"since": "later"}).status_code == 400
