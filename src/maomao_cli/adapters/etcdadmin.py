"""The etcd cluster API (members, status, health) over gRPC, learners included.

python3-etcd3 0.13 bundles the etcd 3.3 protos: its MemberAddRequest has no
`isLearner`, Member has no `isLearner` and there is no MemberPromote. So the few
messages this module needs are declared here, field numbers copied from etcd 3.4's
rpc.proto, in a private descriptor pool (no clash with etcd3's registered types),
and called by method path on plain gRPC channels. Every call has a deadline.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

# gRPC's C core logs failed TLS handshakes to stderr itself; the error we raise says it.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc
from google.protobuf import (  # type: ignore[import-untyped]
    descriptor_pb2,
    descriptor_pool,
    message_factory,
)

from ..errors import (
    AlreadyExists,
    BadInput,
    LearnerNotInSync,
    MaomaoError,
    MemberNotReady,
    UnhealthyCluster,
)
from ..etcdvalues import EndpointStatus, Member, Tls, netloc
from . import etcderrors

__all__ = ["EndpointStatus", "EtcdAdmin", "Member", "Tls", "connect", "netloc", "translate"]

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "uint64": _F.TYPE_UINT64,
    "int64": _F.TYPE_INT64,
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
    "bool": _F.TYPE_BOOL,
}
# message name -> [(field name, number, type or message name, repeated)]
_MESSAGES: dict[str, list[tuple[str, int, str, bool]]] = {
    "ResponseHeader": [
        ("cluster_id", 1, "uint64", False),
        ("member_id", 2, "uint64", False),
        ("revision", 3, "int64", False),
        ("raft_term", 4, "uint64", False),
    ],
    "Member": [
        ("ID", 1, "uint64", False),
        ("name", 2, "string", False),
        ("peerURLs", 3, "string", True),
        ("clientURLs", 4, "string", True),
        ("isLearner", 5, "bool", False),
    ],
    "MemberAddRequest": [("peerURLs", 1, "string", True), ("isLearner", 2, "bool", False)],
    "MemberAddResponse": [
        ("header", 1, "ResponseHeader", False),
        ("member", 2, "Member", False),
        ("members", 3, "Member", True),
    ],
    "MemberRemoveRequest": [("ID", 1, "uint64", False)],
    "MemberRemoveResponse": [
        ("header", 1, "ResponseHeader", False),
        ("members", 2, "Member", True),
    ],
    "MemberListRequest": [],
    "MemberListResponse": [("header", 1, "ResponseHeader", False), ("members", 2, "Member", True)],
    "MemberPromoteRequest": [("ID", 1, "uint64", False)],
    "MemberPromoteResponse": [
        ("header", 1, "ResponseHeader", False),
        ("members", 2, "Member", True),
    ],
    "StatusRequest": [],
    "StatusResponse": [
        ("header", 1, "ResponseHeader", False),
        ("version", 2, "string", False),
        ("dbSize", 3, "int64", False),
        ("leader", 4, "uint64", False),
        ("raftIndex", 5, "uint64", False),
        ("raftTerm", 6, "uint64", False),
        ("raftAppliedIndex", 7, "uint64", False),
        ("errors", 8, "string", True),
        ("dbSizeInUse", 9, "int64", False),
        ("isLearner", 10, "bool", False),
    ],
    "RangeRequest": [("key", 1, "bytes", False), ("limit", 3, "int64", False)],
    "RangeResponse": [("header", 1, "ResponseHeader", False)],
}


# As the store's channels (store/etcd.py): gRPC's 4 MiB default is no limit etcd has.
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 2**31 - 1)]


def _build_classes() -> dict[str, Any]:
    file = descriptor_pb2.FileDescriptorProto(
        name="maomao_etcdadmin.proto", package="etcdserverpb", syntax="proto3"
    )
    for name, spec in _MESSAGES.items():
        message = file.message_type.add(name=name)
        for field_name, number, kind, repeated in spec:
            field = message.field.add(name=field_name, number=number, json_name=field_name)
            field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
            if kind in _SCALARS:
                field.type = _SCALARS[kind]
            else:
                field.type = _F.TYPE_MESSAGE
                field.type_name = f".etcdserverpb.{kind}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"etcdserverpb.{name}"))
        for name in _MESSAGES
    }


_CLASSES = _build_classes()


def _member(raw: Any) -> Member:
    return Member(
        id=int(raw.ID),
        name=str(raw.name),
        peer_urls=tuple(raw.peerURLs),
        client_urls=tuple(raw.clientURLs),
        is_learner=bool(raw.isLearner),
    )


# etcd's refusals that callers act on, by status code and etcd's own description of them
# (etcd's api/v3rpc/rpctypes/error.go; its client recognises them the same way).
_REFUSALS: dict[tuple[grpc.StatusCode, str], type[MaomaoError]] = {
    (
        grpc.StatusCode.FAILED_PRECONDITION,
        "etcdserver: can only promote a learner member which is in sync with leader",
    ): LearnerNotInSync,
    (
        grpc.StatusCode.FAILED_PRECONDITION,
        "etcdserver: re-configuration failed due to not enough started members",
    ): MemberNotReady,
    (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: member ID already exist"): AlreadyExists,
    (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: Peer URLs already exists"): AlreadyExists,
    (grpc.StatusCode.UNAVAILABLE, "etcdserver: unhealthy cluster"): UnhealthyCluster,
}


def _refusal(exc: grpc.RpcError) -> type[MaomaoError] | None:
    return _REFUSALS.get((exc.code(), (exc.details() or "").strip()))


def translate(code: grpc.StatusCode, details: str, where: str, timeout: float) -> MaomaoError:
    """The maomao error for a failed call to etcd at `where`: etcd's refusals as their own
    types (errors.EtcdRefused, UnhealthyCluster), the rest as the store names them
    (adapters/etcderrors.py)."""
    refusal = _REFUSALS.get((code, details.strip()))
    if refusal is UnhealthyCluster:
        return UnhealthyCluster(f"etcd at {where} is unreachable: unhealthy cluster")
    if refusal is not None:
        return refusal(f"etcd at {where}: {details.strip()}")
    return etcderrors.translate(code, details, where, timeout)


class EtcdAdmin:
    """Talks to the cluster through `endpoints` (host:port), trying each in turn."""

    def __init__(self, endpoints: list[str], tls: Tls | None, timeout: float = 5.0) -> None:
        if not endpoints:
            raise BadInput("no etcd endpoint to talk to")
        self.endpoints = [netloc(e) for e in endpoints]
        self._tls = tls
        self.timeout = timeout
        self._channels: dict[str, grpc.Channel] = {}

    def _channel(self, endpoint: str) -> grpc.Channel:
        channel = self._channels.get(endpoint)
        if channel is None:
            if self._tls is None:
                channel = grpc.insecure_channel(endpoint, options=_CHANNEL_OPTIONS)
            else:
                creds = grpc.ssl_channel_credentials(
                    root_certificates=self._tls.ca,
                    private_key=self._tls.key,
                    certificate_chain=self._tls.cert,
                )
                channel = grpc.secure_channel(endpoint, creds, options=_CHANNEL_OPTIONS)
            self._channels[endpoint] = channel
        return channel

    def _unary(
        self, endpoint: str, service: str, method: str, request: Any, timeout: float | None
    ) -> Any:
        response_class = _CLASSES[f"{method}Response"]
        call = self._channel(endpoint).unary_unary(
            f"/etcdserverpb.{service}/{method}",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        return call(request, timeout=timeout or self.timeout)

    def _any(self, service: str, method: str, request: Any) -> Any:
        """The first endpoint that answers; the last failure when none does."""
        failure: grpc.RpcError | None = None
        for endpoint in self.endpoints:
            try:
                return self._unary(endpoint, service, method, request, None)
            except grpc.RpcError as exc:
                if exc.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    raise self.translate(exc, endpoint) from None
                # etcd's own "unhealthy cluster" says more than a member that is simply down.
                if failure is None or _refusal(failure) is None:
                    failure = exc
        assert failure is not None
        raise self.translate(failure, ",".join(self.endpoints)) from None

    def translate(self, exc: grpc.RpcError, where: str) -> MaomaoError:
        return translate(exc.code(), exc.details() or "", where, self.timeout)

    def members(self) -> list[Member]:
        response = self._any("Cluster", "MemberList", _CLASSES["MemberListRequest"]())
        return [_member(m) for m in response.members]

    def add_member(self, peer_urls: list[str], *, learner: bool) -> tuple[Member, list[Member]]:
        request = _CLASSES["MemberAddRequest"](peerURLs=peer_urls, isLearner=learner)
        response = self._any("Cluster", "MemberAdd", request)
        return _member(response.member), [_member(m) for m in response.members]

    def remove_member(self, member_id: int) -> list[Member]:
        request = _CLASSES["MemberRemoveRequest"](ID=member_id)
        response = self._any("Cluster", "MemberRemove", request)
        return [_member(m) for m in response.members]

    def promote_member(self, member_id: int) -> list[Member]:
        """Raises LearnerNotInSync while the learner lags behind the leader."""
        request = _CLASSES["MemberPromoteRequest"](ID=member_id)
        response = self._any("Cluster", "MemberPromote", request)
        return [_member(m) for m in response.members]

    def status(self, endpoint: str, timeout: float | None = None) -> EndpointStatus:
        """The Maintenance.Status of one member (no quorum needed)."""
        endpoint = netloc(endpoint)
        try:
            raw = self._unary(
                endpoint, "Maintenance", "Status", _CLASSES["StatusRequest"](), timeout
            )
        except grpc.RpcError as exc:
            raise self.translate(exc, endpoint) from None
        return EndpointStatus(
            endpoint=endpoint,
            member_id=int(raw.header.member_id),
            version=str(raw.version),
            db_size=int(raw.dbSize),
            leader=int(raw.leader),
            raft_index=int(raw.raftIndex),
            raft_term=int(raw.raftTerm),
            raft_applied_index=int(raw.raftAppliedIndex),
            errors=tuple(raw.errors),
            is_learner=bool(raw.isLearner),
        )

    def healthy(self, endpoint: str, timeout: float | None = None) -> bool:
        """A linearizable read through this member, as `etcdctl endpoint health` does:
        it succeeds only when the member reaches a leader with a quorum behind it."""
        request = _CLASSES["RangeRequest"](key=b"health", limit=1)
        try:
            self._unary(netloc(endpoint), "KV", "Range", request, timeout)
        except grpc.RpcError as exc:
            return bool(exc.code() == grpc.StatusCode.PERMISSION_DENIED)
        return True

    def close(self) -> None:
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                channel.close()
        self._channels.clear()

    def __enter__(self) -> EtcdAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def connect(endpoints: list[str], tls: Tls | None, timeout: float = 5.0) -> Iterator[EtcdAdmin]:
    admin = EtcdAdmin(endpoints, tls, timeout)
    try:
        yield admin
    finally:
        admin.close()
