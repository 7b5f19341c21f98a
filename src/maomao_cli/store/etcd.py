"""The etcd adapter of the store port, over python3-etcd3 (gRPC).

Every call is bounded by the configured timeout and every failure becomes one
MaomaoError naming the endpoint: Unavailable when etcd cannot be reached,
BadInput for refused credentials. Create this object after any fork(): gRPC
channels do not survive one.

This module holds the client, its retries and re-authentication, and the store's calls;
beside it: error translation (etcd_translate.py), paged ranges (etcd_paging.py), the
watch (etcd_watch.py), claim transactions (etcd_claims.py) and the status (etcd_status.py).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

# gRPC's C core logs failed TLS handshakes to stderr itself (a second line beside our one
# error); the error we raise says it.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import etcd3
import etcd3.exceptions
import grpc
from etcd3 import etcdrpc
from etcd3.client import Endpoint, EtcdTokenCallCredentials

from ..adapters import etcderrors
from ..config import EtcdSettings
from ..errors import BadInput, MaomaoError
from ..keys import Keys
from .base import PAGE_SIZE, Claim, ClaimOutcome, Entry, Page, StoreStatus, paged_scan
from .deadlines import call_deadline
from .etcd_claims import batch_outcomes, batch_request, batches, claim_outcome, claim_request
from .etcd_paging import page_bounds, page_of, range_end
from .etcd_status import read_metrics, store_status
from .etcd_translate import translate
from .etcd_watch import EtcdWatch

T = TypeVar("T")

HINT = etcderrors.LOCAL_HINT
# gRPC's client refuses responses over 4 MiB by default; etcd's server sends up to
# math.MaxInt32 and its own Go client receives as much. Paged reads keep every response
# far below either: this is the second line of defence, not the first.
MAX_RECEIVE = 2**31 - 1
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_RECEIVE),
    ("grpc.max_send_message_length", MAX_RECEIVE),
]
# A failed endpoint is retried after this many seconds (python3-etcd3 defaults to 300,
# which would keep a worker off a recovered single-member cluster for five minutes).
ENDPOINT_RETRY = 1.0


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


class EtcdStore:
    def __init__(self, settings: EtcdSettings, *, patient: bool = False) -> None:
        """`patient`: each request may wait the whole [etcd] timeout, as a daemon's do (no
        one waits at a terminal, and a busy cluster must not look unreachable: a worker
        with 10,000 schedules reconnected once at 4 s). A command's requests keep part of
        the timeout to name the cause (a lost quorum) within it."""
        self._settings = settings
        self._timeout = settings.timeout if patient else call_deadline(settings.timeout)
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

    # gRPC and python3-etcd3 failures become maomao errors (etcd_translate.py).
    def _translate(self, exc: BaseException, *, probe: bool = True) -> MaomaoError:
        return translate(exc, self._settings, probe=probe)

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
        response = self._call(
            lambda c: c.get_range_response(
                start,
                stop,
                # Ascending by key is etcd's own order: asked for, etcd 3.4 reads every
                # entry to the end of the range to sort it, before the limit (quadratic).
                sort_order="descend" if descending else None,
                sort_target="key",
                limit=max(limit, 1),
                keys_only=keys_only,
                revision=revision,
            )
        )
        return page_of(response, revision, descending)

    def count(self, prefix: str) -> int:
        response = self._call(
            lambda c: c.get_range_response(prefix, range_end(prefix), count_only=True)
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
        # Claims go in batches, one transaction each (etcd_claims.batches), the batches as
        # asynchronous gRPC calls sent together: a burst of firings costs about one round
        # trip and one raft entry per batch, not per firing.
        claims = list(claims)
        groups = batches(claims)
        marker = Keys(self._settings.prefix).claim_batch()
        try:
            c = self._client
            futures = [
                self._txn_future(c, batch_request([claims[i] for i in group], marker))
                for group in groups
            ]
        except (grpc.RpcError, etcd3.exceptions.Etcd3Exception, ValueError) as exc:
            error = self._translate(exc)
            return [error for _ in claims]
        outcomes: list[ClaimOutcome | MaomaoError | None] = [None] * len(claims)
        probed = False
        for group, future in zip(groups, futures, strict=True):
            mine = [claims[i] for i in group]
            results: list[ClaimOutcome | MaomaoError]
            try:
                results = [*batch_outcomes(mine, future.result())]
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    # A cluster whose --max-txn-ops is below a batch: one claim per txn.
                    results = self._claim_singly(c, mine, expired)
                else:
                    if self._token_expired(exc):
                        expired.append(True)
                    with contextlib.suppress(Exception):
                        c._manage_grpc_errors(exc)  # marks the endpoint failed for failover
                    # One quorum probe per burst, not one per batch.
                    error = self._translate(exc, probe=not probed)
                    probed = True
                    results = [error for _ in mine]
            for index, result in zip(group, results, strict=True):
                outcomes[index] = result
        answered = [outcome for outcome in outcomes if outcome is not None]
        assert len(answered) == len(claims), "every claim is in one batch"
        return answered

    def _txn_future(self, c: Any, request: Any) -> Any:
        return c.kvstub.Txn.future(
            request, self._timeout, credentials=c.call_credentials, metadata=c.metadata
        )

    def _claim_singly(
        self, c: Any, claims: list[Claim], expired: list[bool]
    ) -> list[ClaimOutcome | MaomaoError]:
        outcomes: list[ClaimOutcome | MaomaoError] = []
        for claim in claims:
            try:
                outcomes.append(
                    claim_outcome(claim, self._txn_future(c, claim_request(claim)).result())
                )
            except grpc.RpcError as exc:
                if self._token_expired(exc):
                    expired.append(True)
                outcomes.append(self._translate(exc))
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
        return store_status(endpoint, status, alarms, read_metrics(self._settings, endpoint))

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a broken channel is not worth reporting
            self._client.close()
