"""Run-now for the API: each run in a background thread through the run service; the
request is answered as soon as the `running` record is in etcd."""

from __future__ import annotations

import logging
import threading
import time

from ..composition import Services
from ..errors import MaomaoError, Unavailable
from ..models import Run

log = logging.getLogger("maomao.api")


class RunLauncher:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.cancel = threading.Event()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def start(self, tool_name: str) -> Run:
        """The run's first record, once saved; the run goes on in the background."""
        tool = self.services.registry.get_tool(tool_name)
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
        with self._lock:
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
