"""Run-now for the API: each run in a background thread through the run service; the
request is answered as soon as the `running` record is in etcd.

The runs share `[worker] max_parallel` with this member's worker: the runs started here
and those the worker reports running (its member record) never exceed it together, so
no flood of requests starts a flood of containers; beyond it a request is refused (429).
"""

from __future__ import annotations

import logging
import threading
import time

from ..composition import Services
from ..errors import MaomaoError, Unavailable
from ..models import Run
from .errors import Refused

log = logging.getLogger("maomao.api")

RETRY_AFTER_SECONDS = 10


class RunLauncher:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.cancel = threading.Event()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self.limit = services.settings.worker.max_parallel

    def running(self) -> int:
        with self._lock:
            return len(self._threads)

    def _worker_running(self) -> int:
        """The runs this member's worker reports (0 when no worker of this member lives)."""
        member = self.services.settings.member
        return sum(m.running for m in self.services.members.live() if m.name == member)

    def start(self, tool_name: str) -> Run:
        """The run's first record, once saved; the run goes on in the background."""
        tool = self.services.registry.get_tool(tool_name)
        worker_running = self._worker_running()
        runs = self.services.runs
        run_id = runs.new_run_id()
        recorded = threading.Event()
        first: list[Run] = []
        failure: list[BaseException] = []

        def started(run: Run) -> None:
            first.append(run)
            recorded.set()

        def work() -> None:
            try:
                final = runs.execute(
                    tool, trigger="manual", cancel=self.cancel, run_id=run_id, on_start=started
                )
                log.info("run %s of %s: %s", final.id, final.tool, final.status)
            except BaseException as exc:
                failure.append(exc)
                log.warning("run %s of %s failed: %s", run_id, tool.name, exc)
            finally:
                recorded.set()
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=work, name=f"maomao-run-{run_id}", daemon=True)
        with self._lock:  # the count and the new thread in one step: no race past the limit
            busy = len(self._threads) + worker_running
            if busy >= self.limit:
                raise Refused(
                    429,
                    "too-many-runs",
                    f"{busy} runs are running on member {self.services.settings.member!r}, "
                    f"the most [worker] max_parallel ({self.limit}) allows",
                    retry_after=RETRY_AFTER_SECONDS,
                )
            self._threads.add(thread)
        thread.start()
        recorded.wait(self.services.settings.etcd.timeout * 3)
        if first:
            return first[0]
        if failure and isinstance(failure[0], MaomaoError):
            raise failure[0]
        raise Unavailable(f"run {run_id} could not be recorded in etcd")

    def shutdown(self, grace: float) -> None:
        """Stop the runs in progress (their records say failed: interrupted)."""
        self.cancel.set()
        deadline = time.monotonic() + grace
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.1))
