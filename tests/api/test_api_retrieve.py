"""`POST /retrieve` in-process: the dataset service clones through the fake git."""

from __future__ import annotations

from pathlib import Path

from .conftest import Api

URL = "https://git.example.org/lab/census.git"
GONE = "git://127.0.0.1:9/nothing.git"


def test_retrieve_clones_the_dataset_once(api: Api, tmp_path: Path) -> None:
    api.git.add_remote(URL, {"README.md": "seed dataset\n"})
    api.git.add_remote(GONE).reachable = False
    datasets = tmp_path / "data" / "datasets"
    client = api.client
    added = client.post("/regdata", json={"name": "census", "url": URL})
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
    assert api.git.calls == ["clone"]  # the second request cloned nothing

    assert client.post("/retrieve", json={"name": "ghost"}).status_code == 404
    bad = client.post("/retrieve", json={"name": "../x"})
    assert bad.status_code in (400, 422), bad.text

    assert client.post("/regdata", json={"name": "gone", "url": GONE}).status_code == 200
    failed = client.post("/retrieve", json={"name": "gone"})
    assert failed.status_code == 502, failed.text
    assert failed.json()["error"]["code"] == "git"
    assert "connection refused" in failed.json()["error"]["message"]
    assert sorted(p.name for p in datasets.iterdir()) == ["census"]
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()
