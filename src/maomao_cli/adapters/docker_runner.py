"""The container port on the Docker Engine API. Only this module imports docker (docker-py).

The calls of a run go to an engine on a unix socket through engine_api.py (HTTP by hand:
docker-py's imports alone cost a run about 65 ms); pulls, and engines reached over tcp://,
TLS or ssh://, through docker-py. Both clients take the same calls and give the same
answers; their failures are told apart in `_call`.

Threads: every thread that calls the runner gets its own API client (thread-local,
created on first use, and created again after a fork), because a requests session is
not guaranteed thread-safe; each run also opens one streaming client for its logs, in
the thread that reads them, with no read timeout (a quiet tool must not cut the stream).
Every other call uses [docker] api_timeout, so an unreachable engine fails in seconds.

Every container runs with the same safe defaults (container_defaults.py); what Docker's
failures mean is in docker_errors.py, the output's line splitting in loglines.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeAlias

from ..config import DockerSettings
from ..errors import ContainerError, ImageMissing, MaomaoError, Unavailable
from ..ports import ContainerResult, ContainerSpec, ContainerStatus, PullProgress
from .container_defaults import container_result, host_config
from .docker_errors import BAD_USER, MISSING_IMAGE, explain, one_line, unavailable
from .engine_api import EngineAPI, EngineRefused, EngineUnreachable, speaks
from .loglines import LINE_LIMIT, Outputs, Reading, line_text, split_lines

if TYPE_CHECKING:
    import docker

log = logging.getLogger("maomao.docker")

Client: TypeAlias = Any  # an EngineAPI or a docker.APIClient: the same calls, the same answers


class DockerRunner:
    def __init__(
        self,
        settings: DockerSettings,
        *,
        log_lines: int = 50,
        stop_grace: int = 3,
        poll_interval: float = 0.1,
    ) -> None:
        self.settings = settings
        self.log_lines = log_lines
        self.stop_grace = stop_grace  # SIGTERM, then SIGKILL after this many seconds
        self.poll_interval = poll_interval  # how soon a cancel or a timeout is noticed
        self._local = threading.local()
        # Containers whose removal failed (engine down), or whose creation may have happened
        # unanswered (by name): removed before the next run.
        self._left_behind: set[str] = set()
        self._left_lock = threading.Lock()
        self._clients: list[Any] = []
        self._lock = threading.Lock()

    # Clients ---------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.settings.host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    def _client_kwargs(self) -> dict[str, Any]:
        from docker.utils import kwargs_from_env

        # DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH, as the docker CLI reads them.
        kwargs: dict[str, Any] = kwargs_from_env()
        if self.settings.host:
            kwargs["base_url"] = self.settings.host
        kwargs.setdefault("base_url", self.host)
        return kwargs

    def _unavailable(self, exc: Exception) -> Unavailable:
        return unavailable(self.host, exc, self.settings.api_timeout)

    def _api(self) -> Client:
        """This thread's client: an EngineAPI, or a docker.APIClient (module docstring)."""
        if speaks(self.host, os.environ):
            return EngineAPI(self.host, self.settings.api_timeout)  # it keeps nothing open
        return self._docker_py()

    def _docker_py(self) -> docker.APIClient:
        pid = os.getpid()
        client = getattr(self._local, "client", None)
        if client is None or self._local.pid != pid:
            import docker

            try:
                client = docker.APIClient(
                    timeout=self.settings.api_timeout, **self._client_kwargs()
                )
            except docker.errors.DockerException as exc:
                raise self._unavailable(exc) from None
            self._local.client = client
            self._local.pid = pid
            with self._lock:
                self._clients.append(client)
        return client

    def _stream_client(self, version: str) -> Client:
        if speaks(self.host, os.environ):
            return EngineAPI(self.host, None)
        import docker

        return docker.APIClient(timeout=None, version=version, **self._client_kwargs())

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(Exception):  # closing is best effort
                client.close()

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Map transport errors to Unavailable and API refusals to ContainerError."""
        try:
            return fn()
        except EngineRefused as exc:
            raise ContainerError(f"{what}: {one_line(exc.explanation)}") from None
        except EngineUnreachable as exc:
            raise self._unavailable(exc) from None
        except Exception as exc:
            # docker-py's failures can only come from docker-py, imported once it was used.
            failure = self._docker_py_failure(what, exc) if "docker" in sys.modules else None
            if failure is None:
                raise
            raise failure from None

    def _docker_py_failure(self, what: str, exc: Exception) -> MaomaoError | None:
        import docker
        import requests

        if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            return self._unavailable(exc)
        if isinstance(exc, docker.errors.APIError):
            return ContainerError(f"{what}: {explain(exc)}")
        if isinstance(exc, docker.errors.DockerException):
            return self._unavailable(exc)
        return None

    # The port --------------------------------------------------------------

    def ping(self) -> None:
        self._call("ping", lambda: self._api().ping())

    def ensure_image(
        self, image: str, progress: Callable[[PullProgress], None] | None = None
    ) -> str:
        api = self._api()
        try:
            info = self._call(f"cannot inspect image {image}", lambda: api.inspect_image(image))
        except ContainerError:
            info = None
        if info is None:
            self._pull(image, progress)
            info = self._call(f"cannot inspect image {image}", lambda: api.inspect_image(image))
        digests = info.get("RepoDigests") or []
        # A pulled image has a registry digest anyone can pull again; a local build only an id.
        return str(digests[0] if digests else info["Id"])

    def _pull(self, image: str, progress: Callable[[PullProgress], None] | None) -> None:
        from docker.utils import parse_repository_tag

        api = self._docker_py()  # registry logins and credential helpers are docker-py's
        repository, tag = parse_repository_tag(image)
        # Without a tag docker-py would pull every tag of the repository.
        tag = tag or "latest"

        def pull() -> None:
            events: Iterator[dict[str, Any]] = api.pull(
                repository, tag=tag, stream=True, decode=True
            )
            for event in events:
                if "error" in event:
                    raise ContainerError(
                        f"cannot pull image {image}: {one_line(event['error'])}",
                        hint="check the name, the registry login (docker login) and the network",
                    )
                if progress is not None:
                    detail = event.get("progressDetail") or {}
                    progress(
                        PullProgress(
                            image=image,
                            status=str(event.get("status", "")),
                            layer=event.get("id"),
                            current=detail.get("current"),
                            total=detail.get("total"),
                        )
                    )

        try:
            self._call(f"cannot pull image {image}", pull)
        except ContainerError as exc:
            hint = exc.hint or "check the name, the registry login (docker login) and the network"
            if MISSING_IMAGE.search(exc.message):
                raise ImageMissing(exc.message, hint=hint) from None
            exc.hint = hint
            raise
        finally:
            if progress is not None:
                progress(PullProgress(image=image, status="done", complete=True))

    def remove_containers(self, labels: dict[str, str]) -> int:
        api = self._api()
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        found = self._call(
            "cannot list containers", lambda: api.containers(all=True, filters=filters)
        )
        for container in found:
            self._remove(api, container["Id"])
        return len(found)

    def _remove(self, api: Client, container_id: str) -> None:
        try:
            self._call(
                "cannot remove container", lambda: api.remove_container(container_id, force=True)
            )
        except ContainerError as exc:
            if "No such container" not in exc.message and "already in progress" not in exc.message:
                log.warning("%s", exc)
        except Unavailable as exc:
            log.warning("container %s left behind for now: %s", container_id[:12], exc)
            with self._left_lock:
                self._left_behind.add(container_id)
            return
        with self._left_lock:
            self._left_behind.discard(container_id)

    def _remove_left_behind(self, api: Client) -> None:
        with self._left_lock:
            pending = list(self._left_behind)
        for container_id in pending:
            self._remove(api, container_id)

    def run(
        self,
        spec: ContainerSpec,
        *,
        on_output: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
        on_raw: Callable[[bytes], None] | None = None,
        on_starting: Callable[[], None] | None = None,
    ) -> ContainerResult:
        api = self._api()
        self._remove_left_behind(api)
        try:
            created = self._call(
                f"cannot create a container of {spec.image}",
                lambda: api.create_container(
                    spec.image,
                    name=spec.name,
                    environment=dict(spec.env),
                    labels=dict(spec.labels),
                    user=spec.user or "",
                    host_config=host_config(spec),
                    detach=True,
                ),
            )
        except ContainerError as exc:
            return ContainerResult(None, "failed", None, [], exc.message)
        except Unavailable:
            # The engine may have created it before the answer was lost (a timeout under
            # load): removed by name with the others left behind, at the next run.
            with self._left_lock:
                self._left_behind.add(spec.name)
            raise
        container_id = str(created["Id"])
        try:
            outputs = Outputs(on_output, on_raw)
            if on_starting is not None:
                on_starting()
            return self._supervise(api, container_id, spec, outputs, cancel)
        finally:
            self._remove(api, container_id)

    def _supervise(
        self,
        api: Client,
        container_id: str,
        spec: ContainerSpec,
        outputs: Outputs,
        cancel: threading.Event | None,
    ) -> ContainerResult:
        reading = Reading(deque(maxlen=self.log_lines), outputs)
        try:
            self._call(f"cannot start {spec.image}", lambda: api.start(container_id))
        except ContainerError as exc:
            retryable = BAD_USER.search(exc.message) is None
            return ContainerResult(None, "failed", None, [], exc.message, retryable=retryable)
        stream_done = threading.Event()
        stream_failed: list[BaseException] = []
        reader = threading.Thread(
            target=self._read_logs,
            args=(api.api_version, container_id, reading, stream_done, stream_failed),
            name=f"maomao-logs-{spec.name}",
            daemon=True,
        )
        reader.start()
        stopped = self._wait_for_exit(api, container_id, spec, cancel, stream_done, stream_failed)
        if stopped is not None:
            self._call(
                "cannot stop the container",
                lambda: api.stop(container_id, timeout=int(self.stop_grace)),
            )
        waited = self._call("cannot wait for the container", lambda: api.wait(container_id))
        reader.join(timeout=5)
        if not reader.is_alive():
            self._complete_output(api, container_id, reading)
        info = self._call(
            "cannot inspect the container", lambda: api.inspect_container(container_id)
        )
        return container_result(spec, stopped, waited, info, list(reading.tail))

    def _complete_output(self, api: Client, container_id: str, reading: Reading) -> None:
        """A log stream can end before the container's last lines (cut under load, or the
        engine's follow ending early): if the engine's last line is not the last one read,
        the output is read once more and the lines not seen yet are passed on, so the
        record's tail and the full log end where the container's output ended."""
        try:
            last = self._call(
                "cannot read the container's output",
                lambda: api.logs(container_id, stdout=True, stderr=True, tail=1),
            )
            engines_last = next(split_lines([last]), None)
            if reading.rest and reading.rest[0] == engines_last:
                reading.emit(reading.rest.pop())  # a last line without its newline
                return
            if not reading.rest and engines_last == reading.last:
                return
            everything = self._call(
                "cannot read the container's output",
                lambda: api.logs(container_id, stdout=True, stderr=True),
            )
        except (ContainerError, Unavailable) as exc:
            log.warning("the output of %s may be incomplete: %s", container_id[:12], exc)
            return
        lines = list(split_lines([everything]))
        if reading.count and (lines[:1] != reading.first or len(lines) < reading.count):
            # The engine rotated its log away from under the stream: what it still has
            # cannot be lined up with what was read; the tail at least is its own.
            reading.tail.clear()
            reading.tail.extend(line_text(raw)[:LINE_LIMIT] for raw in lines)
            log.warning(
                "the full output of %s misses lines the engine rotated away", container_id[:12]
            )
            return
        for raw in lines[reading.count :]:
            reading.emit(raw)

    def _wait_for_exit(
        self,
        api: Client,
        container_id: str,
        spec: ContainerSpec,
        cancel: threading.Event | None,
        stream_done: threading.Event,
        stream_failed: list[BaseException],
    ) -> ContainerStatus | None:
        """None once the container exited by itself, else why it must be stopped."""
        deadline = time.monotonic() + spec.timeout
        polling = False  # set when the log stream broke while the container still runs
        while True:
            step = min(self.poll_interval, max(deadline - time.monotonic(), 0.0))
            if polling:
                time.sleep(max(step, 0.0))
                if not self._running(api, container_id):
                    return None
            elif stream_done.wait(step):
                # The log stream ends when the container exits: no polling of the engine.
                if not stream_failed or not self._running(api, container_id):
                    return None
                polling = True
            if cancel is not None and cancel.is_set():
                return "interrupted"
            if time.monotonic() >= deadline:
                return "timed-out"

    def _running(self, api: Client, container_id: str) -> bool:
        info = self._call(
            "cannot inspect the container", lambda: api.inspect_container(container_id)
        )
        return bool((info.get("State") or {}).get("Running"))

    def _read_logs(
        self,
        version: str,
        container_id: str,
        reading: Reading,
        done: threading.Event,
        failed: list[BaseException],
    ) -> None:
        client = None
        try:
            client = self._stream_client(version)
            chunks = client.logs(container_id, stream=True, follow=True, stdout=True, stderr=True)
            for raw in split_lines(chunks, rest=reading.rest):
                reading.emit(raw)
        except BaseException as exc:
            failed.append(exc)
        finally:
            if client is not None:
                client.close()
            done.set()
