"""The worker's answers to `maomao logs RUN --full` from other members (the protocol:
services/logrequests.py).

A thread of its own on an etcd client of its own watches `logreq/<this member>/`, so a
big answer never delays a claim or a heartbeat. A request is another member's data:
its run id is validated before it names a key or a file, only runs whose record names
this member are answered, only this member's own file is sent, and at most
MAX_LIVE_ANSWERS answers (each at most [worker] full_log_max) are in etcd at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections import deque
from collections.abc import Callable

from ...errors import MaomaoError
from ...keys import Keys
from ...models import Run
from ...ports import Clock
from ...store.base import Store, Watch
from ..fulllogs import FullLogRefused, FullLogs
from ..logrequests import ANSWER_TTL, LogRequest, Marker, Status, chunks_of
from ..records import load

log = logging.getLogger("maomao.worker")

# Answers alive in etcd at once (each lives ANSWER_TTL seconds unless collected).
MAX_LIVE_ANSWERS = 4
_SEEN = 256  # nonces remembered, so a request seen twice (a re-read) is answered once
RETRY_MAX = 30.0


class LogAnswers:
    def __init__(
        self,
        *,
        store_factory: Callable[[], Store],
        keys: Keys,
        member: str,
        logs: FullLogs,
        clock: Clock,
        max_age: float = 0.0,
    ) -> None:
        self._store_factory = store_factory
        self.keys = keys
        self.member = member
        self.logs = logs
        self.clock = clock
        self.max_age = max_age  # [worker] runs_max_age: logs older go at start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: Watch | None = None
        self._store: Store | None = None
        self._seen: deque[str] = deque(maxlen=_SEEN)
        self._answered: deque[float] = deque()  # monotonic times of live answers

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="loganswers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        watch = self._watch
        if watch is not None:
            watch.cancel()
        if self._thread is not None:
            self._thread.join(timeout=5)
        store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(Exception):
                store.close()

    def _loop(self) -> None:
        try:
            self.logs.prune(self.max_age)
        except OSError as exc:
            log.warning("could not prune old full logs: %s", exc)
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._follow()
                delay = 0.5
            except MaomaoError as exc:
                log.warning("full-log requests: %s; watching again", exc.message)
            except Exception:  # this thread must not die: log requests would go unanswered
                log.exception("answering full-log requests crashed; watching again")
            store, self._store = self._store, None
            if store is not None:
                with contextlib.suppress(Exception):
                    store.close()
            self.clock.wait(self._stop, delay)
            delay = min(delay * 2, RETRY_MAX)

    def _follow(self) -> None:
        store = self._store = self._store_factory()
        prefix = self.keys.log_requests(self.member)
        entries, revision = store.scan_with_revision(prefix)
        for entry in entries:
            self.answer(store, entry.key, entry.value)
        self._watch = store.watch(prefix, start_revision=revision + 1)
        if self._stop.is_set():
            return
        for event in self._watch:
            if event.type == "put" and event.value is not None:
                self.answer(store, event.key, event.value)

    def answer(self, store: Store, key: str, value: bytes) -> Status | None:
        """Answer one request; returns what was answered (None: not a request)."""
        prefix = self.keys.log_requests(self.member)
        nonce = key.removeprefix(prefix) if key.startswith(prefix) else ""
        request = LogRequest.parse(nonce, value)
        if request is None:
            log.warning("ignoring %s: not a valid full-log request", key[:200])
            return None
        if request.nonce in self._seen:
            return None
        self._seen.append(request.nonce)
        status, data = self._status(store, request)
        answer_lease = store.grant_lease(ANSWER_TTL)
        if status == "ok":
            for n, chunk in enumerate(chunks_of(data)):
                key = self.keys.log_chunk(request.run_id, request.nonce, n)
                store.put(key, chunk, lease=answer_lease.id)
            marker = Marker("ok", len(chunks_of(data)), len(data), hashlib.sha256(data).hexdigest())
        else:
            marker = Marker(status)
        end = self.keys.log_answer_end(request.run_id, request.nonce)
        store.put(end, marker.to_json(), lease=answer_lease.id)
        log.info("full log of run %s: answered %s", request.run_id, status)
        return status

    def _status(self, store: Store, request: LogRequest) -> tuple[Status, bytes]:
        now = self.clock.monotonic()
        while self._answered and self._answered[0] <= now - ANSWER_TTL:
            self._answered.popleft()
        if len(self._answered) >= MAX_LIVE_ANSWERS:
            return "busy", b""
        record = load(store, self.keys.run(request.run_id), Run)
        if record is not None and record.member != self.member:
            return "refused", b""  # only what this member ran, whatever the asker claims
        try:
            data = self.logs.read(request.run_id) if record is not None else None
        except (FullLogRefused, OSError) as exc:
            log.warning("full log of run %s not sent: %s", request.run_id, exc)
            data = None
        if data is None:
            return "missing", b""
        self._answered.append(now)
        return "ok", data
