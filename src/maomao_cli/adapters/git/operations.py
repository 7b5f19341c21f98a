"""Repository operations on a dataset clone: clone, pull, commit, push, status.

Every failure is a `GitError` with one line naming the (credential-free) URL.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dulwich.diff_tree import tree_changes
from dulwich.graph import can_fast_forward, find_merge_base
from dulwich.objects import ObjectID, Tree
from dulwich.refs import Ref
from dulwich.repo import Repo

from maomao_cli.errors import GitError, PushRejected
from maomao_cli.gitmodels import GitAuth, Progress, PullResult, RepoStatus
from maomao_cli.gitprogress import splitter

from . import repository as r
from .checkout import checkout_fresh
from .remotes import Remote, parse_url
from .translate import one_line, translated
from .transports import client_for, close_connections

if TYPE_CHECKING:
    from dulwich.diff_tree import TreeChange

DEFAULT_TIMEOUT = 60.0


def clone(
    url: str,
    dest: Path,
    *,
    branch: str | None = None,
    depth: int | None = None,
    auth: GitAuth = GitAuth(),
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
) -> None:
    """Clone `url` into `dest` (absent or empty) and check out `branch` (default: HEAD).

    On any failure, what the clone created is removed again.
    """
    dest = Path(dest)
    remote = parse_url(url)
    existed = dest.exists()
    if existed and (not dest.is_dir() or any(dest.iterdir())):
        raise GitError(f"clone {remote.shown}: {dest} exists and is not empty")
    if depth is not None and depth < 1:
        raise GitError(f"clone {remote.shown}: depth must be at least 1")
    client, path = client_for("clone", remote, auth, timeout)
    lines = splitter(progress)
    try:
        with translated("clone", remote, auth, timeout):
            try:
                repo = client.clone(
                    path,
                    str(dest),
                    mkdir=not existed,
                    checkout=False,  # checkout_fresh below is faster on big trees
                    branch=branch,
                    progress=lines,
                    depth=depth,
                    origin_url=remote.shown,  # never store an HTTPS password in .git/config
                )
            except KeyError as exc:
                raise GitError(f"clone {remote.shown}: no branch {exc.args[0]!r}") from None
            except ValueError:
                # dulwich: the branch asked for is not among the remote's refs. An empty
                # remote has none at all: that is a clone whose first push creates it.
                r.remove_created(dest, existed)
                if _remote_branches(client, path):
                    raise GitError(f"clone {remote.shown}: no branch {branch!r}") from None
                repo = r.init_empty_clone(dest, existed, remote.shown, branch or r.DEFAULT_BRANCH)
            try:
                head = r.head(repo)
                if head is not None:
                    known = getattr(client, "fresh_objects", None) or {}
                    checkout_fresh(repo, r.commit_of(repo, head).tree, known)
                else:
                    # Empty remote: HEAD and the branch's config name the same branch.
                    r.point_head(repo, branch or r.configured_branch(repo) or r.DEFAULT_BRANCH)
            finally:
                repo.close()
    except BaseException:
        r.remove_created(dest, existed)
        raise
    finally:
        close_connections(client)
        if lines:
            lines.flush()


def _remote_branches(client: Any, path: str) -> list[bytes]:
    """The branch refs the remote advertises (none: an empty repository)."""
    refs = client.get_refs(path.encode() if isinstance(path, str) else path).refs
    return [ref for ref in refs if ref.startswith(b"refs/heads/")]


def pull(
    repo_dir: Path,
    *,
    branch: str | None = None,
    auth: GitAuth = GitAuth(),
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
    author: str = "maomao <maomao@maomao>",
) -> PullResult:
    """Fetch `branch` from origin and fast-forward, or merge when no file changed on both sides.

    A file changed differently on both sides is a conflict: nothing local is touched (HEAD,
    index and work tree stay as they were) and the result says which paths conflict.
    maomao never line-merges data files.
    """
    repo = r.open_repo(Path(repo_dir))
    try:
        name = r.current_branch(repo, branch)
        theirs = _fetch(repo, name, parse_url(r.origin(repo)), auth, timeout, progress)
        return _integrate(repo, name, theirs, author)
    except KeyError as exc:
        # A shallow clone whose history is too short to find the merge base.
        raise GitError(
            f"pull {repo_dir}: missing object {exc.args[0]!r}",
            "the clone is too shallow to merge; clone it again without a depth",
        ) from None
    finally:
        repo.close()


def _fetch(
    repo: Repo, name: str, remote: Remote, auth: GitAuth, timeout: float, progress: Progress | None
) -> ObjectID | None:
    """Fetch the remote `name` branch's new objects; return its tip (None: no such branch)."""
    client, path = client_for("pull", remote, auth, timeout)
    ref = r.branch_ref(name)
    lines = splitter(progress)

    def wants(refs: Mapping[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
        sha = refs.get(ref)
        return [sha] if sha is not None and sha not in repo.object_store else []

    with translated("pull", remote, auth, timeout):
        try:
            # Protocol v1: the server ACKs each common commit as it reads it, so
            # dulwich stops after a few haves; over v2 it walks the whole history
            # first (0.3 s of a pull on the 1,000-commit bench, growing with it).
            fetched = client.fetch(
                path, repo, determine_wants=wants, progress=lines, protocol_version=1
            )
        finally:
            close_connections(client)
            if lines:
                lines.flush()
    theirs: ObjectID | None = fetched.refs.get(ref)
    return theirs


def _integrate(repo: Repo, name: str, theirs: ObjectID | None, author: str) -> PullResult:
    """Bring the local branch up to the fetched tip: fast-forward, merge or report."""
    ref = r.branch_ref(name)
    ours = r.head(repo)
    if theirs is None:
        return PullResult("up-to-date", r.hexsha(ours), None)
    repo.refs[r.tracking_ref(name)] = theirs
    if ours is None:  # an empty clone: take the remote branch as it is
        r.update_tree(repo, None, r.commit_of(repo, theirs).tree)
        repo.refs[ref] = theirs
        return PullResult("fast-forward", r.hexsha(theirs), r.hexsha(theirs))
    if ours == theirs or can_fast_forward(repo, theirs, ours):
        return PullResult("up-to-date", r.hexsha(ours), r.hexsha(theirs))
    if can_fast_forward(repo, ours, theirs):
        r.update_tree(repo, r.commit_of(repo, ours).tree, r.commit_of(repo, theirs).tree)
        repo.refs.set_if_equals(ref, ours, theirs)
        return PullResult("fast-forward", r.hexsha(theirs), r.hexsha(theirs))
    return _merge(repo, ref, ours, theirs, name, author)


def _tree_delta(
    repo: Repo, old: ObjectID, new: ObjectID
) -> dict[bytes, tuple[int, ObjectID] | None]:
    out: dict[bytes, tuple[int, ObjectID] | None] = {}
    change: TreeChange
    for change in tree_changes(repo.object_store, old, new):
        if change.old is not None and change.old.path is not None:
            out[change.old.path] = None  # deleted unless the new side says otherwise
        if change.new is not None and change.new.path is not None:
            assert change.new.mode is not None and change.new.sha is not None
            out[change.new.path] = (change.new.mode, change.new.sha)
    return out


def _merge(
    repo: Repo, ref: Ref, ours: ObjectID, theirs: ObjectID, name: str, author: str
) -> PullResult:
    from dulwich.merge import recursive_merge

    bases = find_merge_base(repo, [ours, theirs])
    ours_c, theirs_c = r.commit_of(repo, ours), r.commit_of(repo, theirs)
    conflict = PullResult("conflict", r.hexsha(ours), r.hexsha(theirs), ())
    if len(bases) == 1:
        base_tree = r.commit_of(repo, bases[0]).tree
        mine = _tree_delta(repo, base_tree, ours_c.tree)
        other = _tree_delta(repo, base_tree, theirs_c.tree)
        both = sorted(p for p in mine.keys() & other.keys() if mine[p] != other[p])
        if both:
            return _with_conflicts(conflict, both)
    try:
        tree, conflicts = recursive_merge(repo.object_store, bases, ours_c, theirs_c)
    except ImportError:  # criss-cross history needing a line merge without merge3
        return conflict
    if conflicts:
        return _with_conflicts(conflict, sorted(conflicts, key=os.fsdecode))
    assert isinstance(tree, Tree)
    repo.object_store.add_object(tree)
    r.update_tree(repo, ours_c.tree, tree.id)
    msg = f"Merge remote-tracking branch 'origin/{name}'"
    commit = r.new_commit(repo, tree.id, [ours, theirs], msg, r.identity(author))
    repo.refs.set_if_equals(ref, ours, commit.id)
    return PullResult("merged", r.hexsha(commit.id), r.hexsha(theirs))


def _with_conflicts(result: PullResult, paths: list[bytes]) -> PullResult:
    names = tuple(os.fsdecode(p) for p in paths)
    return PullResult(result.outcome, result.head, result.remote, names)


def commit_all(repo_dir: Path, message: str, author: str) -> str | None:
    """Stage every new, changed and deleted file (honouring .gitignore) and commit.

    Returns the new commit's sha, or None when nothing changed. `author` is
    'Name <email>' or a bare member name.
    """
    repo = r.open_repo(Path(repo_dir))
    try:
        name = r.current_branch(repo, None)
        paths = r.changed_paths(repo)
        if paths:
            repo.get_worktree().stage(paths)  # a missing file is removed from the index
        tree = repo.open_index().commit(repo.object_store)
        head = r.head(repo)
        if head is not None and r.commit_of(repo, head).tree == tree:
            return None
        if head is None and not paths:
            return None
        commit = r.new_commit(repo, tree, [head] if head else [], message, r.identity(author))
        ref = r.branch_ref(name)
        if head is None:
            repo.refs.add_if_new(ref, commit.id)
        elif not repo.refs.set_if_equals(ref, head, commit.id):
            raise GitError(f"commit {repo_dir}: {name} moved during the commit; try again")
        return commit.id.decode()
    finally:
        repo.close()


class _Rejected(Exception):
    pass


def push(
    repo_dir: Path,
    *,
    branch: str | None = None,
    auth: GitAuth = GitAuth(),
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
) -> None:
    """Push `branch` to origin, fast-forward only."""
    repo = r.open_repo(Path(repo_dir))
    try:
        name = r.current_branch(repo, branch)
        _push(repo, name, parse_url(r.origin(repo)), auth, timeout, progress)
    finally:
        repo.close()


def _push(
    repo: Repo, name: str, remote: Remote, auth: GitAuth, timeout: float, progress: Progress | None
) -> None:
    ref = r.branch_ref(name)
    local = r.read_ref(repo, ref)
    if local is None:
        raise GitError(f"push {remote.shown}: no commit on {name} to push")
    client, path = client_for("push", remote, auth, timeout)
    lines = splitter(progress)

    def update_refs(refs: dict[Ref, ObjectID]) -> dict[Ref, ObjectID]:
        old = refs.get(ref)
        if (
            old is not None
            and old != local
            and (old not in repo.object_store or not can_fast_forward(repo, old, local))
        ):
            raise _Rejected()
        return {ref: local}

    def pack_data(have: Any, want: Any, *, ofs_delta: bool = False, progress: Any = None) -> Any:
        return repo.generate_pack_data(set(have), set(want), progress=progress, ofs_delta=ofs_delta)

    with translated("push", remote, auth, timeout):
        try:
            result = client.send_pack(path.encode(), update_refs, pack_data, progress=lines)
        except _Rejected:
            raise PushRejected(
                f"push {remote.shown}: rejected, the remote {name} has commits this clone lacks",
                "pull first, then push again",
            ) from None
        finally:
            close_connections(client)
            if lines:
                lines.flush()
    errors = {k: e for k, e in (result.ref_status or {}).items() if e is not None}
    if errors:
        reason = errors.get(ref) or next(iter(errors.values()))
        # Refused after the pack went: most often another member's push landed in between.
        raise PushRejected(f"push {remote.shown}: rejected by the remote: {one_line(str(reason))}")
    repo.refs[r.tracking_ref(name)] = local


def status(repo_dir: Path, *, branch: str | None = None) -> RepoStatus:
    """Local view, no network: commits not pushed, commits pulled but not merged, edits."""
    repo = r.open_repo(Path(repo_dir))
    try:
        name = r.current_branch(repo, branch)
        local = r.head(repo)
        tracking = r.read_ref(repo, r.tracking_ref(name))
        ahead = behind = 0
        if local is not None:
            ahead = len(list(repo.get_walker(include=[local], exclude=_opt(tracking))))
        if tracking is not None:
            behind = len(list(repo.get_walker(include=[tracking], exclude=_opt(local))))
        return RepoStatus(name, ahead, behind, r.changed_paths(repo))
    finally:
        repo.close()


def _opt(sha: ObjectID | None) -> list[ObjectID]:
    return [sha] if sha is not None else []
