"""Runs: execute a tool in a container, record it in etcd, call the after-run hooks.

The record is written `running` before anything else, so every member sees a run in
progress, and written again with the outcome whatever happens (a failed pull, an
engine refusal, Ctrl-C). After a successful run the hooks run in order (the spike check,
the dataset commit); a hook that raises is logged and noted on the record, never turns
the run into a failure. Old records of the tool beyond [worker] runs_kept are pruned
(the records themselves: services/runrecords.py).
The data directory's size limit is held here too (services/datalimit.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from .. import validation
from ..config import Settings
from ..errors import BadInput, ContainerError, GitError, ImageMissing, Unavailable
from ..keys import Keys
from ..models import Run, Tool, cap_tail
from ..ports import ContainerResult, ContainerRunner, ContainerSpec, PullProgress
from ..store.base import Store
from . import datalimit, insights, ownership, runcontext, snapshots, staging
from .fulllogs import FullLogs, FullLogWriter
from .runrecords import RunRecords

log = logging.getLogger("maomao.runs")

AfterRunHook = Callable[[Tool, Run, Path], Run | None]
DataDirResolver = Callable[[Tool], Path]
RunGuard = Callable[[Tool], AbstractContextManager[None]]


class RunService(RunRecords):
    """Run records (services/runrecords.py) and the execution of runs."""

    def __init__(
        self,
        store: Store,
        keys: Keys,
        settings: Settings,
        runner: ContainerRunner,
        member: str,
        *,
        clock: Callable[[], float] = time.time,
        data_watch_interval: float = 5.0,
        hold_runs: bool = False,
    ) -> None:
        # Every line of this member's runs, beyond the record's tail (services/fulllogs.py).
        full_logs = FullLogs(
            settings.data.state_path / "logs", settings.worker.full_log_bytes, clock=clock
        )
        super().__init__(store, keys, settings, clock=clock, full_logs=full_logs)
        self.runner = runner
        self.member = member
        self.data_watch_interval = data_watch_interval  # seconds between measures in a run
        # Manual runs hold a lease of their own while they run (services/runhold.py); the
        # worker's runs live on its member lease instead.
        self.hold_runs = hold_runs
        self._hooks: list[AfterRunHook] = []
        self._preparers: list[Callable[[], None]] = []
        self._resolver: DataDirResolver | None = None
        self._guard: RunGuard = lambda tool: nullcontext()
        self.chown: ownership.Chown = os.chown  # tests pass a failing one

    # Extension points ------------------------------------------------------

    def add_hook(self, hook: AfterRunHook, *, prepare: Callable[[], None] | None = None) -> None:
        """Call hook(tool, run, data_dir) after each successful run, in the order added.
        A hook may return an updated Run (e.g. with a warning), which is saved.
        `prepare` readies it ahead (imports its libraries): see prepare_hooks."""
        self._hooks.append(hook)
        if prepare is not None:
            self._preparers.append(prepare)

    def prepare_hooks(self) -> None:
        """Ready the after-run hooks now (a caller's `while_running`: so a short run does
        not wait for their imports after its container)."""
        for prepare in self._preparers:
            prepare()

    def set_data_dir_resolver(self, resolver: DataDirResolver | None) -> None:
        """Let another service prepare a tool's data directory (a dataset tool's staging
        folder); it is called once per run, before the container starts."""
        self._resolver = resolver

    def set_run_guard(self, guard: RunGuard) -> None:
        """Hold guard(tool) from the data directory's preparation to the last hook: a
        dataset tool's staging folder serves one run at a time on this member."""
        self._guard = guard

    def data_dir_for(self, tool: Tool) -> Path:
        if self._resolver is not None:
            chosen = self._resolver(tool)
            if not chosen.is_absolute():
                raise BadInput(f"data directory {chosen} of tool {tool.name!r} is not absolute")
            return chosen
        # <importdir>/tools/<name>: no tool name reaches another of maomao's folders.
        return staging.tool_dir(self.settings.data.import_path.resolve(), tool.name)

    # Execution -------------------------------------------------------------

    def execute(
        self,
        tool: Tool,
        *,
        trigger: str = "manual",
        schedule: str | None = None,
        fire_time: float | None = None,
        attempt: int = 1,
        on_output: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
        progress: Callable[[PullProgress], None] | None = None,
        run_id: str | None = None,
        on_start: Callable[[Run], None] | None = None,
        started: float | None = None,
        while_running: Callable[[], None] | None = None,
    ) -> Run:
        """Run tool now and return its final record (never raises for a failed run;
        raises Unavailable only when the store itself cannot be written).

        run_id: the record's id, when the caller chose it (default: a new one).
        started: its start, when its first record was written already (a worker's claim
        writes it in its own transaction): not written again, and the run keeps its one
        entry in the tool's run index.
        on_start: called with the first `running` record once it is saved, so a caller
        in another thread can answer before the run ends (`maomao serve` does).
        while_running: called on a thread of its own as the container starts: a caller's
        work for after the run (`maomao run` imports its output's library) is done while
        this thread only waits for the engine."""
        if run_id is not None:
            validation.run_id(run_id)
        run = Run(
            id=run_id or self.new_run_id(),
            tool=tool.name,
            member=self.member,
            status="running",
            trigger=trigger,  # type: ignore[arg-type]
            schedule=schedule,
            fire_time=fire_time,
            attempt=attempt,
            image=tool.image,
            started=self.clock() if started is None else started,
        )
        with contextlib.ExitStack() as held:
            held.enter_context(self._hold(run.id))  # before the first record: see runhold
            if started is None:  # else the worker's claim wrote it
                self.save(run)
            held.enter_context(self._guard(tool))
            try:
                if on_start is not None:
                    on_start(run)
                run, data_dir = self._execute(run, tool, on_output, cancel, progress, while_running)
            except BaseException as exc:
                # Ctrl-C or a bug: the record must not stay `running` forever.
                error = "interrupted" if isinstance(exc, KeyboardInterrupt) else _one_line(exc)
                self._save_quietly(
                    replace(run, status="failed", finished=self.clock(), error=error)
                )
                raise
            self.save(run)
            if run.status == "succeeded" and data_dir is not None:
                run = self._call_hooks(tool, run, data_dir)
        try:
            self.prune(tool.name)
        except Unavailable as exc:
            log.warning("could not prune old runs of %s: %s", tool.name, exc)
        return run

    def _execute(
        self,
        run: Run,
        tool: Tool,
        on_output: Callable[[str], None] | None,
        cancel: threading.Event | None,
        progress: Callable[[PullProgress], None] | None,
        while_running: Callable[[], None] | None = None,
    ) -> tuple[Run, Path | None]:
        """The run's record once its container is done, and its data directory (None when
        it never got one). The data directory is resolved once: the hooks get that one."""

        def failed(error: str, **changes: Any) -> tuple[Run, None]:
            return replace(
                run, status="failed", finished=self.clock(), error=error, **changes
            ), None

        try:
            digest = self.runner.ensure_image(tool.image, progress)
        except ImageMissing as exc:
            return failed(exc.message, retryable=False)
        except (ContainerError, Unavailable) as exc:
            return failed(exc.message)
        run = replace(run, image_digest=digest)
        if cancel is not None and cancel.is_set():
            return failed("interrupted")
        try:
            data_dir = self.data_dir_for(tool)
            data_dir.mkdir(parents=True, exist_ok=True)
        except (OSError, BadInput, GitError) as exc:  # GitError: the dataset clone
            return failed(f"cannot prepare the data directory: {_one_line(exc)}")
        limit = self.data_limit(tool)
        if limit is not None and (found := datalimit.excess(data_dir, limit)) is not None:
            return failed(found.describe("run refused before its container started"))
        spec = self.spec_for(tool, run, data_dir)
        try:
            ownership.prepare(data_dir, spec.user, chown=self.chown)
        except ownership.NotWritable as exc:
            log.warning("run %s of %s refused: %s", run.id, tool.name, exc)
            return failed(str(exc), retryable=False)
        before = snapshots.listing(data_dir)
        full_log = self._open_full_log(run)
        try:
            result, over = self._contain(
                spec,
                limit,
                on_output,
                cancel,
                None if full_log is None else full_log.write,
                _meanwhile(while_running),
            )
        except (ContainerError, Unavailable) as exc:
            return failed(exc.message)
        finally:
            if full_log is not None:
                full_log.close()
        run = self._finish(run, result, data_dir)
        if run.status == "succeeded":
            made = snapshots.produced(data_dir, before)
            run = replace(run, outputs=made.files, control=made.control)
            run = self._with_insights(run, data_dir)
        if over is not None:
            # Failed, so the after-run hooks neither commit nor push what it wrote.
            error = over if result.error is None else f"{over}; {result.error}"
            run = replace(run, status="failed", error=error)
        return run, data_dir

    def _open_full_log(self, run: Run) -> FullLogWriter | None:
        try:
            return self.full_logs.open(run.id)
        except OSError as exc:  # a planted link, a full disk: the run goes on without it
            log.warning("run %s: its full log is not kept: %s", run.id, exc)
            return None

    def _with_insights(self, run: Run, data_dir: Path) -> Run:
        found = insights.read(data_dir)
        if found.warning is not None:
            log.warning("run %s of %s: %s", run.id, run.tool, found.warning)
            warning = f"{run.warning}; {found.warning}" if run.warning else found.warning
            return replace(run, warning=warning)
        return run if found.value is None else replace(run, insights=found.value)

    def _hold(self, run_id: str) -> contextlib.AbstractContextManager[object]:
        if not self.hold_runs:
            return contextlib.nullcontext()
        from .runhold import RunHold

        return RunHold(
            self.store,
            self.keys.held_run(run_id),
            ttl=self.settings.worker.lease_ttl,
            run_id=run_id,
            member=self.member,
        )

    # Data limit ------------------------------------------------------------

    def data_limit(self, tool: Tool) -> int | None:
        """Bytes the tool's data directory may hold here; None: no limit."""
        return datalimit.effective_limit(self.settings.data.max_tool_bytes, tool.max_data)

    def _contain(
        self,
        spec: ContainerSpec,
        limit: int | None,
        on_output: Callable[[str], None] | None,
        cancel: threading.Event | None,
        on_raw: Callable[[bytes], None] | None = None,
        on_starting: Callable[[], None] | None = None,
    ) -> tuple[ContainerResult, str | None]:
        """Run the container, its data directory watched while it runs and measured after;
        the second item is the data-limit error, if it went over."""
        run = partial(self.runner.run, spec, on_output=on_output, on_raw=on_raw)
        if limit is None:
            return run(cancel=cancel, on_starting=on_starting), None
        watch = datalimit.watching(spec.data_dir, limit, cancel, self.data_watch_interval)
        with watch as (stop, tripped):
            result = run(cancel=stop, on_starting=on_starting)
        found = tripped()
        if found is not None:  # it was interrupted by the watch, not by a Ctrl-C
            stopped = replace(result, error=None)
            return stopped, found.describe("the container was stopped; its next runs are refused")
        found = datalimit.excess(spec.data_dir, limit)
        if found is not None:
            return result, found.describe("its next runs are refused until it is under")
        return result, None

    def spec_for(self, tool: Tool, run: Run, data_dir: Path) -> ContainerSpec:
        docker = self.settings.docker
        return ContainerSpec(
            image=tool.image,
            name=f"maomao-{tool.name}-{run.id}",
            env=runcontext.with_context(dict(tool.env), run),
            data_dir=data_dir,
            labels=self._labels(tool, run),
            network=tool.network or docker.network,
            memory=tool.memory or docker.memory,
            pids=tool.pids or docker.pids,
            timeout=tool.timeout or docker.timeout,
            user=tool.user or docker.user,
            log_max_size=docker.log_max_size,
            log_max_files=docker.log_max_files,
        )

    def _labels(self, tool: Tool, run: Run) -> dict[str, str]:
        labels = {"maomao.tool": tool.name, "maomao.run": run.id, "maomao.member": self.member}
        if not self.hold_runs:
            # A worker's run: a restarted worker of this member removes what is left of it
            # (a manual run of the same member name is no leftover: it lives on its own).
            labels["maomao.worker"] = self.member
        return labels

    def _finish(self, run: Run, result: ContainerResult, data_dir: Path) -> Run:
        status = "failed" if result.status == "interrupted" else result.status
        return replace(
            run,
            status=status,
            exit_code=result.exit_code,
            finished=self.clock(),
            error=result.error,
            log_tail=cap_tail(list(result.log_tail)),
            image_digest=run.image_digest or result.image_digest,
            retryable=result.retryable,
        )

    def _call_hooks(self, tool: Tool, run: Run, data_dir: Path) -> Run:
        for hook in self._hooks:
            name = getattr(hook, "__qualname__", None) or type(hook).__name__
            try:
                updated = hook(tool, run, data_dir)
            except Exception as exc:
                log.warning("after-run hook %s failed for run %s: %s", name, run.id, exc)
                note = f"after-run hook {name} failed: {_one_line(exc)}"
                updated = replace(run, warning=f"{run.warning}; {note}" if run.warning else note)
            if updated is not None and updated != run:
                run = updated
                self._save_quietly(run)
        return run

    def _save_quietly(self, run: Run) -> None:
        try:
            self.save(run)
        except Unavailable as exc:
            log.warning("could not record run %s: %s", run.id, exc)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _meanwhile(work: Callable[[], None] | None) -> Callable[[], None] | None:
    """What starts `work` on a thread of its own as the container starts (execute's
    `while_running`); not a daemon, so the process never exits in the middle of it."""
    if work is None:
        return None
    return threading.Thread(target=work, name="maomao-meanwhile").start
