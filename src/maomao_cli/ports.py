"""The ports: the interfaces services depend on; adapters implement them."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from .gitmodels import GitAuth, Progress, PullResult, RepoStatus

# ---------------------------------------------------------------------------------------
# Dataset sync (git). Implemented by adapters.git.DulwichSync and tests/fakes/git.FakeGit;
# the contract is tests/contract/test_git_contract.py. Every failure is a GitError.


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
        """Push to origin, fast-forward only; a failure is remembered for `status`."""
        ...

    def status(self, repo_dir: Path, *, branch: str | None) -> RepoStatus:
        """The local view, without the network: unpushed and unmerged commits, edits."""
        ...

    def record_push_error(self, repo_dir: Path, message: str) -> None:
        """Remember why local commits were not pushed, for `status`, until a push succeeds."""
        ...

    def generate_ssh_key(self, path: Path, comment: str) -> str:
        """Make a key pair at `path` once (owner-only); return its public line."""
        ...


# ------------------------------------------------------------------- end of dataset sync
