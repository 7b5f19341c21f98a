"""Containers the runner could not clean up are removed before its next run: one whose
creation went unanswered (the engine may have made it, under load), by its name, and one
whose removal failed while the engine was away. Against a fake engine API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from maomao_cli.adapters.docker_runner import DockerRunner
from maomao_cli.config import DockerSettings
from maomao_cli.errors import Unavailable
from maomao_cli.ports import ContainerSpec


class FakeEngine:
    """Enough of docker.APIClient for the runner to create and remove; `fail` names the
    calls that time out."""

    def __init__(self) -> None:
        self.fail: set[str] = set()
        self.removed: list[str] = []
        self.api_version = "1.41"

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return dict(kwargs)

    def create_container(self, image: str, **kwargs: Any) -> dict[str, str]:
        if "create" in self.fail:
            raise requests.exceptions.ReadTimeout("read timed out")
        raise docker.errors.APIError("no such image: " + image)

    def remove_container(self, container: str, force: bool = False) -> None:
        if "remove" in self.fail:
            raise requests.exceptions.ConnectionError("engine away")
        self.removed.append(container)


def spec(tmp_path: Path, run: str) -> ContainerSpec:
    return ContainerSpec(image="img", name=f"maomao-t-{run}", env={}, data_dir=tmp_path)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> tuple[DockerRunner, FakeEngine]:
    fake = FakeEngine()
    runner = DockerRunner(DockerSettings())
    monkeypatch.setattr(runner, "_api", lambda: fake)
    return runner, fake


def test_a_creation_that_timed_out_is_removed_by_name_before_the_next_run(
    engine: tuple[DockerRunner, FakeEngine], tmp_path: Path
) -> None:
    runner, fake = engine
    fake.fail = {"create"}
    with pytest.raises(Unavailable):
        runner.run(spec(tmp_path, "first"))
    assert fake.removed == []
    fake.fail = set()
    result = runner.run(spec(tmp_path, "second"))
    assert result.status == "failed"  # the fake's answer to any creation
    assert fake.removed == ["maomao-t-first"]
    runner.run(spec(tmp_path, "third"))
    assert fake.removed == ["maomao-t-first"], "removed once, then forgotten"


def test_a_removal_that_failed_is_tried_again_until_it_succeeds(
    engine: tuple[DockerRunner, FakeEngine], tmp_path: Path
) -> None:
    runner, fake = engine
    fake.fail = {"create", "remove"}
    with pytest.raises(Unavailable):
        runner.run(spec(tmp_path, "first"))
    with pytest.raises(Unavailable):
        runner.run(spec(tmp_path, "second"))  # the engine is still away: both are kept
    fake.fail = set()
    runner.run(spec(tmp_path, "third"))
    assert sorted(fake.removed) == ["maomao-t-first", "maomao-t-second"]
