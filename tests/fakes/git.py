"""FakeGit: the DatasetSync port without git, for in-process CLI, API and service tests.

Remotes are in-memory histories named by URL (`add_remote`, `commit_on_remote`); a clone
is a plain directory whose files are the work tree, with an empty `.git` folder because
services look for one. Commits are snapshots of every file. A pull fast-forwards, or
merges per file as the real adapter does: a file changed differently on both sides is a
conflict that touches nothing local. Every failure is a GitError, one line naming the URL.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from maomao_cli.errors import GitError, PushRejected
from maomao_cli.gitmodels import GitAuth, Progress, PullResult, RepoStatus

Files = dict[str, bytes]


@dataclass(frozen=True)
class FakeCommit:
    sha: str
    parents: tuple[str, ...]
    files: Files
    message: str
    author: str


@dataclass
class FakeRemote:
    branches: dict[str, str] = field(default_factory=dict)  # branch -> tip sha
    head: str = "main"  # the branch a clone without --branch checks out
    reachable: bool = True


@dataclass
class _Clone:
    url: str
    branch: str
    head: str | None
    tracking: str | None


class FakeGit:
    """An in-memory DatasetSync; `calls` records each operation's name, in order."""

    def __init__(self) -> None:
        self.commits: dict[str, FakeCommit] = {}
        self.remotes: dict[str, FakeRemote] = {}
        self.calls: list[str] = []
        self._clones: dict[Path, _Clone] = {}

    # Setting the scene ------------------------------------------------------------

    def add_remote(
        self, url: str, files: Mapping[str, str | bytes] | None = None, branch: str = "main"
    ) -> FakeRemote:
        """A remote at `url`; with `files`, its `branch` holds one commit of them."""
        remote = self.remotes[url] = FakeRemote(head=branch)
        if files is not None:
            remote.branches[branch] = self._commit({}, files, (), "seed", "seed").sha
        return remote

    def commit_on_remote(
        self,
        url: str,
        changes: Mapping[str, str | bytes | None],
        message: str = "elsewhere",
        branch: str = "main",
    ) -> str:
        """Another member's pushed commit: `changes` written (None: deleted) on the tip."""
        remote = self.remotes[url]
        tip = remote.branches.get(branch)
        base = self.commits[tip].files if tip else {}
        commit = self._commit(base, changes, (tip,) if tip else (), message, "someone")
        remote.branches[branch] = commit.sha
        return commit.sha

    def remote_files(self, url: str, branch: str = "main") -> Files:
        tip = self.remotes[url].branches.get(branch)
        return dict(self.commits[tip].files) if tip else {}

    # The port ---------------------------------------------------------------------

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
        self.calls.append("clone")
        if url.startswith(("/", "file://", ".", "~")) and not auth.allow_local:
            raise GitError(f"clone {url}: refusing a local path as a dataset remote")
        dest = Path(dest)
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise GitError(f"clone {url}: {dest} exists and is not empty")
        if depth is not None and depth < 1:
            raise GitError(f"clone {url}: depth must be at least 1")
        remote = self._remote("clone", url)
        name = branch or remote.head
        tip = remote.branches.get(name)
        if tip is None and remote.branches:
            raise GitError(f"clone {url}: no branch {name!r}")
        (dest / ".git").mkdir(parents=True)
        self._clones[dest.resolve()] = _Clone(url, name, tip, tip)
        if tip is not None:
            _write_tree(dest, {}, self.commits[tip].files)
        if progress is not None:
            count = len(self.commits[tip].files) if tip else 0
            progress(f"Receiving objects: 100% ({count}/{count}), done.")

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
        self.calls.append("pull")
        clone = self._clone(repo_dir, branch)
        theirs = self._remote("pull", clone.url).branches.get(clone.branch)
        ours = clone.head
        if theirs is None:
            return PullResult("up-to-date", ours, None)
        clone.tracking = theirs
        if ours == theirs or (ours is not None and theirs in self._ancestry(ours)):
            return PullResult("up-to-date", ours, theirs)
        if ours is None or ours in self._ancestry(theirs):
            self._move(repo_dir, clone, theirs)
            return PullResult("fast-forward", theirs, theirs)
        return self._merge(repo_dir, clone, ours, theirs, author)

    def commit_all(self, repo_dir: Path, message: str, author: str) -> str | None:
        self.calls.append("commit_all")
        clone = self._clone(repo_dir, None)
        files = _read_tree(Path(repo_dir))
        old = self.commits[clone.head].files if clone.head else {}
        if files == old:
            return None
        parents = (clone.head,) if clone.head else ()
        commit = self._commit({}, files, parents, message, author)
        clone.head = commit.sha
        return commit.sha

    def push(self, repo_dir: Path, *, branch: str | None, auth: GitAuth, timeout: float) -> None:
        self.calls.append("push")
        self._push(self._clone(repo_dir, branch))

    def status(self, repo_dir: Path, *, branch: str | None) -> RepoStatus:
        self.calls.append("status")
        clone = self._clone(repo_dir, branch)
        ahead = self._count_missing(clone.head, clone.tracking)
        behind = self._count_missing(clone.tracking, clone.head)
        old = self.commits[clone.head].files if clone.head else {}
        files = _read_tree(Path(repo_dir))
        changed = sorted(p for p in old.keys() | files.keys() if old.get(p) != files.get(p))
        return RepoStatus(clone.branch, ahead, behind, changed)

    def generate_ssh_key(self, path: Path, comment: str) -> str:
        self.calls.append("generate_ssh_key")
        path = Path(path)
        pub = path.with_name(path.name + ".pub")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            path.write_text("fake private key\n")
            path.chmod(0o600)
            digest = hashlib.sha256(str(path).encode()).hexdigest()
            pub.write_text(f"ssh-ed25519 AAAA{digest} {comment}\n")
        return pub.read_text().strip()

    # Inside -----------------------------------------------------------------------

    def _remote(self, op: str, url: str) -> FakeRemote:
        remote = self.remotes.get(url)
        if remote is None:
            raise GitError(f"{op} {url}: no git repository at {url}")
        if not remote.reachable:
            raise GitError(f"{op} {url}: connection refused")
        return remote

    def _clone(self, repo_dir: Path, branch: str | None) -> _Clone:
        clone = self._clones.get(Path(repo_dir).resolve())
        if clone is None or not (Path(repo_dir) / ".git").is_dir():
            raise GitError(f"{repo_dir} is not a git clone")
        if branch is not None and branch != clone.branch:
            raise GitError(f"{repo_dir}: branch {clone.branch} is checked out, not {branch}")
        return clone

    def _commit(
        self,
        base: Files,
        changes: Mapping[str, str | bytes | None],
        parents: tuple[str, ...],
        message: str,
        author: str,
    ) -> FakeCommit:
        files = dict(base)
        for path, data in changes.items():
            if data is None:
                files.pop(path, None)
            else:
                files[path] = data.encode() if isinstance(data, str) else data
        seed = repr((parents, sorted(files.items()), message, author, len(self.commits)))
        sha = hashlib.sha1(seed.encode()).hexdigest()
        commit = self.commits[sha] = FakeCommit(sha, parents, files, message, author)
        return commit

    def _ancestry(self, sha: str) -> set[str]:
        """`sha` and every commit it descends from."""
        seen: set[str] = set()
        todo = [sha]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(self.commits[current].parents)
        return seen

    def _count_missing(self, tip: str | None, other: str | None) -> int:
        """Commits reachable from `tip` and not from `other`."""
        if tip is None:
            return 0
        return len(self._ancestry(tip) - (self._ancestry(other) if other else set()))

    def _move(self, repo_dir: Path, clone: _Clone, target: str) -> None:
        """Check out `target`, refusing (as git does) to overwrite uncommitted edits."""
        old = self.commits[clone.head].files if clone.head else {}
        new = self.commits[target].files
        work = _read_tree(Path(repo_dir))
        touched = {p for p in old.keys() | new.keys() if old.get(p) != new.get(p)}
        edited = sorted(p for p in touched if work.get(p) != old.get(p))
        if edited:
            raise GitError(
                f"{repo_dir}: local changes would be overwritten: {', '.join(edited)}",
                "commit or remove the local changes, then pull again",
            )
        _write_tree(Path(repo_dir), old, new)
        clone.head = target

    def _merge(
        self, repo_dir: Path, clone: _Clone, ours: str, theirs: str, author: str
    ) -> PullResult:
        common = self._ancestry(ours) & self._ancestry(theirs)
        best = sorted(c for c in common if not any(c in self._ancestry(d) - {d} for d in common))
        base = self.commits[best[0]].files if best else {}
        mine = _delta(base, self.commits[ours].files)
        other = _delta(base, self.commits[theirs].files)
        both = tuple(sorted(p for p in mine.keys() & other.keys() if mine[p] != other[p]))
        if both:
            return PullResult("conflict", ours, theirs, both)
        message = f"Merge remote-tracking branch 'origin/{clone.branch}'"
        merged = self._commit(base, {**mine, **other}, (ours, theirs), message, author)
        self._move(repo_dir, clone, merged.sha)
        return PullResult("merged", merged.sha, theirs)

    def _push(self, clone: _Clone) -> None:
        if clone.head is None:
            raise GitError(f"push {clone.url}: no commit on {clone.branch} to push")
        remote = self._remote("push", clone.url)
        old = remote.branches.get(clone.branch)
        if old is not None and old not in self._ancestry(clone.head):
            raise PushRejected(
                f"push {clone.url}: rejected, the remote {clone.branch} has commits "
                "this clone lacks",
                "pull first, then push again",
            )
        remote.branches[clone.branch] = clone.head
        clone.tracking = clone.head


def _delta(old: Files, new: Files) -> dict[str, bytes | None]:
    return {p: new.get(p) for p in old.keys() | new.keys() if old.get(p) != new.get(p)}


def _ignored(path: str, patterns: list[str]) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns)


def _read_tree(root: Path) -> Files:
    """The work tree's files (not .git, not what .gitignore names), by relative path."""
    ignore = root / ".gitignore"
    patterns = ignore.read_text().split() if ignore.is_file() else []
    files: Files = {}
    for folder, dirs, names in os.walk(root):
        if Path(folder) == root:
            dirs[:] = [d for d in dirs if d != ".git"]
        for name in names:
            rel = (Path(folder) / name).relative_to(root).as_posix()
            if not _ignored(rel, patterns):
                files[rel] = (Path(folder) / name).read_bytes()
    return files


def _write_tree(root: Path, old: Files, new: Files) -> None:
    """Turn the files of `old` into those of `new` under `root`."""
    for path in old.keys() - new.keys():
        (root / path).unlink(missing_ok=True)
    for path, data in new.items():
        if old.get(path) != data or not (root / path).exists():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(data)
