"""Datasets on this member: clones, pulls, status, keys, and the run hooks that fill them.

A dataset is registered once in etcd (services/registry.py); each member keeps its own
clone, by default at <importdir>/datasets/<name>. A tool linked to a dataset writes
straight into that clone (or a subfolder of it); after each successful run its new and
changed files are committed, and when the dataset has push enabled maomao pulls and
pushes. A conflict or a failed push never loses data: the local commit stays, the run
stays succeeded with a warning, and the next run (or `maomao dataset pull`) tries again.

Credentials never leave this member: SSH keys live in <statedir>/keys/<name>, HTTPS
passwords come from [git] settings or MAOMAO_GIT_PASSWORD, neither reaches etcd.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .. import validation
from ..config import Settings
from ..errors import BadInput, GitError, NotFound
from ..gitmodels import GitAuth
from ..models import Dataset, Run, Tool
from .registry import Registry

if TYPE_CHECKING:
    from ..gitmodels import PullResult, RepoStatus
    from ..ports import DatasetSync

log = logging.getLogger("maomao.datasets")

Progress = Callable[[str], None]

_LOCK_FILE = "maomao.lock"  # inside .git: serialises commit/pull/push between processes


class DatasetService:
    def __init__(
        self, settings: Settings, registry: Registry, member: str, git: DatasetSync
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.member = member
        self.git = git
        # A failed pull before a run, reported on that run's record by the after-run hook.
        self._pre_run_notes: dict[str, str] = {}
        self._notes_lock = threading.Lock()

    # Places ------------------------------------------------------------------

    @property
    def _importdir(self) -> Path:
        return self.settings.data.import_path.resolve()

    @property
    def _statedir(self) -> Path:
        return self.settings.data.state_path.resolve()

    def default_dir(self, name: str) -> Path:
        validation.name(name, "dataset name")
        return self._importdir / "datasets" / name

    def _clone_note(self, name: str) -> Path:
        """Where a clone made with --dest is remembered (this member only)."""
        return self._statedir / "clones" / name

    def work_dir(self, dataset: Dataset) -> Path:
        """This member's clone of the dataset: where `clone --dest` put it, else the default."""
        note = self._clone_note(dataset.name)
        with contextlib.suppress(OSError):
            remembered = Path(note.read_text(encoding="utf-8").strip())
            if remembered.is_absolute() and (remembered / ".git").is_dir():
                return remembered
        return self.default_dir(dataset.name)

    def is_cloned(self, dataset: Dataset) -> bool:
        return (self.work_dir(dataset) / ".git").is_dir()

    def key_path(self, name: str) -> Path:
        validation.name(name, "dataset name")
        return self._statedir / "keys" / name

    def known_hosts(self) -> Path:
        configured = self.settings.git.known_hosts
        return Path(configured).expanduser() if configured else self._statedir / "known_hosts"

    def auth(self, dataset: Dataset) -> GitAuth:
        key = self.key_path(dataset.name)
        known = self.known_hosts()
        if self.settings.git.trust_new_hosts:
            # ssh adds new host keys to the file but does not create its directory.
            known.parent.mkdir(parents=True, exist_ok=True)
        git = self.settings.git
        return GitAuth(
            ssh_key=key if key.exists() else None,
            known_hosts=known,
            trust_new_hosts=git.trust_new_hosts,
            https_username=git.https_username,
            https_password=git.https_password,
        )

    # Commands ----------------------------------------------------------------

    def clone(self, name: str, dest: Path | None = None, progress: Progress | None = None) -> Path:
        """Clone the dataset to dest (default <importdir>/datasets/<name>); returns the path.

        dest must be absent or an empty directory; only dest itself (and, for the default,
        <importdir>/datasets) is created, and a failed clone removes what it made.
        """
        dataset = self.registry.get_dataset(name)
        if dest is None:
            target = self.default_dir(dataset.name)
            target.parent.mkdir(parents=True, exist_ok=True)
        else:
            target = Path(dest).expanduser().absolute()
            if not target.parent.is_dir():
                raise BadInput(f"cannot clone into {target}: {target.parent} does not exist")
        locks = self._statedir / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        # One clone of a dataset at a time on this member (CLI, worker, HTTP): a second one
        # would find the first's files and, failing, remove them.
        with _flocked(locks / f"clone-{dataset.name}.lock"):
            if target.exists() and (not target.is_dir() or any(target.iterdir())):
                hint = (
                    "it is cloned already: `maomao dataset pull " + dataset.name + "`"
                    if (target / ".git").is_dir()
                    else "choose another --dest, or empty it"
                )
                raise BadInput(f"cannot clone into {target}: it exists and is not empty", hint=hint)
            self.git.clone(
                dataset.url,
                target,
                branch=dataset.branch,
                depth=dataset.depth,
                auth=self.auth(dataset),
                timeout=self.settings.git.timeout,
                progress=progress,
            )
        if dest is not None:
            note = self._clone_note(dataset.name)
            note.parent.mkdir(parents=True, exist_ok=True)
            note.write_text(f"{target.resolve()}\n", encoding="utf-8")
        return target

    def _cloned_dir(self, dataset: Dataset) -> Path:
        work = self.work_dir(dataset)
        if not (work / ".git").is_dir():
            raise NotFound(
                f"dataset {dataset.name!r} is not cloned on this member ({work})",
                hint=f"clone it with `maomao dataset clone {dataset.name}`",
            )
        return work

    def pull(self, name: str, progress: Progress | None = None) -> PullResult:
        """Fetch and fast-forward (or merge non-conflicting changes); a conflict touches
        nothing local and is remembered for `status`."""
        dataset = self.registry.get_dataset(name)
        work = self._cloned_dir(dataset)
        with _locked(work):
            result = self.git.pull(
                work,
                branch=dataset.branch,
                auth=self.auth(dataset),
                timeout=self.settings.git.timeout,
                progress=progress,
                author=self.member,
            )
            if result.conflict:
                self.git.record_push_error(work, _conflict_text(dataset, result))
        return result

    def push(self, name: str) -> None:
        dataset = self.registry.get_dataset(name)
        work = self._cloned_dir(dataset)
        with _locked(work):
            self.git.push(
                work,
                branch=dataset.branch,
                auth=self.auth(dataset),
                timeout=self.settings.git.timeout,
            )

    def status(self, name: str) -> RepoStatus:
        dataset = self.registry.get_dataset(name)
        return self.git.status(self._cloned_dir(dataset), branch=dataset.branch)

    def key(self, name: str) -> tuple[Path, str]:
        """The dataset's ed25519 key (created once, owner-only): its path and public line."""
        dataset = self.registry.get_dataset(name)
        path = self.key_path(dataset.name)
        path.parent.parent.mkdir(parents=True, exist_ok=True)
        public = self.git.generate_ssh_key(path, f"maomao-{dataset.name}@{self.member}")
        return path, public

    # Run hooks ---------------------------------------------------------------

    def data_dir(self, tool: Tool) -> Path:
        """The data-dir resolver: a dataset tool writes into its clone (cloned before the
        first run, brought up to date before each run); other tools into <importdir>/<tool>."""
        if tool.dataset is None:
            path = (self._importdir / tool.name).resolve()
            # Names are validated already; this guards against a record written by hand.
            if self._importdir not in path.parents:
                raise BadInput(f"data directory of tool {tool.name!r} leaves {self._importdir}")
            return path
        dataset = self.registry.get_dataset(tool.dataset)
        work = self.work_dir(dataset)
        if not (work / ".git").is_dir():
            log.info("cloning dataset %s for tool %s", dataset.name, tool.name)
            work = self.clone(dataset.name)
        else:
            self._pull_before_run(tool, dataset, work)
        return _inside(work, tool.data_subdir)

    def _pull_before_run(self, tool: Tool, dataset: Dataset, work: Path) -> None:
        """Let the tool see the collaboration's latest data. Skipped when the work tree has
        uncommitted files: never pull over them (that is also the case on the resolver's
        second call, after the run and before the commit)."""
        note: str | None = None
        try:
            with _locked(work):
                if self.git.status(work, branch=dataset.branch).changed_files:
                    return
                result = self.git.pull(
                    work,
                    branch=dataset.branch,
                    auth=self.auth(dataset),
                    timeout=self.settings.git.timeout,
                    author=self.member,
                )
            if result.conflict:
                note = _conflict_text(dataset, result)
        except GitError as exc:
            note = f"dataset {dataset.name}: pull before the run failed: {exc.message}"
        with self._notes_lock:
            if note is None:
                self._pre_run_notes.pop(tool.name, None)
            else:
                log.warning("%s", note)
                self._pre_run_notes[tool.name] = note

    def after_run(self, tool: Tool, run: Run, data_dir: Path) -> Run | None:
        """Commit the run's files; with push enabled, pull then push. Problems with the
        remote become a warning on the run (which stays succeeded); the commit stays."""
        if tool.dataset is None:
            return None
        with self._notes_lock:
            notes = [n for n in [self._pre_run_notes.pop(tool.name, None)] if n]
        dataset = self.registry.get_dataset(tool.dataset)
        work = self._cloned_dir(dataset)
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run.finished or time.time()))
        message = (
            f"{tool.name}: run {run.id} by {self.member} at {when}\n\n"
            f"maomao-tool: {tool.name}\nmaomao-run: {run.id}\nmaomao-member: {self.member}\n"
        )
        with _locked(work):
            sha = self.git.commit_all(work, message, self.member)
            log.info("dataset %s: run %s committed as %s", dataset.name, run.id, sha or "nothing")
            if dataset.push:
                problem = self._sync(dataset, work)
                if problem:
                    notes = [problem]  # supersedes the pre-run note: it is the newer news
        if not notes:
            return None
        warning = "; ".join(([run.warning] if run.warning else []) + notes)
        return replace(run, warning=warning)

    def _sync(self, dataset: Dataset, work: Path) -> str | None:
        """Pull then push what is not on the remote yet; None when all went, else why not."""
        if self.git.status(work, branch=dataset.branch).ahead == 0:
            return None
        auth = self.auth(dataset)
        timeout = self.settings.git.timeout
        try:
            result = self.git.pull(
                work, branch=dataset.branch, auth=auth, timeout=timeout, author=self.member
            )
            if result.conflict:
                text = _conflict_text(dataset, result)
                self.git.record_push_error(work, text)
                return text
            self.git.push(work, branch=dataset.branch, auth=auth, timeout=timeout)
        except GitError as exc:
            with contextlib.suppress(GitError, OSError):
                self.git.record_push_error(work, exc.message)
            return (
                f"dataset {dataset.name}: not pushed ({exc.message}); "
                "the commit stays local and is pushed with the next run"
            )
        return None


