"""The gateway store's HTTP on a scripted server: chunked answers, kept connections the
server closed, and every answer it cannot use sent to the gRPC store instead (the real
etcd cases: tests/integration/test_etcd_gateway.py; the port contract: tests/contract)."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from maomao_cli.config import EtcdSettings
from maomao_cli.store.base import Store
from maomao_cli.store.etcd_gateway import GatewayStore
from maomao_cli.store.memory import MemoryStore


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def range_answer(*pairs: tuple[str, str], revision: int = 7) -> dict[str, object]:
    kvs = [
        {"key": b64(k), "value": b64(v), "mod_revision": "5", "create_revision": "4"}
        for k, v in pairs
    ]
    return {"header": {"revision": str(revision)}, "kvs": kvs, "count": str(len(kvs))}


def http(status: int, body: bytes, *, chunked: bool = False) -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
    if not chunked:
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    chunks = b"".join(
        f"{len(body[i : i + 5]):x}\r\n".encode() + body[i : i + 5] + b"\r\n"
        for i in range(0, len(body), 5)
    )
    return f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + chunks + b"0\r\n\r\n"


class FakeGateway:
    """Answers each request with `answer(path, body)`; closes each connection after one
    answer when `one_per_connection`."""

    def __init__(
        self, answer: Callable[[str, bytes], bytes], *, one_per_connection: bool = False
    ) -> None:
        self.answer = answer
        self.one_per_connection = one_per_connection
        self.server = socket.create_server(("127.0.0.1", 0))
        self.requests: list[tuple[str, bytes]] = []
        self.connections = 0
        self.closed = threading.Semaphore(0)  # released as each client closes its end
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.server.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while line := reader.readline():
                path = line.split()[1].decode()
                length = 0
                while (header := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                body = reader.read(length)
                self.requests.append((path, body))
                conn.sendall(self.answer(path, body))
                if self.one_per_connection:
                    return
        self.closed.release()

    def close(self) -> None:
        self.server.close()


class CountingFactory:
    """The gRPC store's stand-in: a memory store, and how often it was made."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store or MemoryStore()
        self.made = 0

    def __call__(self) -> Store:
        self.made += 1
        return self.store


@dataclass
class Rig:
    store: GatewayStore
    grpc: CountingFactory
    fake: FakeGateway | None


MakeRig = Callable[..., Rig]


@pytest.fixture
def make_rig() -> Iterator[MakeRig]:
    made: list[Rig] = []

    def make(
        answer: Callable[[str, bytes], bytes] | None = None,
        *,
        endpoints: tuple[str, ...] = (),
        one_per_connection: bool = False,
        fallback: Store | None = None,
    ) -> Rig:
        fake = FakeGateway(answer, one_per_connection=one_per_connection) if answer else None
        where = endpoints + ((fake.endpoint,) if fake else ())
        factory = CountingFactory(fallback)
        rig = Rig(GatewayStore(EtcdSettings(endpoints=where, timeout=5.0), factory), factory, fake)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.store.close()
        if rig.fake is not None:
            rig.fake.close()


def closed_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def json_answer(payload: dict[str, object], *, chunked: bool = False) -> Callable[..., bytes]:
    return lambda path, body: http(200, json.dumps(payload).encode(), chunked=chunked)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_range_answer_becomes_entries(make_rig: MakeRig, chunked: bool) -> None:
    rig = make_rig(json_answer(range_answer(("/p/a", "1"), ("/p/b", "")), chunked=chunked))
    page = rig.store.scan_page("/p/")
    assert [(e.key, e.value, e.mod_revision) for e in page.entries] == [
        ("/p/a", b"1", 5),
        ("/p/b", b"", 5),
    ]
    assert (page.revision, page.cursor) == (7, None)
    assert rig.grpc.made == 0


def test_the_request_is_the_json_of_etcds_range(make_rig: MakeRig) -> None:
    rig = make_rig(json_answer({**range_answer(("/p/a", "1")), "more": True}))
    page = rig.store.scan_page("/p/", limit=1, descending=True, keys_only=True, revision=3)
    assert page.cursor == "/p/a" and page.revision == 3
    assert rig.fake is not None
    [(path, body)] = rig.fake.requests
    assert path == "/v3/kv/range"
    assert json.loads(body) == {
        "key": b64("/p/"),
        "range_end": b64("/p0"),
        "sort_order": "DESCEND",
        "sort_target": "KEY",
        "limit": 1,
        "keys_only": True,
        "revision": 3,
    }


def test_a_kept_connection_the_server_closed_is_made_again(make_rig: MakeRig) -> None:
    rig = make_rig(json_answer(range_answer(("/p/a", "1"))), one_per_connection=True)
    for _ in range(3):
        entry = rig.store.get("/p/a")
        assert entry is not None and entry.value == b"1"
    assert rig.grpc.made == 0
    assert rig.fake is not None and rig.fake.connections == 3


@pytest.mark.parametrize(
    "answer",
    [
        lambda path, body: http(404, b"404 page not found"),
        lambda path, body: http(200, b"not json"),
        lambda path, body: http(200, b'{"kvs": [{"value": "x"}]}'),  # no key
        lambda path, body: b"SSH-2.0-OpenSSH\r\n",
    ],
    ids=["not found", "not json", "no key", "not http"],
)
def test_an_answer_it_cannot_use_is_asked_over_grpc(
    make_rig: MakeRig, answer: Callable[[str, bytes], bytes]
) -> None:
    fallback = MemoryStore()
    fallback.put("/p/a", b"from grpc")
    rig = make_rig(answer, fallback=fallback)
    entry = rig.store.get("/p/a")
    assert entry is not None and entry.value == b"from grpc"
    assert [e.key for e in rig.store.scan("/p/")] == ["/p/a"]
    assert rig.grpc.made == 1


