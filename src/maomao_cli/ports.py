"""The ports: the interfaces services depend on; adapters implement them."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .etcdvalues import EndpointStatus, Member, Tls


# ---------------------------------------------------------------- etcd administration (cluster)
# Implemented by adapters/etcdadmin.py (`EtcdAdmin`, `connect`). Failures are maomao errors;
# etcd's refusals of a membership change are the EtcdRefused and UnhealthyCluster types of
# errors.py, so callers retry by type.


class EtcdAdmin(Protocol):
    """Cluster membership and per-member status, through `endpoints` (host:port, tried in
    turn; callers may replace the list)."""

    endpoints: list[str]

    def members(self) -> list[Member]: ...

    def add_member(self, peer_urls: list[str], *, learner: bool) -> tuple[Member, list[Member]]:
        """The added member and the member list after the change."""
        ...

    def remove_member(self, member_id: int) -> list[Member]:
        """The member list after the change."""
        ...

    def promote_member(self, member_id: int) -> list[Member]:
        """Raises LearnerNotInSync while the learner lags behind the leader."""
        ...

    def status(self, endpoint: str, timeout: float | None = None) -> EndpointStatus:
        """One member's own status (needs no quorum)."""
        ...

    def healthy(self, endpoint: str, timeout: float | None = None) -> bool:
        """Whether a linearizable read through this member succeeds (it has a quorum)."""
        ...


class ConnectAdmin(Protocol):
    """Opens an EtcdAdmin on `endpoints`; leaving the context closes its connections."""

    def __call__(
        self, endpoints: list[str], tls: Tls | None, timeout: float = 5.0
    ) -> AbstractContextManager[EtcdAdmin]: ...


# ---------------------------------------------------------------- end of etcd administration