def _conflict_text(dataset: Dataset, result: PullResult) -> str:
    paths = ", ".join(result.conflicts[:5]) + (" ..." if len(result.conflicts) > 5 else "")
    return (
        f"dataset {dataset.name}: not pushed: the remote changed the same file(s) "
        f"({paths or 'unknown'}); local commits stay, resolve with git and push, "
        "or the next run retries"
    )


def _inside(work: Path, subdir: str | None) -> Path:
    """work/subdir, refusing anything that leaves the work tree or enters .git."""
    if not subdir:
        return work
    parts = [p for p in subdir.split("/") if p not in ("", ".")]
    if subdir.startswith("/") or ".." in parts or ".git" in parts:
        raise BadInput(f"invalid data subdir {subdir!r}: must be a folder inside the dataset")
    path = work.joinpath(*parts)
    real_work = work.resolve()
    real = path.resolve()
    if real != real_work and real_work not in real.parents:
        raise BadInput(f"data subdir {subdir!r} leaves the dataset work tree (a symlink?)")
    return path


def _locked(work: Path) -> contextlib.AbstractContextManager[None]:
    """One writer per clone at a time, across threads and processes (CLI and worker)."""
    return _flocked(work / ".git" / _LOCK_FILE)


@contextlib.contextmanager
def _flocked(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
