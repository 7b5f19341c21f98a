"""The etcd adapter of the store port, over python3-etcd3 (gRPC).

Every call is bounded by the configured timeout and every failure becomes one
MaomaoError naming the endpoint: Unavailable when etcd cannot be reached,
BadInput for refused credentials. Create this object after any fork(): gRPC
channels do not survive one.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

# gRPC's C core logs failed TLS handshakes to stderr itself (a second line beside our one
# error); the error we raise says it.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import etcd3
import etcd3.exceptions
import etcd3.watch
import grpc
from etcd3 import etcdrpc
from etcd3.client import Endpoint, EtcdTokenCallCredentials

from ..adapters import etcderrors
from ..config import EtcdSettings
from ..errors import BadInput, Compacted, EtcdUnreachable, MaomaoError, Unavailable
from .base import PAGE_SIZE, Claim, ClaimOutcome, Entry, Event, Page, StoreStatus

T = TypeVar("T")

# etcd's AlarmType values (etcdserverpb.AlarmType).
_ALARMS = {1: "NOSPACE", 2: "CORRUPT"}


class _SixValues:
    """python3-etcd3 0.13's watch thread calls `six.itervalues` without importing six,
    so a broken watch stream never reaches its callbacks; give it the one function."""

    @staticmethod
    def itervalues(mapping: dict[Any, Any]) -> Iterator[Any]:
        return iter(mapping.values())


if not hasattr(etcd3.watch, "six"):
    etcd3.watch.six = _SixValues

HINT = etcderrors.LOCAL_HINT
# gRPC's client refuses responses over 4 MiB by default; etcd's server sends up to
# math.MaxInt32 and its own Go client receives as much. Paged reads keep every response
# far below either: this is the second line of defence, not the first.
MAX_RECEIVE = 2**31 - 1
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_RECEIVE),
    ("grpc.max_send_message_length", MAX_RECEIVE),
]
# Seconds one member may take to answer the quorum probe after a request timed out.
PROBE_TIMEOUT = 1.0
# A failed endpoint is retried after this many seconds (python3-etcd3 defaults to 300,
# which would keep a worker off a recovered single-member cluster for five minutes).
ENDPOINT_RETRY = 1.0


def _range_end(prefix: str) -> bytes:
    raw = bytearray(prefix.encode())
    for i in range(len(raw) - 1, -1, -1):
        if raw[i] < 0xFF:
            raw[i] += 1
            return bytes(raw[: i + 1])
    return b"\0"


class EtcdLease:
    def __init__(self, store: EtcdStore, lease: Any) -> None:
        self._store = store
        self._lease = lease

    @property
    def id(self) -> int:
        return int(self._lease.id)

    @property
    def ttl(self) -> int:
        return int(self._lease.ttl)

    def refresh(self) -> bool:
        responses = self._store._call(lambda c: list(c.refresh_lease(self._lease.id)))
        return bool(responses) and all(r.TTL > 0 for r in responses)

    def revoke(self) -> None:
        self._store._call(lambda c: c.revoke_lease(self._lease.id))


class EtcdWatch:
    def __init__(self, store: EtcdStore, prefix: str, start_revision: int | None) -> None:
        self._store = store
        self._queue: queue.Queue[Any] = queue.Queue()
        self._cancelled = threading.Event()
        kwargs: dict[str, Any] = {"range_end": _range_end(prefix)}
        if start_revision is not None:
            kwargs["start_revision"] = start_revision
        self._watcher: Any = cast(Any, None)  # set by add(), on the stream it uses

        def add(c: Any) -> int:
            # Remember the stream it lives on: a new token opens a new one for later watches.
            self._watcher = c.watcher
            return int(c.add_watch_callback(prefix, self._queue.put, **kwargs))

        self._watch_id = store._call(add)
        if self._watch_id < 0 and store._settings.user is not None:
            # etcd refuses a watch on a stream whose token expired only by cancelling it
            # at once (id -1): authenticate again and open it on a new stream.
            with contextlib.suppress(Exception):
                self._watcher.cancel(self._watch_id)
            store._reauthenticate()
            self._watch_id = store._call(add)
        if self._watch_id < 0:
            raise BadInput(
                f"etcd at {store.endpoint} refused to watch {prefix}",
                hint="check the etcd user's role: it needs read access to the maomao prefix",
            )

    def __iter__(self) -> Iterator[Event]:
        while not self._cancelled.is_set():
            response = self._queue.get()
            if response is None or self._cancelled.is_set():
                return
            if isinstance(response, BaseException):
                error = self._store._translate(response)
                if not isinstance(error, Compacted):
                    self._store._watch_broke(self._watcher)
                raise error
            for event in response.events:
                is_put = isinstance(event, etcd3.events.PutEvent)
                yield Event(
                    type="put" if is_put else "delete",
                    key=event.key.decode(),
                    value=bytes(event.value) if is_put else None,
                    revision=int(event.mod_revision),
                )

    def cancel(self) -> None:
        if self._cancelled.is_set():
            return
        self._cancelled.set()
        self._queue.put(None)
        # The connection may already be gone; there is nothing to cancel then.
        with contextlib.suppress(Exception):
            self._watcher.cancel(self._watch_id)


class EtcdStore:
    def __init__(self, settings: EtcdSettings) -> None:
        self._settings = settings
        self._timeout = settings.timeout
        self._auth_lock = threading.Lock()
        creds = None
        if settings.ca_file:
            try:
                creds = etcd3.MultiEndpointEtcd3Client.get_secure_creds(
                    settings.ca_file, settings.key_file, settings.cert_file
                )
            except OSError as exc:
                raise BadInput(
                    f"cannot read etcd TLS file: {exc}",
                    hint="check [etcd] ca_file, cert_file and key_file",
                ) from None
        endpoints = []
        for netloc in settings.endpoints:
            host, _, port = netloc.rpartition(":")
            endpoints.append(
                Endpoint(
                    host.strip("[]"),
                    int(port),
                    secure=creds is not None,
                    creds=creds,
                    time_retry=ENDPOINT_RETRY,
                    opts=cast(Any, CHANNEL_OPTIONS),  # typed dict, passed on as gRPC's list
                )
            )
        try:
            self._client = etcd3.MultiEndpointEtcd3Client(
                endpoints=endpoints,
                timeout=self._timeout,
                user=settings.user,
                password=settings.password,
                failover=True,
            )
        except (grpc.RpcError, etcd3.exceptions.Etcd3Exception) as exc:
            raise self._translate(exc) from None

    @property
    def endpoint(self) -> str:
        return ",".join(self._settings.endpoints)

    # gRPC and python3-etcd3 failures become maomao errors in adapters/etcderrors.py; a
    # request that found no answering quorum is then told apart by asking the members.
    def _translate(self, exc: BaseException, *, probe: bool = True) -> MaomaoError:
        if isinstance(exc, MaomaoError):
            return exc
        if isinstance(exc, etcd3.exceptions.RevisionCompactedError):
            return Compacted(
                f"etcd at {self.endpoint}: the revisions watched were compacted "
                f"(the oldest kept is {exc.compacted_revision})",
                int(exc.compacted_revision),
            )
        endpoints = list(self._settings.endpoints)
        error = etcderrors.from_exception(
            exc,
            self.endpoint,
            self._timeout,
            local_hint=etcderrors.nothing_listens(endpoints),
        )
        # A timeout or a missing leader while some member answers: is the quorum gone?
        # (Never when nothing listens on the one local endpoint: that is said as it is.)
        unanswered = type(error) is EtcdUnreachable and error.hint is None
        if probe and (unanswered or type(error) is Unavailable):
            return self._quorum_probe() or error
        return error

    def _quorum_probe(self) -> MaomaoError | None:
        """NoQuorum when fewer voting members answer than a quorum needs; None when that
        is not the cause (or cannot be told)."""
        from ..adapters.etcdadmin import Tls, connect, netloc

        settings = self._settings
        try:
            tls = None
            if settings.ca_file:
                tls = Tls(
                    ca=Path(settings.ca_file).read_bytes(),
                    cert=Path(settings.cert_file).read_bytes() if settings.cert_file else None,
                    key=Path(settings.key_file).read_bytes() if settings.key_file else None,
                )
            with connect(list(settings.endpoints), tls, timeout=PROBE_TIMEOUT) as admin:
                voters = [m for m in admin.members() if not m.is_learner]
                reachable = 0
                for member in voters:
                    for url in member.client_urls[:1]:
                        with contextlib.suppress(MaomaoError):
                            admin.status(netloc(url), timeout=PROBE_TIMEOUT)
                            reachable += 1
        except (MaomaoError, OSError):
            return None
        if voters and reachable < len(voters) // 2 + 1:
            return etcderrors.no_quorum(reachable, len(voters))
        return None

    def _call(self, fn: Callable[[Any], T]) -> T:
        # Two kinds of failure are safe to send again, because the request did nothing:
        # an expired auth token, and a member that could not be reached at all (the
        # client then moves to another endpoint). A timeout is not: it may have applied.
        reauthenticated = False
        unreachable = 0
        while True:
            try:
                return fn(self._client)
            except (grpc.RpcError, etcd3.exceptions.Etcd3Exception, ValueError) as exc:
                if not reauthenticated and self._token_expired(exc):
                    self._reauthenticate()
                    reauthenticated = True
                    continue
                if isinstance(
                    exc, etcd3.exceptions.ConnectionFailedError
                ) and unreachable + 1 < len(self._settings.endpoints):
                    unreachable += 1
                    continue
                raise self._translate(exc) from None

    def _watch_broke(self, watcher: Any) -> None:
        """A watch stream failed: its member is down, or has left the cluster. Mark the
        endpoint failed (and drop its stubs) so the next watch opens on another one, as a
        failed request does; python3-etcd3 would reuse the stream's dead channel."""
        c = self._client
        with contextlib.suppress(Exception):
            if c._stubs.get("watcher") is watcher:
                c.endpoint_in_use.fail()
                c._clear_old_stubs()

    def _token_expired(self, exc: BaseException) -> bool:
        """etcd's simple tokens expire after --auth-token-ttl (300 s) unused, and a token goes
        stale when the auth store changes; python3-etcd3 authenticates only once."""
        if self._settings.user is None or not isinstance(exc, grpc.RpcError):
            return False
        details = exc.details() or ""
        return "invalid auth token" in details or "revision of auth store is old" in details

    def _reauthenticate(self) -> None:
        settings, c = self._settings, self._client
        with self._auth_lock:
            try:
                response = c.authstub.Authenticate(
                    etcdrpc.AuthenticateRequest(name=settings.user, password=settings.password),
                    self._timeout,
                )
            except grpc.RpcError as exc:
                raise self._translate(exc) from None
            c.metadata = (("token", response.token),)
            c.call_credentials = grpc.metadata_call_credentials(
                EtcdTokenCallCredentials(response.token)
            )
            # Running watches keep their stream (etcd checks the token when a watch is
            # created); new ones need a stream opened with the new token.
            c._stubs.pop("watcher", None)

    @staticmethod
    def _entry(value: Any, meta: Any) -> Entry:
        return Entry(
            key=meta.key.decode(),
            value=bytes(value),
            mod_revision=int(meta.mod_revision),
            create_revision=int(meta.create_revision),
            lease=int(meta.lease_id),
        )

    def get(self, key: str) -> Entry | None:
        value, meta = self._call(lambda c: c.get(key))
        return None if meta is None else self._entry(value, meta)

    def scan(self, prefix: str) -> list[Entry]:
        return self.scan_with_revision(prefix)[0]

    def scan_with_revision(self, prefix: str) -> tuple[list[Entry], int]:
        entries: list[Entry] = []
        page = self.scan_page(prefix)
        entries.extend(page.entries)
        while page.cursor is not None:
            page = self.scan_page(prefix, cursor=page.cursor, revision=page.revision)
            entries.extend(page.entries)
        return entries, page.revision

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
        end = _range_end(prefix)
        # Ascending pages continue at the cursor; descending ones end (exclusively) there.
        start, stop = (prefix, cursor or end) if descending else (cursor or prefix, end)
        response = self._call(
            lambda c: c.get_range_response(
                start,
                stop,
                sort_order="descend" if descending else "ascend",
                sort_target="key",
                limit=max(limit, 1),
                keys_only=keys_only,
                revision=revision,
            )
        )
        entries = [
            Entry(
                key=kv.key.decode(),
                value=bytes(kv.value),
                mod_revision=int(kv.mod_revision),
                create_revision=int(kv.create_revision),
                lease=int(kv.lease),
            )
            for kv in response.kvs
        ]
        next_cursor = None
        if response.more and entries:
            last = entries[-1].key
            next_cursor = last if descending else last + "\0"
        return Page(entries, revision or int(response.header.revision), next_cursor)

    def count(self, prefix: str) -> int:
        response = self._call(
            lambda c: c.get_range_response(prefix, _range_end(prefix), count_only=True)
        )
        return int(response.count)

    def put(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        response = self._call(lambda c: c.put(key, value, lease=lease))
        return int(response.header.revision)

    def create(self, key: str, value: bytes, *, lease: int | None = None) -> bool:
        def txn(c: Any) -> bool:
            ok, _ = c.transaction(
                compare=[c.transactions.create(key) == 0],
                success=[c.transactions.put(key, value, lease=lease)],
                failure=[],
            )
            return bool(ok)

        return self._call(txn)

    def claim(self, claims: Sequence[Claim]) -> list[ClaimOutcome | MaomaoError]:
        expired: list[bool] = []
        outcomes = self._claim_once(claims, expired)
        if not expired:
            return outcomes
        # Refused before anything was written; a claim already won is recognised by value.
        try:
            self._reauthenticate()
        except MaomaoError as exc:
            return [exc for _ in claims]
        return self._claim_once(claims, [])

    def _claim_once(
        self, claims: Sequence[Claim], expired: list[bool]
    ) -> list[ClaimOutcome | MaomaoError]:
        # Asynchronous gRPC calls: a burst of firings costs about one round trip, not one
        # round trip per firing.
        try:
            c = self._client
            t = c.transactions
            futures = []
            for claim in claims:
                compare = [t.create(claim.key) == 0]
                success = [t.put(claim.key, claim.value, lease=claim.lease)]
                if claim.guard is not None:
                    compare.append(t.create(claim.guard) == 0)
                    success.append(t.put(claim.guard, claim.guard_value, lease=claim.guard_lease))
                # Otherwise: take the key anyway if it is free (guard busy), else read it.
                take_busy = t.txn(
                    compare=[t.create(claim.key) == 0],
                    success=[t.put(claim.key, claim.busy_value, lease=claim.lease)],
                    failure=[t.get(claim.key)],
                )
                request = etcdrpc.TxnRequest(
                    compare=[cmp.build_message() for cmp in compare],
                    success=c._ops_to_requests(success),
                    failure=c._ops_to_requests([take_busy] if claim.guard else [t.get(claim.key)]),
                )
                futures.append(
                    c.kvstub.Txn.future(
                        request, self._timeout, credentials=c.call_credentials, metadata=c.metadata
                    )
                )
        except (grpc.RpcError, etcd3.exceptions.Etcd3Exception, ValueError) as exc:
            error = self._translate(exc)
            return [error for _ in claims]
        outcomes: list[ClaimOutcome | MaomaoError] = []
        probed = False
        for claim, future in zip(claims, futures, strict=True):
            try:
                response = future.result()
            except grpc.RpcError as exc:
                if self._token_expired(exc):
                    expired.append(True)
                with contextlib.suppress(Exception):
                    c._manage_grpc_errors(exc)  # marks the endpoint failed for failover
                # One quorum probe per burst, not one per claim.
                outcomes.append(self._translate(exc, probe=not probed))
                probed = True
                continue
            if response.succeeded:
                outcomes.append("won")
                continue
            first = response.responses[0]
            if claim.guard is not None:
                nested = first.response_txn
                if nested.succeeded:
                    outcomes.append("busy")
                    continue
                first = nested.responses[0]
            held = bytes(first.response_range.kvs[0].value) if first.response_range.kvs else b""
            if held == claim.value:
                outcomes.append("won")
            elif claim.guard is not None and held == claim.busy_value:
                outcomes.append("busy")
            else:
                outcomes.append("taken")
        return outcomes

    def replace(self, key: str, value: bytes, *, mod_revision: int) -> bool:
        def txn(c: Any) -> bool:
            ok, _ = c.transaction(
                compare=[c.transactions.mod(key) == mod_revision],
                success=[c.transactions.put(key, value)],
                failure=[],
            )
            return bool(ok)

        return self._call(txn)

    def delete(self, key: str) -> bool:
        return bool(self._call(lambda c: c.delete(key)))

    def delete_if(self, key: str, *, mod_revision: int) -> bool:
        def txn(c: Any) -> bool:
            ok, _ = c.transaction(
                compare=[c.transactions.mod(key) == mod_revision],
                success=[c.transactions.delete(key)],
                failure=[],
            )
            return bool(ok)

        return self._call(txn)

    def delete_prefix(self, prefix: str) -> int:
        return int(self._call(lambda c: c.delete_prefix(prefix)).deleted)

    def grant_lease(self, ttl: int) -> EtcdLease:
        return EtcdLease(self, self._call(lambda c: c.lease(ttl)))

    def lease_of(self, lease_id: int, ttl: int) -> EtcdLease:
        return EtcdLease(self, etcd3.Lease(lease_id, ttl, self._client))

    def watch(self, prefix: str, *, start_revision: int | None = None) -> EtcdWatch:
        return EtcdWatch(self, prefix, start_revision)

    def status(self) -> StoreStatus:
        def raw(c: Any) -> Any:
            return c.maintenancestub.Status(
                etcdrpc.StatusRequest(),
                self._timeout,
                credentials=c.call_credentials,
                metadata=c.metadata,
            )

        status = self._call(raw)
        alarms = self._call(lambda c: list(c.list_alarms()))
        endpoint = self._client.endpoint_in_use.netloc
        metrics = self._metrics(endpoint)
        quota = metrics.get("etcd_server_quota_backend_bytes")
        compacted = metrics.get("etcd_debugging_mvcc_compact_revision")
        return StoreStatus(
            endpoint=endpoint,
            version=str(status.version),
            leader=int(status.leader),
            member_id=int(status.header.member_id),
            raft_index=int(status.raftIndex),
            db_size=int(status.dbSize),
            revision=int(status.header.revision),
            alarms=tuple(_ALARMS.get(int(a.alarm_type), str(a.alarm_type)) for a in alarms),
            quota=int(quota) if quota is not None else None,
            compact_revision=int(compacted) if compacted is not None else None,
        )

    def _metrics(self, endpoint: str) -> dict[str, float]:
        """The few gauges of etcd's /metrics (on its client port) that the status shows;
        empty when they cannot be read (a proxy in front, a refused certificate)."""
        import ssl
        import urllib.request

        settings = self._settings
        context = None
        if settings.ca_file:
            context = ssl.create_default_context(cafile=settings.ca_file)
            if settings.cert_file:
                context.load_cert_chain(settings.cert_file, settings.key_file)
        url = f"{'https' if context else 'http'}://{endpoint}/metrics"
        wanted = ("etcd_server_quota_backend_bytes", "etcd_debugging_mvcc_compact_revision")
        found: dict[str, float] = {}
        try:
            timeout = min(self._timeout, 2.0)
            with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
                for raw_line in response:
                    name, _, value = raw_line.decode("ascii", "replace").partition(" ")
                    if name in wanted:
                        with contextlib.suppress(ValueError):
                            found[name] = float(value)
        except (OSError, ValueError):
            return {}
        return found

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a broken channel is not worth reporting
            self._client.close()
