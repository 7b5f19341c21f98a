"""Error types and the exit statuses they map to.

Every failure a user can cause or meet is one of these; the CLI turns them into one
line on stderr (or a JSON object with --json) and the exit status below. Nothing else
decides exit statuses.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1  # a service is unavailable, a run failed, an operation could not complete
    BAD_INPUT = 2  # the user asked for something invalid or unknown; nothing was written
    NO_QUORUM = 3  # the etcd cluster has lost its quorum: nothing can be read or written
    INTERRUPTED = 130


class MaomaoError(Exception):
    """Base of every expected failure: a one-line message and an optional hint."""

    exit_status: ExitStatus = ExitStatus.ERROR
    code: str = "error"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class BadInput(MaomaoError):
    """Invalid input: a name, image, URL, cron expression, option or config value."""

    exit_status = ExitStatus.BAD_INPUT
    code = "bad-input"


class NotFound(BadInput):
    """The input names something that does not exist (a tool, dataset, run...)."""

    code = "not-found"


class ConfigError(BadInput):
    code = "config"


class Unavailable(MaomaoError):
    """A service maomao depends on (etcd, Docker, a git remote) cannot be reached."""

    code = "unavailable"


class EtcdUnreachable(Unavailable):
    """No configured etcd endpoint answered (connection refused, or no answer in time)."""


class NoQuorum(Unavailable):
    """The members that answer are too few for a quorum: etcd can neither read nor write."""

    exit_status = ExitStatus.NO_QUORUM
    code = "no-quorum"


class NoSpace(Unavailable):
    """etcd raised its NOSPACE alarm: it refuses every write until compacted, defragmented
    and disarmed."""

    code = "no-space"


class Compacted(Unavailable):
    """A watch asked for a revision etcd has compacted away; `revision` is the oldest one
    it still has."""

    def __init__(self, message: str, revision: int) -> None:
        super().__init__(message)
        self.revision = revision


class TlsFailure(Unavailable):
    """The TLS handshake with etcd failed (wrong CA, or a client certificate etcd does not
    trust). Unavailable, so a worker keeps retrying while certificates are replaced."""

    code = "tls"


class TooLarge(MaomaoError):
    """A request or a response exceeded etcd's or gRPC's message size limit."""

    code = "too-large"


class RecordError(MaomaoError):
    """A value in etcd does not parse (written by a newer or broken member)."""

    code = "bad-record"


class RunFailed(MaomaoError):
    """A tool ran and did not succeed (non-zero exit, timeout, interrupted)."""

    code = "run-failed"


class GitError(MaomaoError):
    """A dataset operation failed: clone, pull, commit, push, keys."""

    code = "git"


class PushRejected(GitError):
    """The remote refused a push because its branch moved on: fetch, merge, push again."""

    code = "git-rejected"


class ContainerError(MaomaoError):
    """The container engine refused or failed an operation (pull, create, start)."""

    code = "container"


class ImageMissing(ContainerError):
    """The registry says the image does not exist (or is not ours to pull): a retry
    would fail the same way, unlike a registry that cannot be reached."""

    code = "image-missing"


class Interrupted(MaomaoError):
    """The user stopped the operation (Ctrl-C); what it left behind is named."""

    exit_status = ExitStatus.INTERRUPTED
    code = "interrupted"


class Unhealthy(MaomaoError):
    """A health check found what it checks not healthy (`worker --check`)."""

    code = "unhealthy"

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        exit_status: ExitStatus = ExitStatus.ERROR,
        reported: bool = False,
    ) -> None:
        super().__init__(message, hint)
        self.exit_status = exit_status
        # The command has already printed the finding (its JSON object, say): the
        # boundary then only sets the exit status.
        self.reported = reported


# etcd's refusals of a membership change, told apart by type so that callers decide what to
# wait out without reading messages. The etcd administration adapter raises them.


class EtcdRefused(MaomaoError):
    """etcd answered and refused a cluster-membership change."""


class LearnerNotInSync(EtcdRefused):
    """A learner cannot be promoted yet: it still lags behind the leader's log."""


class MemberNotReady(EtcdRefused):
    """Too few members have started for this change to keep the quorum safe."""


class AlreadyExists(EtcdRefused):
    """A member with this ID or peer URL is already in the cluster."""


class UnhealthyCluster(Unavailable):
    """The members have not been connected long enough for a membership change (etcd
    says so for a few seconds after each change or restart)."""
