"""Bad requests, the guards and the error bodies, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maomao_cli.adapters.containers import ScriptedRunner
from maomao_cli.store.base import Entry
from maomao_cli.store.memory import MemoryStore

from .conftest import PREFIX, Api, Cli, make_services, open_client


def test_bad_requests_get_4xx_with_a_message_and_write_nothing(api: Api) -> None:
    oversized = json.dumps({"name": "big", "url": "x" * 2_000_000})
    cases: list[tuple[str, str, bytes | str, int, str]] = [
        ("POST", "/register", '{"name": "dummy", "url": ', 400, "bad-json"),  # malformed JSON
        ("POST", "/register", "[1, 2]", 422, "invalid-request"),
        ("POST", "/register", '{"name": 5, "url": "img"}', 422, "invalid-request"),  # wrong type
        ("POST", "/register", '{"name": "dummy"}', 422, "invalid-request"),  # missing field
        ("POST", "/register", '{"name": "Bad Name", "url": "img"}', 400, "bad-input"),  # a rule
        ("POST", "/register", '{"name": "dummy", "url": "NOT AN IMAGE"}', 400, "bad-input"),
        ("POST", "/run", '{"name": "dummy", "cron": "yes"}', 422, "invalid-request"),
        ("POST", "/run", '{"name": "ghost", "cron": true, "frequency": "daily"}', 404, "not-found"),
        ("POST", "/run", '{"name": "dummy", "cron": true, "frequency": "monthly"}', 422, "invalid-request"),
        ("POST", "/regdata", '{"name": "d", "url": "not a url"}', 400, "bad-input"),
        ("POST", "/v1/tools", '{"name": "dummy", "image": "img", "pids": "12"}', 422, "invalid-request"),
        ("POST", "/v1/tools", '{"name": "dummy", "image": "img", "surprise": 1}', 422, "invalid-request"),
        ("POST", "/v1/schedules", '{"tool": "dummy", "cron": "61 * * * *"}', 400, "bad-input"),
        ("POST", "/v1/datasets", '{"name": "d", "url": "https://x/y", "depth": 0}', 400, "bad-input"),
        ("POST", "/register", oversized, 413, "too-large"),
        ("GET", "/v1/runs?limit=0", b"", 422, "invalid-request"),
        ("GET", "/no/such/route", b"", 404, "not-found"),
        ("DELETE", "/regtools", b"", 405, "method-not-allowed"),
    ]  # fmt: skip
    for method, path, body, expected, code in cases:
        response = api.client.request(
            method, path, content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == expected, (path, body[:80], response.text)
        error = response.json()["error"]
        assert error["code"] == code, (path, body[:80], error)
        assert error["message"] and "Traceback" not in response.text, response.text
    assert api.store.count(PREFIX + "/") == 0


def test_error_bodies_name_the_field_and_the_rule(api: Api) -> None:
    wrong_type = api.client.post("/register", json={"name": 5, "url": "img"})
    assert wrong_type.json() == {
        "error": {
            "code": "invalid-request",
            "message": "name: Input should be a valid string",
            "hint": None,
        }
    }
    rule = api.client.post("/register", json={"name": "Bad Name", "url": "img"}).json()
    assert rule["error"]["code"] == "bad-input"
    assert rule["error"]["message"].startswith("invalid tool name 'Bad Name': must match")
    too_large = api.client.post("/register", content=b"x" * 1_048_577)
    assert too_large.json() == {
        "error": {
            "code": "too-large",
            "message": "request body is larger than 1048576 bytes (see [serve] max_body)",
        }
    }


def test_an_unreachable_store_is_503(api: Api) -> None:
    api.store.down = True  # every call raises Unavailable, as an unreachable etcd does
    down = api.client.get("/v1/tools")
    assert down.status_code == 503, down.text
    assert down.json()["error"] == {
        "code": "unavailable",
        "message": "etcd at memory is unreachable: simulated outage",
        "hint": None,
    }
    assert api.client.get("/v1/events").status_code == 503  # before the stream starts


class BrokenStore(MemoryStore):
    def scan(self, prefix: str) -> list[Entry]:
        raise RuntimeError("disk on fire")


def test_an_unexpected_error_is_500_without_its_stack(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    services = make_services(tmp_path, BrokenStore(), ScriptedRunner())
    with open_client(services, raise_server_exceptions=False) as client:
        failed = client.get("/v1/tools")
    assert failed.status_code == 500
    assert failed.json() == {
        "error": {"code": "internal", "message": "internal error; see the server log", "hint": None}
    }
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("maomao.api", "ERROR", "GET /v1/tools failed: RuntimeError: disk on fire")
    ]


def test_non_loopback_needs_a_token(cli: Cli, tmp_path: Path) -> None:
    services = make_services(tmp_path, MemoryStore(), ScriptedRunner())
    refused = cli(["serve", "--host", "0.0.0.0", "--port", "0"], services)
    assert refused.code == 2
    assert refused.out == ""
    assert len(refused.err.strip().splitlines()) == 1 and "token" in refused.err


def test_every_route_checks_the_token(tmp_path: Path) -> None:
    token = "s3cret-token-for-tests"
    services = make_services(tmp_path, MemoryStore(), ScriptedRunner())
    with open_client(services, token=token) as client:
        authed = {"Authorization": f"Bearer {token}"}
        schema = client.get("/openapi.json", headers=authed).json()
        routes = [
            (method.upper(), path.replace("{name}", "x").replace("{run_id}", "x")
             .replace("{tool}", "x").replace("{sortable}", "x"))
            for path, ops in schema["paths"].items()
            for method in ops
        ] + [("GET", "/openapi.json"), ("GET", "/nothing-here")]  # fmt: skip
        assert len(routes) > 20
        for method, path in routes:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
                response = client.request(method, path, headers=headers, json={"name": "x"})
                assert response.status_code == 401, (method, path, headers)
                assert response.json()["error"]["code"] == "unauthorized"
                assert response.headers["www-authenticate"] == "Bearer"
        assert client.get("/v1/tools", headers=authed).status_code == 200
