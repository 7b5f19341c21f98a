"""The etcd administration adapter turns gRPC failures into maomao error types, so that the
cluster services decide retries by type. No server: the statuses are etcd's own."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from maomao_cli.adapters import etcdadmin
from maomao_cli.adapters.etcdadmin import EtcdAdmin, translate
from maomao_cli.errors import (
    AlreadyExists,
    BadInput,
    EtcdRefused,
    EtcdUnreachable,
    LearnerNotInSync,
    MaomaoError,
    MemberNotReady,
    TlsFailure,
    Unavailable,
    UnhealthyCluster,
)

Code = grpc.StatusCode


@pytest.mark.parametrize(
    ("code", "details", "expected"),
    [
        # The refusals a membership change waits out or reports, as etcd 3.4 words them.
        (
            Code.FAILED_PRECONDITION,
            "etcdserver: can only promote a learner member which is in sync with leader",
            LearnerNotInSync,
        ),
        (
            Code.FAILED_PRECONDITION,
            "etcdserver: re-configuration failed due to not enough started members",
            MemberNotReady,
        ),
        (Code.FAILED_PRECONDITION, "etcdserver: member ID already exist", AlreadyExists),
        (Code.FAILED_PRECONDITION, "etcdserver: Peer URLs already exists", AlreadyExists),
        (Code.UNAVAILABLE, "etcdserver: unhealthy cluster", UnhealthyCluster),
        # Look-alikes are not those refusals.
        (Code.FAILED_PRECONDITION, "etcdserver: can only promote a learner member", MaomaoError),
        (Code.FAILED_PRECONDITION, "etcdserver: too many learner members in cluster", MaomaoError),
        (Code.NOT_FOUND, "etcdserver: member not found", MaomaoError),
        (Code.INTERNAL, "etcdserver: unhealthy cluster", MaomaoError),
        # Transport and access failures.
        (
            Code.UNAVAILABLE,
            "failed to connect to all addresses; connection refused",
            EtcdUnreachable,
        ),
        (Code.DEADLINE_EXCEEDED, "Deadline Exceeded", EtcdUnreachable),
        (Code.UNAVAILABLE, "Ssl handshake failed: certificate verify failed", TlsFailure),
        (Code.UNAUTHENTICATED, "etcdserver: invalid auth token", BadInput),
        (Code.PERMISSION_DENIED, "etcdserver: permission denied", BadInput),
    ],
)
def test_translate_names_the_failure_by_type(
    code: grpc.StatusCode, details: str, expected: type[MaomaoError]
) -> None:
    error = translate(code, details, "10.0.0.1:2379", 5.0)
    assert type(error) is expected
    assert "10.0.0.1:2379" in error.message


def test_refusals_keep_their_exit_status_and_code() -> None:
    """Typed, but what a user sees is as before: exit 1, the code of their base type."""
    refused = translate(Code.FAILED_PRECONDITION, "etcdserver: member ID already exist", "e", 5)
    assert isinstance(refused, EtcdRefused)
    assert (refused.exit_status, refused.code) == (1, "error")
    assert refused.message == "etcd at e: etcdserver: member ID already exist"
    unhealthy = translate(Code.UNAVAILABLE, "etcdserver: unhealthy cluster", "e", 5)
    assert isinstance(unhealthy, Unavailable) and unhealthy.code == "unavailable"
    assert unhealthy.message == "etcd at e is unreachable: unhealthy cluster"


class _Failure(grpc.RpcError):  # type: ignore[misc]  # grpc ships no types
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def _admin_failing_with(
    monkeypatch: pytest.MonkeyPatch, failures: dict[str, _Failure]
) -> tuple[EtcdAdmin, list[str]]:
    """An admin whose every call fails as `failures` says for each endpoint."""
    asked: list[str] = []

    def unary(
        self: EtcdAdmin, endpoint: str, service: str, method: str, request: Any, timeout: Any
    ) -> Any:
        asked.append(endpoint)
        raise failures[endpoint]

    monkeypatch.setattr(etcdadmin.EtcdAdmin, "_unary", unary)
    return EtcdAdmin(list(failures), None), asked


def test_an_unhealthy_cluster_outranks_a_member_that_is_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin, asked = _admin_failing_with(
        monkeypatch,
        {
            "a:2379": _Failure(Code.UNAVAILABLE, "etcdserver: unhealthy cluster"),
            "b:2379": _Failure(Code.UNAVAILABLE, "connection refused"),
        },
    )
    with pytest.raises(UnhealthyCluster):
        admin.remove_member(1)
    assert asked == ["a:2379", "b:2379"]


def test_a_refusal_is_not_asked_again_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    admin, asked = _admin_failing_with(
        monkeypatch,
        {
            "a:2379": _Failure(
                Code.FAILED_PRECONDITION,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            "b:2379": _Failure(Code.UNAVAILABLE, "connection refused"),
        },
    )
    with pytest.raises(LearnerNotInSync, match="etcd at a:2379"):
        admin.promote_member(1)
    assert asked == ["a:2379"]
