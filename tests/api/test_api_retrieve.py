"""`POST /retrieve` in-process, cloning from real git servers (git://, started by the tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitservers import git_daemon, git_http, git_root, seed_repo  # noqa: F401  (fixtures)
from servers import free_port

from .conftest import Api


def test_retrieve_clones_the_dataset_once(
    api: Api, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    seed = request.getfixturevalue("seed_repo")
    datasets = tmp_path / "data" / "datasets"
    client = api.client
    added = client.post("/regdata", json={"name": "census", "url": seed.urls["git"]})
    assert added.status_code == 200, added.text

    cloned = client.post("/retrieve", json={"name": "census"})
    assert cloned.status_code == 200, cloned.text
    assert cloned.json() == {"status": "cloned", "name": "census", "path": str(datasets / "census")}
    assert (datasets / "census" / "README.md").read_text() == "seed dataset\n"

    again = client.post("/retrieve", json={"name": "census"})
    assert again.status_code == 409, again.text
    assert again.json()["error"] == {
        "code": "already-cloned",
        "message": f"dataset 'census' is already cloned on this server at {datasets / 'census'}",
        "hint": "update it with `maomao dataset pull` on the server",
    }

    assert client.post("/retrieve", json={"name": "ghost"}).status_code == 404
    bad = client.post("/retrieve", json={"name": "../x"})
    assert bad.status_code in (400, 422), bad.text

    closed = f"git://127.0.0.1:{free_port()}/nothing.git"
    assert client.post("/regdata", json={"name": "gone", "url": closed}).status_code == 200
    failed = client.post("/retrieve", json={"name": "gone"})
    assert failed.status_code == 502, failed.text
    assert "connection refused" in failed.json()["error"]["message"]
    assert sorted(p.name for p in datasets.iterdir()) == ["census"]
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()
