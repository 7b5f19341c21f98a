"""The ports: the interfaces services depend on; adapters implement them.

Services import from here (and from `store.base`, the store port), never from
`adapters/` or `store/etcd.py`; `composition.py` is the one place that picks the
concrete adapters and injects them. Each port has one contract suite in
`tests/contract/`, run against every implementation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from .frozen import frozen
from .gitmodels import GitAuth, Progress, PullResult, RepoStatus
from .store.base import Claim, Entry, Event, Lease, Store, StoreStatus, Watch

if TYPE_CHECKING:
    from .etcdvalues import EndpointStatus, Member, Tls

__all__ = [
    "MOUNT_POINT",
    "Claim",
    "Clock",
    "ConnectAdmin",
    "ContainerResult",
    "ContainerRunner",
    "ContainerSpec",
    "ContainerStatus",
    "DatasetSync",
    "Entry",
    "EtcdAdmin",
    "Event",
    "Lease",
    "PullProgress",
    "Store",
    "StoreStatus",
    "Watch",
]

# --- containers: what the run service needs from a container engine ---------------------

ContainerStatus = Literal["succeeded", "failed", "timed-out", "interrupted"]
MOUNT_POINT = "/usr/src/app/data"


@frozen
class ContainerSpec:
    """One container to run: the image, the tool's data directory and the limits."""

    image: str
    name: str
    env: dict[str, str]
    data_dir: Path
    mount_point: str = MOUNT_POINT
    labels: dict[str, str] = field(default_factory=dict)
    network: str = "none"
    memory: str = "512m"
    pids: int = 256
    timeout: float = 3600.0
    user: str | None = None
    # Docker's rotation of the container's output ([docker] log_max_size, log_max_files).
    log_max_size: str = "10m"
    log_max_files: int = 3


@frozen
class ContainerResult:
    exit_code: int | None
    status: ContainerStatus
    image_digest: str | None = None
    log_tail: list[str] = field(default_factory=list)
    error: str | None = None
    # False when the engine refused the container for a reason a retry keeps (a --user
    # the image does not know).
    retryable: bool = True


@frozen
class PullProgress:
    """One step of an image pull. `layer` is None for messages about the whole image;
    `complete` is True once, at the end of a pull, so a display can close."""

    image: str
    status: str
    layer: str | None = None
    current: int | None = None
    total: int | None = None
    complete: bool = False


class ContainerRunner(Protocol):
    def ensure_image(
        self, image: str, progress: Callable[[PullProgress], None] | None = None
    ) -> str:
        """The image's digest, pulling it first when it is absent. Raises ContainerError
        (one line) when it cannot be found or pulled, Unavailable when the engine is down."""
        ...

    def run(
        self,
        spec: ContainerSpec,
        *,
        on_output: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
        on_raw: Callable[[bytes], None] | None = None,
        on_starting: Callable[[], None] | None = None,
    ) -> ContainerResult:
        """Run to completion and always remove the container. Past spec.timeout the
        container is stopped (timed-out); when cancel is set it is stopped (interrupted).
        on_output gets each output line as it comes, from another thread; on_raw gets the
        same line's bytes as the container wrote them (no newline), just before.
        on_starting is called once the container exists, just before it starts (work to
        overlap with the start), and never for a container that could not be made."""
        ...

    def remove_containers(self, labels: dict[str, str]) -> int:
        """Force-remove every container carrying all these labels; returns how many."""
        ...

    def ping(self) -> None:
        """Raise Unavailable, within a few seconds, naming the engine, when it is down."""
        ...


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


# ---------------------------------------------------------------------------------------
# Dataset sync (git). Implemented by adapters.git.DulwichSync and tests/fakes/git.FakeGit;
# the contract is tests/contract/test_git_contract.py. Every failure is a GitError.
# A clone is opened as maomao's own: its config's worktree, hooks, filters and ssh command
# are never honoured; local remotes only with GitAuth.allow_local.


class DatasetSync(Protocol):
    """The git operations a member's dataset clones need."""

    def clone(
        self,
        url: str,
        dest: Path,
        *,
        branch: str | None,
        depth: int | None,
        auth: GitAuth,
        timeout: float,
        progress: Progress | None = None,
    ) -> None:
        """Clone into `dest` (absent or empty) and check out `branch` (None: the remote's
        HEAD); on failure, remove what the clone created."""
        ...

    def pull(
        self,
        repo_dir: Path,
        *,
        branch: str | None,
        auth: GitAuth,
        timeout: float,
        author: str,
        progress: Progress | None = None,
    ) -> PullResult:
        """Fetch and fast-forward, or merge (committed as `author`) when no file changed on
        both sides; a conflict touches nothing local."""
        ...

    def commit_all(self, repo_dir: Path, message: str, author: str) -> str | None:
        """Commit every new, changed and deleted file; the new sha, or None if none changed."""
        ...

    def push(self, repo_dir: Path, *, branch: str | None, auth: GitAuth, timeout: float) -> None:
        """Push to origin, fast-forward only."""
        ...

    def status(self, repo_dir: Path, *, branch: str | None) -> RepoStatus:
        """The local view, without the network: unpushed and unmerged commits, edits
        (`last_push_error` is the dataset service's to fill: it keeps that note)."""
        ...

    def generate_ssh_key(self, path: Path, comment: str) -> str:
        """Make a key pair at `path` once (owner-only); return its public line."""
        ...


# ------------------------------------------------------------------- end of dataset sync


# ---------------------------------------------------------------------------------------
# The worker's clock. Implemented by clock.SystemClock and tests/fakes/clock.FakeClock. The
# worker reads the time and waits only through it, so its tests run on a fake clock that
# moves instantly instead of sleeping.


class Clock(Protocol):
    def now(self) -> float:
        """Wall time, epoch seconds (what fire times and records use)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (for deadlines)."""
        ...

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Block until `event` is set or `timeout` seconds pass; True if it is set."""
        ...


# ---------------------------------------------------------------------- end of the clock
