"""In-process container runners (the port is `ports.ContainerRunner`).

DockerRunner (adapters/docker_runner.py) is the real implementation. NullRunner and
ScriptedRunner are in-process stand-ins for benchmarks and unit tests: they never touch
Docker, so tests of the worker and of the run service stay fast and deterministic.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from ..errors import ContainerError, ImageMissing
from ..ports import MOUNT_POINT, ContainerResult, ContainerSpec, PullProgress

__all__ = ["MOUNT_POINT", "NULL_DIGEST", "NullRunner", "ScriptedRunner"]

NULL_DIGEST = "sha256:" + "0" * 64
KILLED = 137  # the exit status of a container stopped by SIGKILL (128 + 9)


class NullRunner:
    """Runs nothing and succeeds at once: for benchmarks of everything but Docker."""

    def ensure_image(
        self, image: str, progress: Callable[[PullProgress], None] | None = None
    ) -> str:
        return NULL_DIGEST

    def run(
        self,
        spec: ContainerSpec,
        *,
        on_output: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
        on_raw: Callable[[bytes], None] | None = None,
        on_starting: Callable[[], None] | None = None,
    ) -> ContainerResult:
        if on_starting is not None:
            on_starting()
        return ContainerResult(0, "succeeded", NULL_DIGEST, [], None)

    def remove_containers(self, labels: dict[str, str]) -> int:
        return 0

    def ping(self) -> None:
        return None


class ScriptedRunner:
    """A runner for unit tests: returns the given results in order (then `default`),
    records every spec, can write files into the data directory, print lines, refuse an
    image, and block each run until `release()`, its cancel event (interrupted) or its
    spec's timeout (timed-out). `leftovers` are the labels of containers an earlier
    process left behind, for `remove_containers`. It passes the runner contract
    (tests/contract/test_runner_contract.py) with DockerRunner.

        runner = ScriptedRunner([ContainerResult(3, "failed", error="exited with code 3")])
        runner = ScriptedRunner(block=True); ...; runner.started.wait(); runner.release()
    """

    def __init__(
        self,
        results: Iterable[ContainerResult] = (),
        *,
        default: ContainerResult | None = None,
        block: bool = False,
        output: Iterable[str] = (),
        files: dict[str, str] | None = None,
        image_error: str | None = None,
        image_missing: bool = False,
        digest: str = NULL_DIGEST,
        log_lines: int = 50,
        leftovers: Iterable[dict[str, str]] = (),
    ) -> None:
        self._results: deque[ContainerResult] = deque(results)
        self.default = default or ContainerResult(0, "succeeded", digest, [], None)
        self.output = list(output)
        self.files = dict(files or {})
        self.image_error = image_error
        self.image_missing = image_missing  # image_error is then an ImageMissing
        self.digest = digest
        self.log_lines = log_lines
        self.leftovers = [dict(labels) for labels in leftovers]
        self.specs: list[ContainerSpec] = []
        self.images: list[str] = []
        self.started = threading.Event()  # set when a run begins
        self._released = threading.Event()
        if not block:
            self._released.set()
        self._lock = threading.Lock()
        self.running = 0
        self.max_running = 0

    def release(self) -> None:
        """Let blocked runs (and every later one) finish."""
        self._released.set()

    def ensure_image(
        self, image: str, progress: Callable[[PullProgress], None] | None = None
    ) -> str:
        self.images.append(image)
        if self.image_error is not None:
            raise (ImageMissing if self.image_missing else ContainerError)(self.image_error)
        return self.digest

    def run(
        self,
        spec: ContainerSpec,
        *,
        on_output: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
        on_raw: Callable[[bytes], None] | None = None,
        on_starting: Callable[[], None] | None = None,
    ) -> ContainerResult:
        if on_starting is not None:
            on_starting()
        with self._lock:
            self.specs.append(spec)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            result = self._results.popleft() if self._results else self.default
        self.started.set()
        deadline = time.monotonic() + spec.timeout
        try:
            for relative, content in self.files.items():
                target = spec.data_dir / relative.format(n=len(self.specs))
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
            for line in self.output:
                if on_raw is not None:
                    on_raw(line.encode("utf-8", errors="surrogateescape"))
                if on_output is not None:
                    on_output(line)
            printed = self.output[-self.log_lines :]
            while not self._released.wait(0.01):
                if cancel is not None and cancel.is_set():
                    return ContainerResult(None, "interrupted", self.digest, printed, "interrupted")
                if time.monotonic() >= deadline:
                    error = f"stopped after its timeout of {spec.timeout:g}s"
                    return ContainerResult(KILLED, "timed-out", self.digest, printed, error)
            tail = list(printed) if self.output else list(result.log_tail)
            return ContainerResult(
                result.exit_code,
                result.status,
                result.image_digest,
                tail,
                result.error,
                retryable=result.retryable,
            )
        finally:
            with self._lock:
                self.running -= 1

    def remove_containers(self, labels: dict[str, str]) -> int:
        wanted = labels.items()
        with self._lock:
            removed = [left for left in self.leftovers if wanted <= left.items()]
            self.leftovers = [left for left in self.leftovers if not wanted <= left.items()]
        return len(removed)

    def ping(self) -> None:
        return None
