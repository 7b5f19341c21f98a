"""Datasets on this member: clones, pulls, status, keys, and the run hooks that fill them.

A dataset is registered once in etcd (services/registry.py); each member keeps its own
clone, by default at <importdir>/datasets/<name>. A tool linked to a dataset never sees
that clone: its data directory is its staging folder <importdir>/tools/<tool> (see
staging.py), a copy of the dataset's folder (its data subdir, or the whole work tree
without .git) made before each run. After each successful run what the run changed is
copied back into the work tree, without following any link, and committed; when the
dataset has push enabled maomao pulls and pushes. A conflict or a failed push never
loses data: the local commit stays, the run stays succeeded with a warning, and the next
run (or `maomao dataset pull`) tries again.

maomao's own bookkeeping (the lock of a clone, the last push error) lives in the state
directory, <statedir>/datasets/<name>/, which no container can reach, and is opened with
O_NOFOLLOW. Credentials never leave this member: SSH keys live in <statedir>/keys/<name>,
HTTPS credentials in [git.credentials."HOST"], neither reaches etcd.

Beside this service: the bookkeeping files (datasetbook.py), pushing with bounded retries
(datasetpush.py), and the wording of commits and warnings (datasetnotes.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
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
from ..models import Dataset, Run, Schedule, Tool
from . import datasetbook, datasetpush, staging
from .datasetbook import flocked, is_clone
from .datasetnotes import commit_message, conflict_text, skipped_note
from .records import load_all
from .registry import Registry

if TYPE_CHECKING:
    from ..gitmodels import PullResult, RepoStatus
    from ..ports import DatasetSync

log = logging.getLogger("maomao.datasets")

Progress = Callable[[str], None]

MarkPushed = Callable[[list[str]], None]


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
        # What each dataset tool's staging folder was given before its run, and from
        # which folder of the dataset, by tool.
        self._staged: dict[str, tuple[staging.Manifest, str | None]] = {}
        self._notes_lock = threading.Lock()
        # Told the ids of runs whose commits a push has just taken (their records' mark).
        self.on_pushed: MarkPushed | None = None
        self.push_attempts = datasetpush.PUSH_ATTEMPTS
        self.sleep: Callable[[float], None] = time.sleep  # tests: no sleeping
        self.random: Callable[[], float] = random.random

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

    def _own(self, name: str) -> Path:
        """<statedir>/datasets/<name>: maomao's bookkeeping of this member's clone."""
        validation.name(name, "dataset name")
        folder = self._statedir / "datasets" / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def work_dir(self, dataset: Dataset) -> Path:
        """This member's clone of the dataset: where `clone --dest` put it, else the default."""
        note = self._clone_note(dataset.name)
        with contextlib.suppress(OSError):
            remembered = Path(note.read_text(encoding="utf-8").strip())
            if remembered.is_absolute() and is_clone(remembered):
                return remembered
        return self.default_dir(dataset.name)

    def is_cloned(self, dataset: Dataset) -> bool:
        return is_clone(self.work_dir(dataset))

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
            https=git.credentials,
            ca_file=Path(git.ca_file).expanduser() if git.ca_file else None,
            allow_local=git.allow_local,
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
        # One clone of a dataset at a time on this member (CLI, worker, HTTP): a second one
        # would find the first's files and, failing, remove them.
        with flocked(self._own(dataset.name) / "clone.lock"):
            if target.exists() and (not target.is_dir() or any(target.iterdir())):
                hint = (
                    "it is cloned already: `maomao dataset pull " + dataset.name + "`"
                    if is_clone(target)
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
        if not is_clone(work):
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
        with self._locked(dataset):
            result = self.git.pull(
                work,
                branch=dataset.branch,
                auth=self.auth(dataset),
                timeout=self.settings.git.timeout,
                progress=progress,
                author=self.member,
            )
            if result.conflict:
                self._note_push_error(dataset, conflict_text(dataset, result))
        return result

    def push(self, name: str) -> None:
        dataset = self.registry.get_dataset(name)
        work = self._cloned_dir(dataset)
        with self._locked(dataset):
            self._push(dataset, work, self.auth(dataset))

    def _push(self, dataset: Dataset, work: Path, auth: GitAuth) -> None:
        """Push, remembering the outcome for `status` until a push succeeds."""
        try:
            self.git.push(work, branch=dataset.branch, auth=auth, timeout=self.settings.git.timeout)
        except GitError as exc:
            log.warning("dataset %s: push failed: %s", dataset.name, exc.message)
            with contextlib.suppress(OSError):
                self._note_push_error(dataset, exc.message)
            raise
        self._note_push_error(dataset, None)
        self._pushed(dataset)

    def status(self, name: str) -> RepoStatus:
        dataset = self.registry.get_dataset(name)
        st = self.git.status(self._cloned_dir(dataset), branch=dataset.branch)
        return replace(
            st,
            last_push_error=self._last_push_error(dataset),
            unpushed_runs=tuple(self._unpushed(dataset)),
        )

    # Bookkeeping, in the state directory --------------------------------------

    def _locked(self, dataset: Dataset) -> contextlib.AbstractContextManager[None]:
        """One writer per clone at a time, across threads and processes (CLI and worker)."""
        return flocked(self._own(dataset.name) / "lock")

    def _note_push_error(self, dataset: Dataset, message: str | None) -> None:
        """Remember why local commits were not pushed (None: they were), for `status`."""
        datasetbook.write_push_error(self._own(dataset.name), message)

    def _last_push_error(self, dataset: Dataset) -> str | None:
        return datasetbook.read_push_error(self._own(dataset.name))

    def _unpushed(self, dataset: Dataset) -> list[str]:
        """Ids of the runs committed here whose commits no push has taken yet."""
        return datasetbook.read_unpushed(self._own(dataset.name))

    def _note_unpushed(self, dataset: Dataset, run_id: str) -> None:
        datasetbook.add_unpushed(self._own(dataset.name), run_id)

    def _pushed(self, dataset: Dataset, *, besides: str | None = None) -> None:
        """Every noted run's commit is on the remote now: clear the notes, mark the runs
        (but `besides`, the run whose record the caller writes itself)."""
        ids = [i for i in self._unpushed(dataset) if i != besides]
        datasetbook.clear_unpushed(self._own(dataset.name))
        if ids and self.on_pushed is not None:
            try:
                self.on_pushed(ids)
            except Exception as exc:  # the records' mark only; the data went
                log.warning("dataset %s: could not mark runs pushed: %s", dataset.name, exc)

    def key(self, name: str) -> tuple[Path, str]:
        """The dataset's ed25519 key (created once, owner-only): its path and public line."""
        dataset = self.registry.get_dataset(name)
        path = self.key_path(dataset.name)
        path.parent.parent.mkdir(parents=True, exist_ok=True)
        public = self.git.generate_ssh_key(path, f"maomao-{dataset.name}@{self.member}")
        return path, public

    # Run hooks ---------------------------------------------------------------

    def data_dir(self, tool: Tool) -> Path:
        """The data-dir resolver: <importdir>/tools/<tool> for every tool. For a dataset
        tool it is filled from the clone (cloned before the first run, brought up to date
        before each run); an old <importdir>/<tool> of another tool is moved there once."""
        if tool.dataset is None:
            return staging.prepare_tool_dir(self._importdir, tool.name)
        dataset = self.registry.get_dataset(tool.dataset)
        work = self.work_dir(dataset)
        if not is_clone(work):
            log.info("cloning dataset %s for tool %s", dataset.name, tool.name)
            work = self.clone(dataset.name)
        else:
            self._pull_before_run(tool, dataset, work)
        path = staging.prepare_tool_dir(self._importdir, tool.name, migrate=False)
        subdir = self.folder_of(tool)
        with self._locked(dataset), self._staging(tool) as folder:
            copied = staging.mirror(work, subdir, folder)
        for rel, why in copied.skipped:
            log.warning(
                "dataset %s: %s not given to tool %s: %s", dataset.name, rel, tool.name, why
            )
        with self._notes_lock:
            self._staged[tool.name] = (copied.manifest, subdir)
        return path

    def member_folders(self, tool: Tool) -> bool:
        """Whether the tool's files go to <data-subdir>/<member>/: as registered, else
        when one of its schedules runs on every member (whose runs of one firing would
        otherwise write the same names)."""
        if tool.member_folders is not None:
            return tool.member_folders
        store, keys = self.registry.store, self.registry.keys
        schedules = load_all(store, keys.schedules(), Schedule)
        return any(s.tool == tool.name and s.mode == "everywhere" for s in schedules)

    def folder_of(self, tool: Tool) -> str | None:
        """The folder of the dataset this member's runs of the tool read and write."""
        if not self.member_folders(tool):
            return tool.data_subdir
        base = "/".join(staging.subdir_parts(tool.data_subdir))
        return f"{base}/{self.member}" if base else self.member

    def run_lock(self, tool: Tool) -> contextlib.AbstractContextManager[None]:
        """The run guard: one run at a time of a dataset tool on this member (threads and
        processes), since its runs share one staging folder; a run that overlaps another
        (--allow-overlap, or a guard lost with a member lease) waits for it."""
        if tool.dataset is None:
            return contextlib.nullcontext()
        validation.name(tool.name, "tool name")
        folder = self._statedir / "tools"
        folder.mkdir(parents=True, exist_ok=True)
        return flocked(folder / f"{tool.name}.lock")

    @contextlib.contextmanager
    def _staging(self, tool: Tool) -> Iterator[int]:
        fd = staging.open_tool_dir(self._importdir, tool.name)
        try:
            yield fd
        finally:
            os.close(fd)

    def _pull_before_run(self, tool: Tool, dataset: Dataset, work: Path) -> None:
        """Let the tool see the collaboration's latest data. Skipped when the work tree has
        uncommitted files: never pull over them."""
        note: str | None = None
        try:
            with self._locked(dataset):
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
                note = conflict_text(dataset, result)
        except GitError as exc:
            note = f"dataset {dataset.name}: pull before the run failed: {exc.message}"
        with self._notes_lock:
            if note is None:
                self._pre_run_notes.pop(tool.name, None)
            else:
                log.warning("%s", note)
                self._pre_run_notes[tool.name] = note

    def after_run(self, tool: Tool, run: Run, data_dir: Path) -> Run | None:
        """Copy the run's files into the work tree and commit them; with push enabled, pull
        then push. Problems with the remote become a warning on the run (which stays
        succeeded); the commit stays."""
        if tool.dataset is None:
            return None
        with self._notes_lock:
            notes = [n for n in [self._pre_run_notes.pop(tool.name, None)] if n]
            manifest, subdir = self._staged.pop(tool.name, (staging.Manifest(), None))
        dataset = self.registry.get_dataset(tool.dataset)
        work = self._cloned_dir(dataset)
        message = commit_message(tool, run)
        pushed: bool | None = None
        with self._locked(dataset):
            with self._staging(tool) as folder:
                copied = staging.copy_back(folder, work, subdir, manifest)
            skipped = skipped_note(dataset, tool, copied.skipped)
            sha = self.git.commit_all(work, message, self.member)
            log.info("dataset %s: run %s committed as %s", dataset.name, run.id, sha or "nothing")
            if dataset.push:
                if sha is not None:
                    self._note_unpushed(dataset, run.id)
                problem = self._sync(dataset, work)
                if problem:
                    notes = [problem]  # supersedes the pre-run note: it is the newer news
                else:
                    self._pushed(dataset, besides=run.id)
                pushed = None if sha is None else problem is None
        notes += [skipped] if skipped else []
        warning = "; ".join(([run.warning] if run.warning else []) + notes) or None
        updated = replace(run, warning=warning, dataset_commit=sha, pushed=pushed)
        return None if updated == run else updated

    def _sync(self, dataset: Dataset, work: Path) -> str | None:
        """Pull then push what is not on the remote yet (datasetpush.py); None when all
        went, else why not."""
        if self.git.status(work, branch=dataset.branch).ahead == 0:
            return None
        return datasetpush.sync(
            self.git,
            dataset,
            work,
            auth=self.auth(dataset),
            timeout=self.settings.git.timeout,
            author=self.member,
            attempts=self.push_attempts,
            wait=lambda attempt: self.sleep(self.backoff(attempt)),
            note=lambda message: self._note_push_error(dataset, message),
        )

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after the attempt-th rejected push."""
        return datasetpush.backoff(attempt, self.random)
