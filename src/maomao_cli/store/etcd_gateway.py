"""A command's store: reads over etcd's JSON gateway, everything else over gRPC.

Why: a command that only reads (`maomao tools`, `runs`, `status`) spent more time
importing gRPC, protobuf and python3-etcd3 (about 65 ms) than asking etcd. etcd serves
the same API as JSON over HTTP on its client port (`/v3/kv/range`, base64 keys and
values, 64-bit numbers as strings), so reads need only a socket. So do the writes
that `maomao run`, `register` and the other commands make most: a put, a delete, a
lease (granted, kept alive, revoked). Compare-and-set writes (create, replace,
delete_if, claims) and watches go through EtcdStore, built on first need.

What the gateway cannot answer is asked again over gRPC, which says what is wrong in
the words every other request uses (a refused connection, denied access, a full
database). That is why only requests that are safe to send twice go over the gateway:
reads, and writes whose second sending leaves etcd as the first did (a put of the same
value, a delete, a lease's keep-alive or revocation; a second grant leaves a lease
nobody keeps alive, which expires). A compare-and-set sent twice could report its own
first sending as somebody else's. The exception is a request sent and not answered in
time: asking again would double the wait, so it is translated here, as python3-etcd3's
timeout is, and the quorum is probed the same way. HTTP/1.1 by hand, because
`http.client` alone costs a third of what gRPC does to import.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..config import EtcdSettings
from ..errors import MaomaoError
from .base import (
    PAGE_SIZE,
    Claim,
    ClaimOutcome,
    Entry,
    Lease,
    Page,
    Store,
    StoreStatus,
    Watch,
    paged_scan,
)
from .deadlines import call_deadline
from .etcd_paging import page_bounds, range_end
from .etcd_status import COMPACTED, QUOTA, gauges, wanted_lines
from .gateway_http import Connection, NoAnswer

# What a malformed answer raises as it is read (binascii.Error is a ValueError).
UNREADABLE = (KeyError, TypeError, ValueError, AttributeError, IndexError)


def b64(raw: str | bytes) -> str:
    return base64.b64encode(raw.encode() if isinstance(raw, str) else raw).decode()


def entry(kv: dict[str, Any]) -> Entry:
    """One kv of a JSON range answer (proto3 JSON leaves out fields at their default)."""
    return Entry(
        key=base64.b64decode(kv["key"]).decode(),
        value=base64.b64decode(kv.get("value", "")),
        mod_revision=int(kv.get("mod_revision", 0)),
        create_revision=int(kv.get("create_revision", 0)),
        lease=int(kv.get("lease", 0)),
    )


class GatewayLease:
    """A lease kept alive and revoked over the gateway (gRPC when it gives no answer)."""

    def __init__(self, store: GatewayStore, lease_id: int, ttl: int) -> None:
        self._store = store
        self._id = lease_id
        self._ttl = ttl

    @property
    def id(self) -> int:
        return self._id

    @property
    def ttl(self) -> int:
        return self._ttl

    def refresh(self) -> bool:
        # A stream's one answer: {"result": {...}}, its TTL left out once the lease is gone;
        # an error is {"error": ...}, also with status 200: asked again over gRPC.
        answer = self._store._post("/v3/lease/keepalive", {"ID": str(self._id)})
        if answer is not None and isinstance(answer.get("result"), dict):
            with contextlib.suppress(*UNREADABLE):
                return int(answer["result"].get("TTL", 0)) > 0
        return self._store.grpc.lease_of(self._id, self._ttl).refresh()

    def revoke(self) -> None:
        if self._store._post("/v3/lease/revoke", {"ID": str(self._id)}) is None:
            self._store.grpc.lease_of(self._id, self._ttl).revoke()


class GatewayStore:
    """The Store port for commands: reads and the writes safe to send twice over the JSON
    gateway, the rest over gRPC."""

    def __init__(self, settings: EtcdSettings, grpc_store: Callable[[], Store]) -> None:
        self._settings = settings
        self._make_grpc = grpc_store
        self._grpc: Store | None = None
        self._grpc_lock = threading.Lock()
        self._timeout = call_deadline(settings.timeout)
        self._local = threading.local()  # each thread its own connection
        self._open: set[Connection] = set()  # every thread's, for close()
        self._open_lock = threading.Lock()
        self._token: str | None = None
        # No gateway to use: none answered (a proxy, a disabled gateway), or the client
        # certificate (etcd refuses gateway requests that present one with a CommonName,
        # as the ones of `maomao etcd init` have: it could not authenticate by it).
        self._gave_up = bool(settings.cert_file)

    # --- the gRPC store, for everything the gateway does not do ---

    @property
    def grpc(self) -> Store:
        with self._grpc_lock:
            if self._grpc is None:
                self._grpc = self._make_grpc()
            return self._grpc

    @property
    def endpoint(self) -> str:
        return ",".join(self._settings.endpoints)

    # --- the reads ---

    def get(self, key: str) -> Entry | None:
        answer = self._range({"key": b64(key)})
        if answer is not None:
            with contextlib.suppress(*UNREADABLE):
                kvs = answer.get("kvs") or []
                return entry(kvs[0]) if kvs else None
        return self.grpc.get(key)

    def scan(self, prefix: str) -> list[Entry]:
        return self.scan_with_revision(prefix)[0]

    def scan_with_revision(self, prefix: str) -> tuple[list[Entry], int]:
        return paged_scan(self, prefix)

    def scan_page(
        self,
        prefix: str,
        *,
        limit: int = PAGE_SIZE,
        cursor: str | None = None,
        descending: bool = False,
        keys_only: bool = False,
        revision: int | None = None,
    ) -> Page:
        start, stop = page_bounds(prefix, cursor, descending)
        request: dict[str, Any] = {
            "key": b64(start),
            "range_end": b64(stop),
            # Ascending by key is etcd's own order (asked for, etcd sorts the whole range).
            "sort_order": "DESCEND" if descending else "NONE",
            "sort_target": "KEY",
            "limit": max(limit, 1),
            "keys_only": keys_only,
        }
        if revision is not None:
            request["revision"] = revision
        answer = self._range(request)
        if answer is not None:
            with contextlib.suppress(*UNREADABLE):
                return self._page(answer, revision, descending)
        return self.grpc.scan_page(
            prefix,
            limit=limit,
            cursor=cursor,
            descending=descending,
            keys_only=keys_only,
            revision=revision,
        )

    @staticmethod
    def _page(answer: dict[str, Any], revision: int | None, descending: bool) -> Page:
        entries = [entry(kv) for kv in answer.get("kvs") or []]
        next_cursor = None
        if answer.get("more") and entries:
            last = entries[-1].key
            next_cursor = last if descending else last + "\0"
        return Page(entries, revision or int(answer["header"]["revision"]), next_cursor)

    def count(self, prefix: str) -> int:
        bounds = {"key": b64(prefix), "range_end": b64(range_end(prefix)), "count_only": True}
        answer = self._range(bounds)
        if answer is not None:
            with contextlib.suppress(*UNREADABLE):
                return int(answer.get("count", 0))
        return self.grpc.count(prefix)

    def status(self) -> StoreStatus:
        status = self._post("/v3/maintenance/status", {})
        alarms = self._post("/v3/maintenance/alarm", {"action": "GET"}) if status else None
        connection: Connection | None = getattr(self._local, "connection", None)
        if status is not None and alarms is not None and connection is not None:
            with contextlib.suppress(*UNREADABLE):
                return self._status(connection.netloc, status, alarms, self._metrics())
        return self.grpc.status()

    @staticmethod
    def _status(
        netloc: str, status: dict[str, Any], alarms: dict[str, Any], metrics: dict[str, float]
    ) -> StoreStatus:
        quota, compacted = metrics.get(QUOTA), metrics.get(COMPACTED)
        header = status.get("header", {})
        return StoreStatus(
            endpoint=netloc,
            version=str(status.get("version", "")),
            leader=int(status.get("leader", 0)),
            member_id=int(header.get("member_id", 0)),
            raft_index=int(status.get("raftIndex", 0)),
            db_size=int(status.get("dbSize", 0)),
            revision=int(header.get("revision", 0)),
            alarms=tuple(str(a.get("alarm", "NONE")) for a in alarms.get("alarms") or []),
            quota=int(quota) if quota is not None else None,
            compact_revision=int(compacted) if compacted is not None else None,
        )

    # --- the writes safe to send twice ---

    def put(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        request = {"key": b64(key), "value": b64(value)}
        if lease is not None:
            request["lease"] = str(lease)
        answer = self._post("/v3/kv/put", request)
        if answer is not None:
            with contextlib.suppress(*UNREADABLE):
                return int(answer["header"]["revision"])
        return self.grpc.put(key, value, lease=lease)

    def delete(self, key: str) -> bool:
        answer = self._post("/v3/kv/deleterange", {"key": b64(key)})
        if answer is not None:
            with contextlib.suppress(*UNREADABLE):
                return int(answer.get("deleted", 0)) > 0  # left out when 0
        return self.grpc.delete(key)

    def delete_prefix(self, prefix: str) -> int:
        bounds = {"key": b64(prefix), "range_end": b64(range_end(prefix))}
        answer = self._post("/v3/kv/deleterange", bounds)
        if answer is not None:
            with contextlib.suppress(*UNREADABLE):
                return int(answer.get("deleted", 0))
        return self.grpc.delete_prefix(prefix)

    def grant_lease(self, ttl: int) -> Lease:
        answer = self._post("/v3/lease/grant", {"TTL": ttl})
        if answer is not None and not answer.get("error"):
            with contextlib.suppress(*UNREADABLE):
                return GatewayLease(self, int(answer["ID"]), int(answer["TTL"]))
        return self.grpc.grant_lease(ttl)

    def lease_of(self, lease_id: int, ttl: int) -> Lease:
        return GatewayLease(self, lease_id, ttl)

    # --- everything else: gRPC ---

    def create(self, key: str, value: bytes, *, lease: int | None = None) -> bool:
        return self.grpc.create(key, value, lease=lease)

    def claim(self, claims: Sequence[Claim]) -> list[ClaimOutcome | MaomaoError]:
        return self.grpc.claim(claims)

    def replace(self, key: str, value: bytes, *, mod_revision: int) -> bool:
        return self.grpc.replace(key, value, mod_revision=mod_revision)

    def delete_if(self, key: str, *, mod_revision: int) -> bool:
        return self.grpc.delete_if(key, mod_revision=mod_revision)

    def watch(self, prefix: str, *, start_revision: int | None = None) -> Watch:
        return self.grpc.watch(prefix, start_revision=start_revision)

    def close(self) -> None:
        with self._open_lock:
            connections, self._open = self._open, set()
        for connection in connections:
            connection.close()
        self._local.connection = None
        if self._grpc is not None:
            self._grpc.close()
            self._grpc = None

    # --- HTTP ---

    def _range(self, request: dict[str, Any]) -> dict[str, Any] | None:
        return self._post("/v3/kv/range", request)

    def _post(self, path: str, request: dict[str, Any]) -> dict[str, Any] | None:
        """The gateway's JSON answer; None when it gave none (ask over gRPC)."""
        if self._gave_up:
            return None
        body = json.dumps(request).encode()
        try:
            status, data = self._send("POST", path, body)
            if status == 401 and self._settings.user is not None:  # a token gone stale
                self._token = None
                status, data = self._send("POST", path, body)
            answer = json.loads(data) if status == 200 else None
        except TimeoutError:
            self._drop()
            from .etcd_translate import deadline_exceeded  # grpc: only on this path

            raise deadline_exceeded(self._settings) from None
        except (OSError, ValueError, NoAnswer):
            self._drop()
            return None
        return answer if isinstance(answer, dict) else None

    def _metrics(self) -> dict[str, float]:
        """The two gauges `maomao status` shows, from the member's /metrics."""
        try:
            status, data = self._send("GET", "/metrics", b"")
        except (OSError, ValueError, NoAnswer):
            self._drop()
            return {}
        return gauges(wanted_lines(data)) if status == 200 else {}

    def _send(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        token = self._auth_token() if path != "/v3/auth/authenticate" else None
        connection = self._connection()
        reused = connection.used
        try:
            return connection.request(method, path, body, token)
        except TimeoutError:
            raise
        except (OSError, NoAnswer):
            if not reused:
                raise
            # A kept connection the member closed while idle: once more, on a new one.
            self._drop()
            return self._connection().request(method, path, body, token)

    def _auth_token(self) -> str | None:
        settings = self._settings
        if settings.user is None:
            return None
        if self._token is None:
            credentials = {"name": settings.user, "password": settings.password or ""}
            status, data = self._send(
                "POST", "/v3/auth/authenticate", json.dumps(credentials).encode()
            )
            if status != 200:
                raise NoAnswer(f"authentication answered {status}")
            self._token = str(json.loads(data)["token"])
        return self._token

    def _connection(self) -> Connection:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        endpoints = self._settings.endpoints
        each = max(self._timeout / max(len(endpoints), 1), 0.2)
        for netloc in endpoints:  # in order, as the gRPC client fails over
            host, _, port = netloc.rpartition(":")
            name = host.strip("[]")
            try:
                # An ASCII name as bytes: a str is encoded with the IDNA codec, whose import
                # (encodings.idna, stringprep) costs a read command about 2.5 ms.
                where = name.encode() if name.isascii() else name
                sock = socket.create_connection((where, int(port)), timeout=each)  # type: ignore[arg-type]
            except (OSError, ValueError):
                continue
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock = self._secure(sock, name)
            except OSError as exc:  # a TLS file, certificate or handshake: gRPC says which
                sock.close()
                raise NoAnswer(f"TLS: {exc}") from None
            sock.settimeout(self._timeout)
            self._local.connection = connection = Connection(sock, netloc)
            with self._open_lock:
                self._open.add(connection)
            return connection
        self._gave_up = True  # nothing answers: gRPC names it (refused, timed out, ...)
        raise NoAnswer("no endpoint accepted a connection")

    def _secure(self, sock: socket.socket, host: str) -> socket.socket:
        settings = self._settings
        if not settings.ca_file:
            return sock
        import ssl

        context = ssl.create_default_context(cafile=settings.ca_file)
        if settings.cert_file:
            context.load_cert_chain(settings.cert_file, settings.key_file)
        return context.wrap_socket(sock, server_hostname=host)

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
            with self._open_lock:
                self._open.discard(connection)
