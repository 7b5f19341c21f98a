"""`DulwichSync`: the DatasetSync port (maomao_cli.ports) on this package's operations.

Importing it costs nothing: dulwich is loaded by the first operation that needs it.
"""

from __future__ import annotations

from pathlib import Path

from maomao_cli.gitmodels import GitAuth, Progress, PullResult, RepoStatus


class DulwichSync:
    """Datasets' git operations through dulwich (no `git` binary needed)."""

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
        from . import operations

        operations.clone(
            url, dest, branch=branch, depth=depth, auth=auth, timeout=timeout, progress=progress
        )

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
        from . import operations

        return operations.pull(
            repo_dir, branch=branch, auth=auth, timeout=timeout, progress=progress, author=author
        )

    def commit_all(self, repo_dir: Path, message: str, author: str) -> str | None:
        from . import operations

        return operations.commit_all(repo_dir, message, author)

    def push(self, repo_dir: Path, *, branch: str | None, auth: GitAuth, timeout: float) -> None:
        from . import operations

        operations.push(repo_dir, branch=branch, auth=auth, timeout=timeout)

    def status(self, repo_dir: Path, *, branch: str | None) -> RepoStatus:
        from . import operations

        return operations.status(repo_dir, branch=branch)

    def generate_ssh_key(self, path: Path, comment: str) -> str:
        from .sshkeys import generate_ssh_key

        return generate_ssh_key(path, comment)
