"""Run records in etcd: written, read newest first in pages, counted, pruned per tool by
count and age through the tool's run index (`runindex/<tool>/<start us>.<run-id>`), and
a member's full logs pruned with them (services/fulllogs.py)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

from .. import validation
from ..config import Settings
from ..errors import NotFound
from ..keys import Keys
from ..models import FINAL_STATUSES, Run
from ..store.base import Entry, Store, scan_pages
from .feeds import Feed
from .fulllogs import FullLogs
from .records import decode, load

log = logging.getLogger("maomao.runs")

# Keys-only pages of a tool's run index: about 80 bytes a key.
_INDEX_PAGE = 500
# Seconds between two looks for full logs past their age.
FULL_LOG_SWEEP = 3600.0


def first_writes(keys: Keys, run: Run) -> tuple[tuple[str, bytes], ...]:
    """What a record's first write puts, in order: its entry in the tool's run index,
    then the record (a worker's claim puts them in its own transaction)."""
    return (
        (keys.run_index(run.tool, run.started or 0.0, run.id), b""),
        (keys.run(run.id), run.to_json()),
    )


class RunRecords:
    def __init__(
        self,
        store: Store,
        keys: Keys,
        settings: Settings,
        *,
        clock: Callable[[], float],
        full_logs: FullLogs,
    ) -> None:
        self.store = store
        self.keys = keys
        self.settings = settings
        self.clock = clock
        self.full_logs = full_logs
        self._logs_pruned_at: float | None = None

    def new_run_id(self) -> str:
        """<second>-<millisecond, 3 hex digits><12 random bits>: ids of one second sort in
        the order their runs started. A tool names a manual run's files by the id's tail
        (examples/dummy-tool), and the control series is read in the files' order, so two
        runs in one second must not swap (the newer would not be the newest point)."""
        now = self.clock()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        millisecond = min(int(now % 1 * 1000), 999)
        return f"{stamp}-{millisecond:03x}{os.urandom(2).hex()[:3]}"  # secrets' source

    def save(self, run: Run) -> None:
        if run.status in ("running", "skipped"):  # a record's first write: index it first
            for key, value in first_writes(self.keys, run):
                self.store.put(key, value)
        else:
            self.store.put(self.keys.run(run.id), run.to_json())

    def get(self, run_id: str) -> Run:
        run = load(self.store, self.keys.run(validation.run_id(run_id)), Run)
        if run is None:
            raise NotFound(f"no run with id {run_id!r}", hint="see `maomao runs`")
        return run

    def list(self, tool: str | None = None, limit: int | None = None) -> list[Run]:
        """Run records, newest first. Keys sort by start time (a run id begins with it), so
        only the pages holding the newest `limit` are read; with a tool, only its index."""
        wanted = None if limit is None else max(limit, 0)
        found: list[Run] = []
        if wanted == 0:
            return found
        for run in self._newest(tool):
            found.append(run)
            if wanted is not None and len(found) >= wanted:
                break
        # Ids of one second sort by their random part; the start time decides among them.
        found.sort(key=lambda r: (r.started or 0.0, r.id), reverse=True)
        return found

    def latest_of(self, schedules: set[str]) -> dict[str, Run]:
        """The newest run of each of these schedules that has one: read newest first, and
        only until each has been seen (a listing of schedules need not read every run)."""
        latest: dict[str, Run] = {}
        if not schedules:
            return latest
        for run in self._newest(None):
            if run.schedule in schedules and run.schedule not in latest:
                latest[run.schedule] = run
                if len(latest) == len(schedules):
                    break
        return latest

    def count(self, tool: str | None = None) -> int | None:
        """How many run records there are (of a tool: its index entries), counted by etcd
        without reading them; None for a tool whose records predate its index."""
        if tool is None:
            return self.store.count(self.keys.runs())
        if not self._indexed(tool):
            return None
        return self.store.count(self.keys.run_index(tool))

    def _newest(self, tool: str | None) -> Iterator[Run]:
        indexed = tool is not None and self._indexed(tool)
        if tool is None or not indexed:
            # Every record; for a tool without an index (its records predate it), theirs.
            for entry in scan_pages(self.store, self.keys.runs(), descending=True):
                run = decode(Run, entry)
                if run is not None and (tool is None or run.tool == tool):
                    yield run
            return
        for entry in self._index_newest(tool):
            _, run_id = self.keys.run_index_entry(entry.key)
            run = load(self.store, self.keys.run(run_id), Run)
            if run is not None and run.tool == tool:
                yield run

    def _index_newest(self, tool: str) -> Iterator[Entry]:
        """The tool's run index, newest first, keys only, in pages."""
        return scan_pages(
            self.store,
            self.keys.run_index(tool),
            descending=True,
            keys_only=True,
            page_size=_INDEX_PAGE,
        )

    def _indexed(self, tool: str) -> bool:
        return bool(
            self.store.scan_page(self.keys.run_index(tool), limit=1, keys_only=True).entries
        )

    def _index_existing(self, tool: str) -> None:
        """Index the records of a tool written before the index existed (one paged read of
        every record, once per tool: afterwards its index is not empty)."""
        for entry in scan_pages(self.store, self.keys.runs()):
            run = decode(Run, entry)
            if run is not None and run.tool == tool:
                self.store.put(self.keys.run_index(tool, run.started or 0.0, run.id), b"")

    def prune(self, tool: str, keep: int | None = None) -> int:
        """Delete the finished records of tool beyond the newest `keep` ([worker] runs_kept)
        and those older than [worker] runs_max_age; returns how many. Reads the tool's
        run index (keys only) and the records it deletes, nothing of other tools."""
        worker = self.settings.worker
        keep = worker.runs_kept if keep is None else keep
        cutoff = self.clock() - worker.runs_max_age if worker.runs_max_age > 0 else None
        removed = 0
        if not self._indexed(tool):
            self._index_existing(tool)
        for position, entry in enumerate(self._index_newest(tool)):
            started, run_id = self.keys.run_index_entry(entry.key)
            if position < keep and (cutoff is None or started >= cutoff):
                continue
            record = load(self.store, self.keys.run(run_id), Run)
            if record is None:  # the record is gone (or never written): drop its index key
                self.store.delete(entry.key)
                continue
            if record.status in FINAL_STATUSES and self.store.delete(self.keys.run(run_id)):
                self.store.delete(entry.key)
                self._remove_full_log(run_id)
                removed += 1
        self._prune_full_logs()
        return removed

    def _remove_full_log(self, run_id: str) -> None:
        try:
            self.full_logs.remove(run_id)  # only this member's own file, if it has one
        except OSError as exc:
            log.warning("could not remove the full log of run %s: %s", run_id, exc)

    def _prune_full_logs(self) -> None:
        """Logs older than [worker] runs_max_age (their records may have been pruned by
        another member): looked for at most once an hour."""
        now = self.clock()
        if self._logs_pruned_at is not None and now - self._logs_pruned_at < FULL_LOG_SWEEP:
            return
        self._logs_pruned_at = now
        try:
            self.full_logs.prune(self.settings.worker.runs_max_age)
        except OSError as exc:
            log.warning("could not prune old full logs: %s", exc)

    def feed(
        self, *, start_revision: int | None = None, logger: logging.Logger | None = None
    ) -> Feed[Run]:
        """Every write of a run record, with its etcd revision, from start_revision (or
        from now); the watch is open when this returns (Unavailable is raised here)."""
        return Feed(self.store, self.keys.runs(), Run, logger or log, start_revision=start_revision)


def mark_pushed(store: Store, keys: Keys, run_ids: list[str]) -> None:
    """Mark these runs' dataset commits as on the remote (a later push took them)."""
    for run_id in run_ids:
        if not validation.is_run_id(run_id):
            continue  # the note is maomao's own, but a run id builds a key
        run = load(store, keys.run(run_id), Run)
        if run is not None and run.pushed is False:
            store.put(keys.run(run_id), replace(run, pushed=True).to_json())
