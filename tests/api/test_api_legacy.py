"""The 2019 routes in-process: each has the effect of the CLI command it stands for."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from maomao_cli.models import FINAL_STATUSES, R, Run, Schedule, Tool
from maomao_cli.services.registry import ToolSpec

from .conftest import NO_ENGINE, PREFIX, Api, Cli, make_services

JSON = {"Content-Type": "application/json"}


def without(record: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in fields}


def record(api: Api, key: str, cls: type[R]) -> R:
    entry = api.store.get(key)
    assert entry is not None, key
    return cls.from_json(entry.value)


def wait_final(api: Api, run_id: str, timeout: float = 30) -> Run:
    """The run's final record, as the run service's feed delivers it (from the start of
    the store's history, so a record written before the feed opened counts too)."""
    feed = api.services.runs.feed(start_revision=1)
    found: list[Run] = []

    def watch() -> None:
        for _, run in feed:
            if run.id == run_id and run.status in FINAL_STATUSES:
                found.append(run)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    watcher.join(timeout)
    feed.cancel()
    assert found, f"run {run_id} did not finish within {timeout} s"
    return found[0]


def test_register_schedule_and_run_have_the_cli_effect(api: Api, cli: Cli, tmp_path: Path) -> None:
    cli_services = make_services(tmp_path, api.store, api.runner, prefix=PREFIX + "-cli")
    cli_keys = cli_services.keys

    response = api.client.post("/register", content='{"name": "dummy", "url": "img"}', headers=JSON)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "registered"
    assert response.json()["tool"]["image"] == "img"
    assert cli(["register", "dummy", "img"], cli_services).code == 0
    http_tool = record(api, api.keys.tool("dummy"), Tool)
    cli_tool = record(api, cli_keys.tool("dummy"), Tool)
    assert without(http_tool.to_dict(), "created", "updated") == without(
        cli_tool.to_dict(), "created", "updated"
    )
    again = api.client.post("/register", json={"name": "dummy", "url": "img"})
    assert (again.status_code, again.json()["status"]) == (200, "updated")

    statuses = []
    for frequency, cron in (("daily", "0 0 * * *"), ("weekly", "0 0 * * 0")):
        body = {"name": "dummy", "dataset": "dummy", "cron": True, "frequency": frequency}
        response = api.client.post("/run", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["schedule"]["cron"] == cron
        statuses.append(response.json()["status"])
        assert len(response.json()["schedule"]["next_fires"]) == 3
        result = cli(["run", "dummy", f"--{frequency}"], cli_services)
        assert result.code == 0, result.err
        http_schedule = record(api, api.keys.schedule("dummy"), Schedule)
        cli_schedule = record(api, cli_keys.schedule("dummy"), Schedule)
        assert http_schedule.cron == cron
        assert without(http_schedule.to_dict(), "created") == without(
            cli_schedule.to_dict(), "created"
        )
    assert statuses == ["scheduled", "rescheduled"]

    response = api.client.post("/run", json={"name": "dummy", "dataset": "dummy", "cron": False})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "running" and accepted["tool"] == "dummy"
    assert accepted["url"] == f"/v1/runs/{accepted['run_id']}"
    run = wait_final(api, accepted["run_id"])
    assert run.status == "failed"  # no Docker engine here: the image cannot be pulled
    assert run.tool == "dummy" and run.trigger == "manual" and run.member == "member-a"
    assert run.error == NO_ENGINE
    assert api.runner.images == ["img"]

    response = api.client.get("/regtools")
    assert response.status_code == 200
    assert [t["name"] for t in response.json()] == ["dummy"]


def test_run_refuses_what_the_cli_refuses(api: Api) -> None:
    api.client.post("/regdata", json={"name": "obs", "url": "https://git.example.org/obs.git"})
    api.services.registry.register_tool(ToolSpec(name="dummy", image="img", dataset="obs"))
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"name": "dummy", "dataset": "other"}, 400, "writes into dataset 'obs'"),
        ({"name": "dummy", "dataset": "Bad"}, 400, "dataset name"),
        ({"name": "dummy", "cron": True}, 400, '"cron": true needs "frequency"'),
        ({"name": "dummy", "frequency": "daily"}, 400, '"frequency" needs "cron": true'),
        ({"name": "ghost", "cron": True, "frequency": "daily"}, 404, "no tool named 'ghost'"),
    ]
    for body, status, message in cases:
        response = api.client.post("/run", json=body)
        assert response.status_code == status, (body, response.text)
        assert message in response.json()["error"]["message"], response.text
    assert api.store.count(api.keys.schedules()) == 0
    assert api.store.count(api.keys.runs()) == 0


def test_regdata_and_datasets_list_the_registered_datasets(api: Api) -> None:
    url = "https://git.example.org/lab/obs.git"
    made = api.client.post("/regdata", json={"name": "obs", "url": url, "extra": "ignored"})
    assert made.status_code == 200, made.text
    assert made.json()["status"] == "registered"
    assert made.json()["dataset"] == {
        "branch": None, "created": made.json()["dataset"]["created"], "depth": None,
        "name": "obs", "push": False, "url": url,
    }  # fmt: skip
    again = api.client.post("/regdata", json={"name": "obs", "url": url})
    assert again.json()["status"] == "updated"
    listed = api.client.get("/datasets")
    assert listed.status_code == 200 and [d["name"] for d in listed.json()] == ["obs"]
