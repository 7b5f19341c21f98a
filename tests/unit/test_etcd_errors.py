"""One translation of etcd's failures (adapters/etcderrors.py) for the store and the admin
client: each cause named by type and in words, the local-etcd hint only where it fits. The
statuses and details are etcd 3.4's and gRPC's own; no server."""

from __future__ import annotations

import socket

import grpc
import pytest

from maomao_cli.adapters import etcderrors
from maomao_cli.adapters.etcdadmin import translate as admin_translate
from maomao_cli.errors import (
    BadInput,
    EtcdUnreachable,
    MaomaoError,
    NoQuorum,
    NoSpace,
    TlsFailure,
    TooLarge,
    Unavailable,
)
from maomao_cli.store import deadlines

Code = grpc.StatusCode


@pytest.mark.parametrize(
    ("code", "details", "expected", "words"),
    [
        (Code.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded", NoSpace, "NOSPACE"),
        (
            Code.RESOURCE_EXHAUSTED,
            "Received message larger than max (6118802 vs. 4194304)",
            TooLarge,
            "too large",
        ),
        (Code.INVALID_ARGUMENT, "etcdserver: request is too large", TooLarge, "too large"),
        (
            Code.INVALID_ARGUMENT,
            "etcdserver: authentication failed, invalid user ID or password",
            BadInput,
            "refused the credentials",
        ),
        (Code.PERMISSION_DENIED, "etcdserver: permission denied", BadInput, "denied access"),
        (
            Code.UNAVAILABLE,
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
            "Ssl handshake failed: SSL_ERROR_SSL: error:1000007d:SSL "
            "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED",
            TlsFailure,
            "TLS handshake failed (certificate verify failed)",
        ),
        (
            Code.UNAVAILABLE,
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.0.1:2379: "
            "Failed to connect to remote host: Connection refused",
            EtcdUnreachable,
            "unreachable: connection refused",
        ),
        (Code.DEADLINE_EXCEEDED, "Deadline Exceeded", EtcdUnreachable, "did not answer within 5s"),
        (Code.UNAVAILABLE, "Stream removed (Socket closed)", EtcdUnreachable, "connection closed"),
        (
            Code.UNKNOWN,
            "Stream removed (Data frame with END_STREAM flag received) (RST_STREAM (Received "
            "RST_STREAM with error code 0))",
            EtcdUnreachable,
            "unreachable: connection closed",
        ),
        (Code.UNAVAILABLE, "recvmsg:Connection reset by peer", EtcdUnreachable, "connection reset"),
        (
            Code.UNAVAILABLE,
            "ipv4:127.0.0.1:2379: ))",
            EtcdUnreachable,
            "unreachable: no answer",
        ),
        (Code.CANCELLED, "Channel closed!", EtcdUnreachable, "connection closed during the call"),
        (Code.UNAVAILABLE, "etcdserver: no leader", Unavailable, "no leader"),
        (Code.UNAVAILABLE, "etcdserver: request timed out", Unavailable, "lost its quorum"),
        (Code.UNKNOWN, "context deadline exceeded", Unavailable, "made no progress"),
        (Code.UNKNOWN, "something else", MaomaoError, "something else"),
    ],
)
def test_each_cause_has_its_type_and_words(
    code: grpc.StatusCode, details: str, expected: type[MaomaoError], words: str
) -> None:
    error = etcderrors.translate(code, details, "10.0.0.1:2379", 5.0)
    assert type(error) is expected
    assert words in error.message
    assert "10.0.0.1:2379" in error.message
    assert error.hint != etcderrors.LOCAL_HINT  # never "start a local etcd" unasked
    # The admin client says the same (only etcd's membership refusals are its own).
    assert type(admin_translate(code, details, "10.0.0.1:2379", 5.0)) is expected


def test_nospace_is_one_line_naming_the_alarm_and_the_fix() -> None:
    error = etcderrors.translate(
        Code.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded", "a:1", 5.0
    )
    assert error.message.startswith(
        "etcd's database is full (NOSPACE alarm): compact and defragment, see docs/cluster.md"
    )
    assert isinstance(error, Unavailable)  # a worker waits it out, as for an outage
    assert error.hint is not None and "alarm disarm" in error.hint


def test_no_quorum_counts_members_and_exits_3() -> None:
    error = etcderrors.no_quorum(1, 3)
    assert error.message == (
        "the cluster has no quorum: 1 of 3 members reachable; see `maomao etcd status`"
    )
    assert isinstance(error, NoQuorum) and int(error.exit_status) == 3


def test_local_hint_only_when_refused_or_timed_out() -> None:
    refused = etcderrors.translate(
        Code.UNAVAILABLE, "Connection refused", "127.0.0.1:2379", 5.0, local_hint=True
    )
    assert refused.hint == etcderrors.LOCAL_HINT
    full = etcderrors.translate(
        Code.RESOURCE_EXHAUSTED, "database space exceeded", "127.0.0.1:2379", 5.0, local_hint=True
    )
    assert full.hint != etcderrors.LOCAL_HINT


def test_nothing_listens_only_for_one_loopback_endpoint() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert etcderrors.nothing_listens([f"127.0.0.1:{port}"]) is False
    assert etcderrors.nothing_listens([f"127.0.0.1:{port}"]) is True  # closed now
    assert etcderrors.nothing_listens([f"localhost:{port}"]) is True
    # Another machine's endpoint, or a cluster's list: never the local hint.
    assert etcderrors.nothing_listens([f"10.0.0.1:{port}"]) is False
    assert etcderrors.nothing_listens([f"127.0.0.1:{port}", f"127.0.0.1:{port}"]) is False


def test_etcd3_exceptions_are_read_through_their_grpc_context() -> None:
    class Failure(grpc.RpcError):  # type: ignore[misc]  # grpc ships no types
        def code(self) -> grpc.StatusCode:
            return Code.RESOURCE_EXHAUSTED

        def details(self) -> str:
            return "etcdserver: mvcc: database space exceeded"

    class ConnectionFailedError(Exception):
        pass

    try:
        try:
            raise Failure
        except Failure:
            raise ConnectionFailedError from None
    except ConnectionFailedError as raised:
        raised.__context__ = Failure()
        assert type(etcderrors.from_exception(raised, "a:1", 5.0)) is NoSpace
    assert type(etcderrors.from_exception(ConnectionFailedError(), "a:1", 5.0)) is EtcdUnreachable


@pytest.mark.parametrize(
    ("timeout", "request_waits", "probe_at_most"),
    [(5.0, 4.0, 1.0), (2.0, 1.6, 0.4), (30.0, 28.5, 1.5), (10.0, 8.5, 1.5)],
)
def test_a_command_names_the_cause_within_its_timeout(
    timeout: float, request_waits: float, probe_at_most: float
) -> None:
    """A command's request waits the timeout less the quorum probe's part, so that a lost
    quorum is named within the timeout; a daemon's (patient) waits it whole."""
    assert deadlines.call_deadline(timeout) == pytest.approx(request_waits)
    assert deadlines.probe_budget(timeout) == pytest.approx(probe_at_most)
    assert deadlines.call_deadline(timeout) + deadlines.probe_budget(timeout) == pytest.approx(
        timeout
    )
