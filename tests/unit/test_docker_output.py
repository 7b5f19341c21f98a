"""A run's output is whole even when the engine's log stream ends early (cut under load,
or its follow ending before the last lines): the runner asks the engine for its last
line, and reads what it missed. Against a fake engine API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from maomao_cli.adapters.docker_runner import DockerRunner
from maomao_cli.config import DockerSettings
from maomao_cli.ports import ContainerSpec

OUTPUT = b"".join(b"line %d\n" % i for i in range(1, 101))


class FakeEngine:
    """One container that printed OUTPUT and exited 0; its stream delivers `streamed`
    bytes, then ends (or breaks, when `breaks`)."""

    def __init__(
        self, streamed: int, *, breaks: bool = False, kept: bytes = OUTPUT, output: bytes = OUTPUT
    ) -> None:
        self.output = output
        self.streamed = streamed
        self.breaks = breaks
        self.kept = kept  # what the engine still has (a rotated log keeps only its end)
        self.api_version = "1.41"
        self.log_reads: list[dict[str, Any]] = []

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return dict(kwargs)

    def create_container(self, image: str, **kwargs: Any) -> dict[str, str]:
        return {"Id": "c0ffee"}

    def start(self, container: str) -> None:
        pass

    def logs(self, container: str, **kwargs: Any) -> Any:
        if kwargs.get("stream"):
            return self._stream()
        self.log_reads.append(kwargs)
        if kwargs.get("tail") == 1:
            return self.kept.splitlines(keepends=True)[-1]
        return self.kept

    def _stream(self) -> Iterator[bytes]:
        part = self.output[: self.streamed]
        yield part[: len(part) // 2]
        yield part[len(part) // 2 :]
        if self.breaks:
            raise requests.exceptions.ChunkedEncodingError("connection broken")

    def inspect_container(self, container: str) -> dict[str, Any]:
        return {"State": {"Running": False, "ExitCode": 0}, "Image": "sha256:1"}

    def wait(self, container: str) -> dict[str, int]:
        return {"StatusCode": 0}

    def remove_container(self, container: str, force: bool = False) -> None:
        pass

    def close(self) -> None:
        pass


def run(
    engine: FakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, list[bytes]]:
    runner = DockerRunner(DockerSettings(), log_lines=5, poll_interval=0.01)
    monkeypatch.setattr(runner, "_api", lambda: engine)
    monkeypatch.setattr(runner, "_stream_client", lambda version: engine)
    raw: list[bytes] = []
    spec = ContainerSpec(image="img", name="maomao-t-1", env={}, data_dir=tmp_path)
    return runner.run(spec, on_raw=raw.append), raw


@pytest.mark.parametrize("breaks", [False, True], ids=["ended early", "broke"])
def test_lines_the_stream_missed_are_read_and_passed_on_once(
    breaks: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut = OUTPUT.index(b"line 61\n") + 3  # in the middle of line 61
    result, raw = run(FakeEngine(cut, breaks=breaks), tmp_path, monkeypatch)
    assert result.status == "succeeded"
    assert result.log_tail == [f"line {i}" for i in range(96, 101)]
    # The stream gave lines 1..60 and the start of 61; the re-read gives 61 whole, once.
    assert raw == [b"line %d" % i for i in range(1, 101)]


def test_a_last_line_without_its_newline_is_passed_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = OUTPUT + b"done"
    engine = FakeEngine(len(whole), kept=whole, output=whole)
    result, raw = run(engine, tmp_path, monkeypatch)
    assert raw[-2:] == [b"line 100", b"done"] and len(raw) == 101
    assert result.log_tail[-1] == "done"
    assert [read.get("tail") for read in engine.log_reads] == [1], "no re-read: it was whole"


def test_a_whole_stream_costs_one_look_at_the_engines_last_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = FakeEngine(len(OUTPUT))
    result, raw = run(engine, tmp_path, monkeypatch)
    assert raw == [b"line %d" % i for i in range(1, 101)]
    assert result.log_tail[-1] == "line 100"
    assert [read.get("tail") for read in engine.log_reads] == [1]


def test_a_log_the_engine_rotated_away_still_gives_the_engines_own_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = OUTPUT[OUTPUT.index(b"line 81\n") :]  # the engine kept only lines 81..100
    engine = FakeEngine(OUTPUT.index(b"line 31\n"), kept=kept)
    result, raw = run(engine, tmp_path, monkeypatch)
    assert result.log_tail == [f"line {i}" for i in range(81, 101)][-5:]
    assert raw == [b"line %d" % i for i in range(1, 31)], "nothing passed on out of line"
