"""The runner's own Engine API client (adapters/engine_api.py): the requests docker-py would
send, answers read as docker-py reads them, and its failures in a few words. On a scripted
server on a unix socket; the real engine's cases are tests/contract/test_runner_contract.py."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from maomao_cli.adapters.container_defaults import host_config
from maomao_cli.adapters.engine_api import (
    EngineAPI,
    EngineRefused,
    EngineUnreachable,
    container_config,
    speaks,
)
from maomao_cli.ports import ContainerSpec

Answer = Callable[[str, str, bytes], bytes]


def http(status: int, body: bytes, *, chunked: bool = False, piece: int = 5) -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
    if not chunked:
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    chunks = b"".join(
        f"{len(body[i : i + piece]):x}\r\n".encode() + body[i : i + piece] + b"\r\n"
        for i in range(0, len(body), piece)
    )
    return f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + chunks + b"0\r\n\r\n"


def frame(data: bytes, stream: int = 1) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


class FakeEngine:
    """Answers each request, one per connection, with `answer(method, target, body)`."""

    def __init__(self, path: Path, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen()
        self.url = f"unix://{path}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as reader:
                method, target, _ = reader.readline().decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (line := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = reader.read(int(headers.get("content-length", "0")))
                self.requests.append((method, target, headers, body))
                conn.sendall(self.answer(method, target, body))

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Callable[[Answer], FakeEngine]]:
    made: list[FakeEngine] = []

    def make(answer: Answer) -> FakeEngine:
        made.append(FakeEngine(tmp_path / f"engine{len(made)}.sock", answer))
        return made[-1]

    yield make
    for fake in made:
        fake.close()


# What is sent ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "memory, network, pids, rotation",
    [
        ("512m", "none", 256, ("10m", 3)),
        ("64m", "bridge", 10, ("1m", 5)),
        ("2g", "host", 1, ("5k", 1)),
    ],
)
def test_the_host_config_is_what_docker_py_builds_from_the_same_settings(
    tmp_path: Path, memory: str, network: str, pids: int, rotation: tuple[str, int]
) -> None:
    spec = ContainerSpec(
        image="img", name="n", env={}, data_dir=tmp_path, memory=memory, network=network,
        pids=pids, log_max_size=rotation[0], log_max_files=rotation[1],
    )  # fmt: skip
    docker_py = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    built = docker_py.create_host_config(
        binds={str(tmp_path): {"bind": spec.mount_point, "mode": "rw"}},
        privileged=False,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        mem_limit=memory,
        pids_limit=pids,
        network_mode=network,
        log_config={"type": "json-file", "config": host_config(spec)["LogConfig"]["Config"]},
        tmpfs=host_config(spec)["Tmpfs"],
    )
    assert host_config(spec) == built
    assert host_config(spec)["LogConfig"]["Config"] == {
        "max-size": rotation[0],
        "max-file": str(rotation[1]),
    }


def test_the_create_body_is_docker_py_s_without_its_nulls() -> None:
    docker_py = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    env, labels, hc = {"A": "1", "B": "x=y"}, {"maomao.tool": "t"}, {"Memory": 1}
    theirs = docker_py.create_container_config(
        "img", None, environment=env, labels=labels, user="1000:1000", host_config=hc, detach=True
    )
    ours = container_config("img", env, labels, "1000:1000", hc)
    assert ours == {key: value for key, value in theirs.items() if value is not None}


def test_each_call_is_one_request_on_its_own_connection(
    engine: Callable[[Answer], FakeEngine],
) -> None:
    def answer(method: str, target: str, body: bytes) -> bytes:
        if target.startswith("/containers/create"):
            return http(201, b'{"Id": "c1", "Warnings": []}')
        if target.endswith("/json"):
            return http(200, b'{"Id": "c1"}', chunked=True)
        return http(204, b"")

    fake = engine(answer)
    api = EngineAPI(fake.url, 5)
    assert api.create_container("reg/img:1", name="maomao-t-1", environment={"A": "1"}) == {
        "Id": "c1",
        "Warnings": [],
    }
    api.start("c1")
    assert api.inspect_image("reg/img:1") == {"Id": "c1"}
    api.remove_container("c1", force=True)
    api.stop("c1", timeout=3)
    assert [(m, t) for m, t, _, _ in fake.requests] == [
        ("POST", "/containers/create?name=maomao-t-1"),
        ("POST", "/containers/c1/start"),
        ("GET", "/images/reg/img:1/json"),
        ("DELETE", "/containers/c1?v=0&link=0&force=1"),
        ("POST", "/containers/c1/stop?t=3"),
    ]
    assert all(headers["connection"] == "close" for _, _, headers, _ in fake.requests)
    assert json.loads(fake.requests[0][3])["Env"] == ["A=1"]


def test_a_label_filter_is_sent_as_the_engine_reads_it(
    engine: Callable[[Answer], FakeEngine],
) -> None:
    fake = engine(lambda m, t, b: http(200, b'[{"Id": "a"}]'))
    found = EngineAPI(fake.url, 5).containers(all=True, filters={"label": ["maomao.member=x"]})
    assert found == [{"Id": "a"}]
    target = fake.requests[0][1]
    assert (
        target
        == "/containers/json?all=1&filters=%7B%22label%22%3A+%5B%22maomao.member%3Dx%22%5D%7D"
    )


# What is read ----------------------------------------------------------------------


def test_a_log_stream_gives_each_frame_whatever_the_chunks(
    engine: Callable[[Answer], FakeEngine],
) -> None:
    pieces = [b"line 1\nline", b" 2\n", b"x" * 70_000, b"err\n"]
    body = b"".join(frame(p, 1 if i % 2 else 2) for i, p in enumerate(pieces)) + frame(b"")
    fake = engine(lambda m, t, b: http(200, body, chunked=True, piece=3))
    api = EngineAPI(fake.url, None)
    assert list(api.logs("c1", stream=True, follow=True)) == pieces
    assert b"follow=1" in fake.requests[0][1].encode()
    assert api.logs("c1", tail=1) == b"".join(pieces)
    assert "follow=0" in fake.requests[1][1] and "tail=1" in fake.requests[1][1]


def test_a_stream_cut_inside_a_frame_ends_with_what_came_whole(
    engine: Callable[[Answer], FakeEngine],
) -> None:
    body = frame(b"whole\n") + frame(b"cut off here")[:9]
    fake = engine(lambda m, t, b: http(200, body))  # Content-Length: the stream just ends
    assert list(EngineAPI(fake.url, 5).logs("c1", stream=True, follow=True)) == [
        b"whole\n",
        b"c",
    ]


# Failures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, explanation",
    [
        (http(404, b'{"message": "No such container: c9"}'), "No such container: c9"),
        (http(409, b"plain text refusal\n"), "plain text refusal"),
        (http(500, b""), "X"),
    ],
    ids=["json", "text", "empty"],
)
def test_an_error_answer_is_refused_with_the_engines_own_words(
    engine: Callable[[Answer], FakeEngine], answer: bytes, explanation: str
) -> None:
    fake = engine(lambda m, t, b: answer)
    with pytest.raises(EngineRefused) as info:
        EngineAPI(fake.url, 5).inspect_container("c9")
    assert (info.value.status_code, info.value.explanation) == (
        int(answer.split()[1]),
        explanation,
    )


def test_no_socket_and_a_socket_nobody_serves_are_named(tmp_path: Path) -> None:
    with pytest.raises(EngineUnreachable, match=r"^no such socket$"):
        EngineAPI(f"unix://{tmp_path}/none.sock", 5).ping()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(tmp_path / "dead.sock"))
    dead.close()  # the file stays, nobody listens
    with pytest.raises(EngineUnreachable, match=r"^connection refused$"):
        EngineAPI(f"unix://{tmp_path}/dead.sock", 5).ping()


def test_an_engine_that_never_answers_is_named_after_the_timeout(tmp_path: Path) -> None:
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(str(tmp_path / "mute.sock"))
    mute.listen()  # accepts (the kernel does), never answers
    try:
        with pytest.raises(EngineUnreachable, match=r"^no answer within 0.05s$"):
            EngineAPI(f"unix://{tmp_path}/mute.sock", 0.05).ping()
    finally:
        mute.close()


@pytest.mark.parametrize(
    "answer",
    [
        b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"Id"',
        http(200, b'{"Id": "c1", "State": {}}', chunked=True)[:-12],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["short of its length", "chunks end early", "not a chunk size"],
)
def test_an_answer_cut_off_is_unreachable_not_a_crash(
    engine: Callable[[Answer], FakeEngine], answer: bytes
) -> None:
    fake = engine(lambda m, t, b: answer)
    with pytest.raises(EngineUnreachable, match="broke off"):
        EngineAPI(fake.url, 5).inspect_container("c1")


@pytest.mark.parametrize(
    "host, environ, ours",
    [
        ("unix:///var/run/docker.sock", {}, True),
        ("unix:///run/user/1000/docker.sock", {"DOCKER_CERT_PATH": "/c"}, True),
        ("unix:///var/run/docker.sock", {"DOCKER_TLS_VERIFY": "1"}, False),
        ("tcp://127.0.0.1:2375", {}, False),
        ("ssh://me@host", {}, False),
        ("npipe:////./pipe/docker_engine", {}, False),
    ],
)
def test_which_engines_this_client_speaks_to(
    host: str, environ: dict[str, str], ours: bool
) -> None:
    assert speaks(host, environ) is ours
