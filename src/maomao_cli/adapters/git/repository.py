"""A clone on disk: opening it, its branch and refs, new commits, its work tree's changes.

A clone is opened as maomao's own, whatever its configuration says: the work tree is the
directory that holds `.git` (never `core.worktree`, never a `.git` file or link pointing
elsewhere), no hook runs, no clean or smudge filter (nor any line-ending conversion)
touches a file. maomao itself builds every transport, so `core.sshCommand`, `url.*`,
`http.*` and credential helpers are never read either.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
from pathlib import Path
from typing import Any

from dulwich.diff_tree import tree_changes
from dulwich.errors import NotGitRepository
from dulwich.index import update_working_tree
from dulwich.objects import Commit, ObjectID
from dulwich.refs import HEADREF, Ref
from dulwich.repo import Repo

from maomao_cli.errors import GitError

from .translate import one_line


class _AsIs:
    """A blob normalizer that changes nothing: data files are stored as written."""

    def checkin_normalize(self, blob: Any, path: bytes) -> Any:
        return blob

    def checkout_normalize(self, blob: Any, path: bytes) -> Any:
        return blob


class OwnRepo(Repo):
    """A clone opened on maomao's terms (see the module's docstring)."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.path = root  # core.worktree may have moved it; the clone is where .git is
        self.bare = False
        self.hooks = {}

    def get_blob_normalizer(self, config: Any = None, tree: Any = None) -> Any:
        return _AsIs()


def open_repo(repo_dir: Path) -> Repo:
    try:
        control = os.lstat(Path(repo_dir) / ".git")
    except OSError:
        raise GitError(f"{repo_dir} is not a git clone") from None
    if not stat.S_ISDIR(control.st_mode):  # a link or a gitfile would name another place
        raise GitError(f"{repo_dir} is not a git clone: its .git is not a directory")
    try:
        return OwnRepo(str(repo_dir))
    except NotGitRepository:
        raise GitError(f"{repo_dir} is not a git clone") from None


def current_branch(repo: Repo, branch: str | None) -> str:
    try:
        target = repo.refs.get_symrefs().get(HEADREF)
    except Exception:  # pragma: no cover - a broken refs directory
        target = None
    current = target[len(b"refs/heads/") :].decode() if target else None
    if branch is not None and current is not None and branch != current:
        raise GitError(f"{repo.path}: branch {current} is checked out, not {branch}")
    if branch is None and current is None:
        raise GitError(f"{repo.path}: HEAD is detached; give the branch")
    return branch or str(current)


DEFAULT_BRANCH = "main"  # of a clone of an empty remote that names no default


def init_empty_clone(dest: Path, existed: bool, url: str, branch: str) -> Repo:
    """A clone of an empty remote: origin set, HEAD on `branch`, no commit yet."""
    dest.mkdir(exist_ok=existed)
    repo = Repo.init(str(dest))
    config = repo.get_config()
    config.set((b"remote", b"origin"), b"url", url.encode())
    config.set((b"remote", b"origin"), b"fetch", b"+refs/heads/*:refs/remotes/origin/*")
    config.write_to_path()
    repo.close()
    return OwnRepo(str(dest))


def configured_branch(repo: Repo) -> str | None:
    """The branch the clone's config tracks (what an empty remote's HEAD named)."""
    for section in repo.get_config().sections():
        if len(section) == 2 and section[0] == b"branch":
            return section[1].decode()
    return None


def point_head(repo: Repo, branch: str) -> None:
    """HEAD on refs/heads/<branch>, tracking origin's branch of that name, and no other."""
    repo.refs.set_symbolic_ref(HEADREF, branch_ref(branch))
    config = repo.get_config()
    for section in list(config.sections()):
        if len(section) == 2 and section[0] == b"branch" and section[1] != branch.encode():
            del config[section]
    config.set((b"branch", branch.encode()), b"remote", b"origin")
    config.set((b"branch", branch.encode()), b"merge", branch_ref(branch))
    config.write_to_path()


def branch_ref(name: str) -> Ref:
    return Ref(b"refs/heads/" + name.encode())


def tracking_ref(name: str) -> Ref:
    return Ref(b"refs/remotes/origin/" + name.encode())


def read_ref(repo: Repo, ref: Ref) -> ObjectID | None:
    try:
        return repo.refs[ref]
    except KeyError:
        return None


def head(repo: Repo) -> ObjectID | None:
    return repo.refs.follow(HEADREF)[1]


def commit_of(repo: Repo, sha: ObjectID) -> Commit:
    obj = repo[sha]
    if not isinstance(obj, Commit):
        raise GitError(f"{repo.path}: {sha.decode()} is not a commit")
    return obj


def origin(repo: Repo) -> str:
    try:
        return repo.get_config().get((b"remote", b"origin"), b"url").decode()
    except KeyError:
        raise GitError(f"{repo.path}: no remote named origin") from None


def identity(author: str) -> bytes:
    """'Name <email>' as given; a bare member name becomes 'name <name@maomao>'."""
    author = author.strip()
    if re.fullmatch(r"[^<>]+<[^<>]*>", author):
        return author.encode()
    return f"{author} <{author}@maomao>".encode()


def new_commit(
    repo: Repo, tree: ObjectID, parents: list[ObjectID], message: str, who: bytes
) -> Commit:
    c = Commit()
    c.tree = tree
    c.parents = parents
    c.author = c.committer = who
    c.author_time = c.commit_time = int(time.time())
    tz = -time.timezone if not time.daylight else -time.altzone
    c.author_timezone = c.commit_timezone = tz
    c.encoding = b"UTF-8"
    c.message = message.encode() if message.endswith("\n") else (message + "\n").encode()
    repo.object_store.add_object(c)
    return c


def changed_paths(repo: Repo) -> list[str]:
    """Uncommitted paths: staged, modified, deleted or untracked (honouring .gitignore)."""
    from dulwich import porcelain

    st = porcelain.status(repo, untracked_files="all")
    paths: set[str] = set()
    for group in st.staged.values():
        paths.update(os.fsdecode(p) for p in group)
    paths.update(os.fsdecode(p) for p in st.unstaged)
    paths.update(os.fsdecode(p) for p in st.untracked)
    return sorted(paths)


def update_tree(repo: Repo, old_tree: ObjectID | None, new_tree: ObjectID) -> None:
    """Move the work tree and index from one tree to another, refusing to overwrite edits."""
    from dulwich.errors import WorkingTreeModifiedError

    changes = tree_changes(repo.object_store, old_tree, new_tree)
    try:
        update_working_tree(repo, old_tree, new_tree, change_iterator=changes)
    except WorkingTreeModifiedError as exc:
        raise GitError(
            f"{repo.path}: local changes would be overwritten: {one_line(str(exc))}",
            "commit or remove the local changes, then pull again",
        ) from None


def remove_created(dest: Path, existed: bool) -> None:
    """Undo a failed clone: remove dest, or only its contents when it was there (empty)."""
    if not existed:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir():  # dest was empty: everything inside is ours
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def hexsha(sha: bytes | None) -> str | None:
    return sha.decode() if sha is not None else None