def test_nothing_listening_is_left_to_grpc_to_name(make_rig: MakeRig) -> None:
    fallback = MemoryStore()
    fallback.put("/p/a", b"1")
    rig = make_rig(endpoints=(closed_endpoint(),), fallback=fallback)
    assert [e.key for e in rig.store.scan("/p/")] == ["/p/a"]
    assert rig.grpc.made == 1


def test_a_refused_endpoint_is_passed_over_for_the_next(make_rig: MakeRig) -> None:
    rig = make_rig(json_answer(range_answer(("/p/a", "1"))), endpoints=(closed_endpoint(),))
    assert rig.store.get("/p/a") is not None
    assert rig.grpc.made == 0


def test_a_put_is_the_json_of_etcds_put(make_rig: MakeRig) -> None:
    rig = make_rig(json_answer({"header": {"revision": "12"}}))
    assert rig.store.put("/p/a", b"1", lease=7) == 12
    assert rig.fake is not None
    [(path, body)] = rig.fake.requests
    assert path == "/v3/kv/put"
    assert json.loads(body) == {"key": b64("/p/a"), "value": b64("1"), "lease": "7"}
    assert rig.grpc.made == 0


@pytest.mark.parametrize(("answer", "deleted"), [({}, 0), ({"deleted": "3"}, 3)])
def test_a_delete_counts_what_etcd_deleted(
    make_rig: MakeRig, answer: dict[str, object], deleted: int
) -> None:
    rig = make_rig(json_answer({"header": {"revision": "12"}, **answer}))  # 0 is left out
    assert rig.store.delete("/p/a") is (deleted > 0)
    assert rig.store.delete_prefix("/p/") == deleted
    assert rig.fake is not None
    [(_, one), (_, prefix)] = rig.fake.requests
    assert json.loads(one) == {"key": b64("/p/a")}
    assert json.loads(prefix) == {"key": b64("/p/"), "range_end": b64("/p0")}
    assert rig.grpc.made == 0


def test_a_lease_is_granted_kept_alive_and_revoked_over_the_gateway(make_rig: MakeRig) -> None:
    answers = {
        "/v3/lease/grant": {"ID": "42", "TTL": "9"},
        "/v3/lease/keepalive": {"result": {"ID": "42", "TTL": "9"}},
        "/v3/lease/revoke": {"header": {"revision": "3"}},
    }
    rig = make_rig(lambda path, body: http(200, json.dumps(answers[path]).encode()))
    lease = rig.store.grant_lease(9)
    assert (lease.id, lease.ttl) == (42, 9)
    assert lease.refresh() is True
    answers["/v3/lease/keepalive"] = {"result": {"ID": "42"}}  # TTL left out: it is gone
    assert lease.refresh() is False
    lease.revoke()
    assert rig.fake is not None
    assert [path for path, _ in rig.fake.requests] == [
        "/v3/lease/grant",
        "/v3/lease/keepalive",
        "/v3/lease/keepalive",
        "/v3/lease/revoke",
    ]
    assert json.loads(rig.fake.requests[1][1]) == {"ID": "42"}
    assert rig.grpc.made == 0


def test_a_write_the_gateway_refused_is_sent_over_grpc_which_names_why(
    make_rig: MakeRig,
) -> None:
    # etcd refused it (nothing was written): gRPC sends it again and says why in its words.
    rig = make_rig(lambda path, body: http(403, b'{"error": "permission denied", "code": 7}'))
    rig.store.put("/p/a", b"1")
    assert rig.grpc.store.get("/p/a") is not None
    assert rig.grpc.made == 1


def test_a_keep_alive_answered_with_an_error_is_asked_over_grpc(make_rig: MakeRig) -> None:
    # A stream's error comes with status 200; the lease is not the gateway's to judge.
    fallback = MemoryStore()
    lease = fallback.grant_lease(9)
    rig = make_rig(json_answer({"error": "etcdserver: no leader", "code": 14}), fallback=fallback)
    assert rig.store.lease_of(lease.id, 9).refresh() is True
    assert rig.grpc.made == 1


def test_compare_and_set_writes_go_over_grpc(make_rig: MakeRig) -> None:
    # Sent twice, a create would report its own first sending as somebody else's key.
    rig = make_rig(json_answer(range_answer()))
    assert rig.store.create("/p/a", b"1") is True
    entry = rig.grpc.store.get("/p/a")
    assert entry is not None
    assert rig.store.replace("/p/a", b"2", mod_revision=entry.mod_revision) is True
    assert rig.grpc.made == 1
    assert rig.fake is not None and rig.fake.requests == []


def test_close_closes_every_threads_connection(make_rig: MakeRig) -> None:
    rig = make_rig(json_answer(range_answer(("/p/a", "1"))))
    readers = [threading.Thread(target=rig.store.get, args=("/p/a",)) for _ in range(3)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert rig.fake is not None and rig.fake.connections == 3
    rig.store.close()
    assert all(rig.fake.closed.acquire(timeout=10) for _ in range(3))
    assert rig.grpc.made == 0
