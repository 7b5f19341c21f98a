"""One translation of etcd's and gRPC's failures into maomao errors, shared by the store
(store/etcd.py) and the administration client (adapters/etcdadmin.py), so the same failure
has the same type and words wherever it is met.

Pure apart from `nothing_listens` (one connect to a loopback port): the table of cases is
tested without a server in tests/unit/test_etcd_errors.py.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import grpc

from ..errors import (
    BadInput,
    EtcdUnreachable,
    MaomaoError,
    NoQuorum,
    NoSpace,
    TlsFailure,
    TooLarge,
    Unavailable,
)

LOCAL_HINT = (
    "start a local etcd with `maomao etcd start`, or point MAOMAO_ETCD_ENDPOINTS "
    "(or [etcd] endpoints in config.toml) at a running one"
)
NOSPACE_MESSAGE = (
    "etcd's database is full (NOSPACE alarm): compact and defragment, see docs/cluster.md"
)
NOSPACE_HINT = (
    "delete what filled it, then `etcdctl compact REVISION` (the current one), "
    "`etcdctl defrag --cluster` and `etcdctl alarm disarm`"
)
TLS_HINT = (
    "check [etcd] ca_file (the CA that signed etcd's certificate), "
    "cert_file and key_file (a client certificate etcd trusts)"
)
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# What a member says when it cannot reach a quorum to serve a request (etcd 3.4).
_NO_PROGRESS = ("no leader", "leader changed", "request timed out", "context deadline exceeded")


def no_quorum(reachable: int, voters: int) -> NoQuorum:
    return NoQuorum(
        f"the cluster has no quorum: {reachable} of {voters} members reachable; "
        "see `maomao etcd status`",
        hint=f"a quorum needs {voters // 2 + 1}: start the stopped members' etcd",
    )


def nothing_listens(endpoints: Sequence[str]) -> bool:
    """True when the endpoints are the one local single-node etcd (loopback) and nothing
    accepts connections there: only then is "start a local etcd" the right hint."""
    if len(endpoints) != 1:
        return False
    host, _, port = endpoints[0].rpartition(":")
    host = host.strip("[]")
    if host not in _LOOPBACK or not port.isdigit():
        return False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, int(port))) != 0


def _reason(details: str) -> str:
    lowered = details.lower()
    if "refused" in lowered:
        return "connection refused"
    if "timed out" in lowered or "timeout" in lowered or "deadline" in lowered:
        return "connection timed out"
    if "reset by peer" in lowered:
        return "connection reset"
    if "socket closed" in lowered or "stream removed" in lowered:
        return "connection closed"
    reason = details.rpartition(": ")[2] if ": " in details else details
    # gRPC's debug trailers can leave only their brackets: say what is known instead.
    return reason[:120] if any(c.isalpha() for c in reason) else "no answer"


def _connection_lost(lowered: str) -> bool:
    """A stream cut as its member stops comes as UNKNOWN or INTERNAL, not UNAVAILABLE."""
    return any(sign in lowered for sign in ("stream removed", "rst_stream", "socket closed"))


CLOSED_HINT = "it is sent again on a new connection once etcd answers"


def translate(
    code: grpc.StatusCode | None,
    details: str,
    where: str,
    timeout: float,
    *,
    local_hint: bool = False,
) -> MaomaoError:
    """The maomao error for a failed call to etcd at `where` (one or more endpoints).
    local_hint: the endpoint is the local single-node one and nothing listens there."""
    details = (details or "").strip()
    lowered = details.lower()
    if "database space exceeded" in lowered or "nospace" in lowered:
        return NoSpace(f"{NOSPACE_MESSAGE} (at {where})", hint=NOSPACE_HINT)
    if "larger than max" in lowered or "request is too large" in lowered:
        return TooLarge(
            f"etcd at {where}: a message was too large: {details[:160]}",
            hint="a record grew past etcd's limit; report it (records are capped in bytes)",
        )
    if code == grpc.StatusCode.INVALID_ARGUMENT and (
        "password" in lowered or "authentication failed" in lowered
    ):
        return BadInput(
            f"etcd at {where} refused the credentials: {details}",
            hint="check [etcd] user and password (or MAOMAO_ETCD_USER / MAOMAO_ETCD_PASSWORD)",
        )
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return BadInput(
            f"etcd at {where} denied access: {details}",
            hint="check the etcd user, password and role (it needs the maomao prefix)",
        )
    if any(sign in lowered for sign in ("handshake", "ssl", "tsi_", "certificate")):
        reason = "certificate verify failed" if "verify" in lowered else "TLS error"
        return TlsFailure(f"etcd at {where}: the TLS handshake failed ({reason})", hint=TLS_HINT)
    hint = LOCAL_HINT if local_hint else None
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return EtcdUnreachable(f"etcd at {where} did not answer within {timeout:g}s", hint=hint)
    if any(sign in lowered for sign in _NO_PROGRESS):
        return Unavailable(
            f"etcd at {where} answered but made no progress ({details}): "
            "the cluster may have lost its quorum",
            hint="see `maomao etcd status`",
        )
    if code == grpc.StatusCode.CANCELLED:
        # The client was closed under a call in flight (a reconnect replaced it): the call
        # may be sent again on the new client, as after an outage, so it is not a failure.
        return EtcdUnreachable(
            f"etcd at {where}: the connection closed during the call ({details or 'cancelled'})",
            hint=CLOSED_HINT,
        )
    if code == grpc.StatusCode.UNAVAILABLE or code is None or _connection_lost(lowered):
        return EtcdUnreachable(f"etcd at {where} is unreachable: {_reason(details)}", hint=hint)
    return MaomaoError(f"etcd at {where}: {details or code.name}")


def from_exception(
    exc: BaseException, where: str, timeout: float, *, local_hint: bool = False
) -> MaomaoError:
    """translate() for an exception from gRPC or python3-etcd3: etcd3 raises its own
    exception classes from inside the gRPC error's handler, so the gRPC status is found on
    the exception or on its context."""
    if isinstance(exc, MaomaoError):
        return exc
    found: BaseException | None = exc
    while found is not None and not isinstance(found, grpc.RpcError):
        found = found.__context__
    if isinstance(found, grpc.RpcError):
        return translate(found.code(), found.details() or "", where, timeout, local_hint=local_hint)
    name = type(exc).__name__
    if name == "ConnectionTimeoutError":
        code: grpc.StatusCode | None = grpc.StatusCode.DEADLINE_EXCEEDED
    else:
        code = grpc.StatusCode.UNAVAILABLE if name == "ConnectionFailedError" else None
    return translate(code, str(exc) or name, where, timeout, local_hint=local_hint)
