"""The cluster commands as one service, built once with the etcd administration port."""

from __future__ import annotations

from pathlib import Path

from ...config import Settings
from ...ports import ConnectAdmin
from . import joining, membership
from . import status as status_module
from .joining import Joined, Progress
from .membership import Founded, Left
from .state import ClusterPaths, MemberConfig, load_member, worker_config
from .status import ClusterStatus
from .waiting import Clock


class ClusterService:
    """This machine's part in the collaboration's etcd cluster.

    `connect_admin` opens the etcd administration port (adapters.etcdadmin.connect);
    `clock` is what the membership changes wait on (tests pass a fake one)."""

    def __init__(
        self, settings: Settings, connect_admin: ConnectAdmin, *, clock: Clock | None = None
    ) -> None:
        self.settings = settings
        self._connect_admin = connect_admin
        self._clock = clock or Clock()

    @property
    def paths(self) -> ClusterPaths:
        return ClusterPaths.of(self.settings)

    def has_member(self) -> bool:
        return self.paths.member.exists()

    def member(self) -> MemberConfig | None:
        return load_member(self.paths)

    def worker_config(self, member: MemberConfig) -> str:
        return worker_config(self.paths, member)

    def init(
        self,
        *,
        listen: str,
        client_port: int = 2379,
        peer_port: int = 2380,
        name: str | None = None,
        ca_cert: Path | None = None,
        ca_key: Path | None = None,
        tls: bool = True,
        wait: float = 30.0,
    ) -> Founded:
        """Found a collaboration: a one-member cluster that others can join."""
        return membership.init(
            self.settings,
            self._connect_admin,
            self._clock,
            listen=listen,
            client_port=client_port,
            peer_port=peer_port,
            name=name,
            ca_cert=ca_cert,
            ca_key=ca_key,
            tls=tls,
            wait=wait,
        )

    def join(
        self,
        endpoint: str,
        *,
        token: Path | None = None,
        ca_cert: Path | None = None,
        ca_key: Path | None = None,
        listen: str | None = None,
        client_port: int = 2379,
        peer_port: int = 2380,
        name: str | None = None,
        tls: bool = True,
        force: bool = False,
        wait: float = 120.0,
        progress: Progress = lambda _: None,
    ) -> Joined:
        """Join the cluster at `endpoint` as a learner, catch up, then become a voter."""
        return joining.join(
            self.settings,
            self._connect_admin,
            self._clock,
            endpoint,
            token=token,
            ca_cert=ca_cert,
            ca_key=ca_key,
            listen=listen,
            client_port=client_port,
            peer_port=peer_port,
            name=name,
            tls=tls,
            force=force,
            wait=wait,
            progress=progress,
        )

    def leave(self, *, force: bool = False) -> Left:
        """Remove this machine's member from the cluster and stop its etcd."""
        return membership.leave(self.settings, self._connect_admin, self._clock, force=force)

    def start_member(self, wait: float = 30.0) -> tuple[MemberConfig, int, bool]:
        """Restart this machine's member; (member, pid, started now)."""
        return membership.start_member(self.settings, wait)

    def stop_member(self) -> tuple[MemberConfig, int | None]:
        return membership.stop_member(self.settings)

    def status(self) -> ClusterStatus:
        return status_module.status(self.settings, self._connect_admin)
