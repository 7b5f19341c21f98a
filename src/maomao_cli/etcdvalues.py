"""The values etcd cluster administration speaks in: members, one endpoint's status, the
TLS material a client presents, and the host:port of a URL. Pure data, no I/O, so the
services and the adapter share them without the services importing gRPC."""

from __future__ import annotations

from .frozen import frozen


@frozen
class Member:
    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool


@frozen
class EndpointStatus:
    endpoint: str
    member_id: int
    version: str
    db_size: int
    leader: int
    raft_index: int
    raft_term: int
    raft_applied_index: int
    errors: tuple[str, ...]
    is_learner: bool


@frozen
class Tls:
    """PEM bytes: the CA that signed the servers, and this client's certificate."""

    ca: bytes
    cert: bytes | None
    key: bytes | None


def netloc(url: str) -> str:
    """host:port of an etcd URL (a bare host:port is returned as it is)."""
    return url.split("://", 1)[-1].rstrip("/")
