"""The values that cross the dataset-sync port: credentials in, outcomes out.

Services and front ends use them without importing the git adapter (or dulwich).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import field
from pathlib import Path
from typing import Literal

from .frozen import frozen

Progress = Callable[[str], None]  # one git progress line at a time


@frozen
class HttpsCredential:
    """A username and password for one https host, from the member's own config. The
    password never appears in repr, logs or errors."""

    username: str
    password: str = field(default="", repr=False)


@frozen
class GitAuth:
    """What this member allows and holds for one dataset's remote.

    `https` maps "host" (port 443) or "host:port", lowercase, to its credential: it is
    sent only to that host, only over https, only after the host asked (a 401).
    `allow_local`: local paths and file:// remotes (tests and single-machine use only).
    """

    ssh_key: Path | None = None
    known_hosts: Path | None = None
    trust_new_hosts: bool = False  # StrictHostKeyChecking=accept-new instead of yes
    https: Mapping[str, HttpsCredential] = field(default_factory=dict)
    ca_file: Path | None = None  # CA bundle for https remotes; None: the system's
    allow_local: bool = False


@frozen
class PullResult:
    """What a pull did. `conflict` leaves HEAD, the index and the work tree untouched."""

    outcome: Literal["up-to-date", "fast-forward", "merged", "conflict"]
    head: str | None  # local branch tip after the pull
    remote: str | None  # remote branch tip that was fetched (None: no such branch yet)
    conflicts: tuple[str, ...] = ()

    @property
    def conflict(self) -> bool:
        return self.outcome == "conflict"


@frozen
class RepoStatus:
    branch: str
    ahead: int  # local commits not on the remote-tracking ref (i.e. not pushed)
    behind: int  # commits on the remote-tracking ref (as of the last pull) not local
    changed_files: list[str]  # uncommitted: staged, modified, deleted or untracked
    last_push_error: str | None = None  # filled in by the dataset service, not by git
    # Runs whose commits are not on the remote yet (the dataset service's, likewise).
    unpushed_runs: tuple[str, ...] = ()
