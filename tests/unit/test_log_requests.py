"""`maomao logs RUN --full` asking the member that ran RUN through etcd
(services/logrequests.py, services/worker/loganswers.py), on the memory store: a member
answering in a thread, a member not in the list, one that never answers, a corrupt chunk
caught by the hash, and what a worker refuses to answer."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from maomao_cli.clock import SystemClock
from maomao_cli.config import DataSettings, Settings
from maomao_cli.errors import NotFound, Unavailable
from maomao_cli.keys import Keys
from maomao_cli.models import Member, Run
from maomao_cli.services import logrequests
from maomao_cli.services.fulllogs import FullLogs
from maomao_cli.services.logrequests import CHUNK, Asked, LogRequest, Marker
from maomao_cli.services.runlogs import RunLogService
from maomao_cli.services.runs import RunService
from maomao_cli.services.worker.loganswers import MAX_LIVE_ANSWERS, LogAnswers
from maomao_cli.store.base import Store
from maomao_cli.store.memory import MemoryStore

KEYS = Keys("/t")
RUN = "20300317T174640Z-1a2b3c"
LIMIT = 16 * 1024 * 1024
ASKED = Asked(RUN, "w2", "h2")


class InstantClock:
    """Each wait lasts its whole timeout at once (no answer ever comes in between)."""

    def __init__(self) -> None:
        self.at = 0.0

    def now(self) -> float:
        return 1_900_000_000.0 + self.at

    def monotonic(self) -> float:
        return self.at

    def wait(self, event: threading.Event, timeout: float) -> bool:
        self.at += timeout
        return event.is_set()


def member_logs(tmp_path: Path, data: bytes | None, run_id: str = RUN) -> FullLogs:
    logs = FullLogs(tmp_path / "logs", LIMIT, clock=time.time)
    if data is not None:
        writer = logs.open(run_id)
        assert writer is not None
        for line in data.split(b"\n")[:-1]:
            writer.write(line)
        writer.close()
    return logs


def put_run(store: MemoryStore, member: str = "w2", run_id: str = RUN) -> None:
    run = Run(id=run_id, tool="noisy", member=member, status="succeeded")
    store.put(KEYS.run(run_id), run.to_json())


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def answering(store: MemoryStore, tmp_path: Path) -> Iterator[FullLogs]:
    """Member w2's worker thread answering requests, with its full logs."""
    logs = member_logs(tmp_path, None)
    answers = LogAnswers(
        store_factory=lambda: store, keys=KEYS, member="w2", logs=logs, clock=SystemClock()
    )
    answers.start()
    yield logs
    answers.stop()


def fetch(store: MemoryStore, *, wait: float = 10.0, clock: object = None) -> bytes:
    return logrequests.fetch(
        store,
        KEYS,
        ASKED,
        wait=wait,
        limit=LIMIT,
        clock=clock or SystemClock(),  # type: ignore[arg-type]
    )


def test_a_member_answers_with_every_byte_in_chunks(
    store: MemoryStore, answering: FullLogs
) -> None:
    data = b"".join(b"line %d " % n + b"\xff" * 300 + b"\n" for n in range(3000))  # ~900 KiB
    writer = answering.open(RUN)
    assert writer is not None
    for line in data.split(b"\n")[:-1]:
        writer.write(line)
    writer.close()
    put_run(store)

    assert fetch(store) == data
    assert len(data) > 3 * CHUNK
    # The asker cleaned up: no request, no answer left behind.
    assert store.scan(KEYS.log_requests("w2")) == []
    assert store.scan(KEYS._p("logs", "")) == []


def test_a_run_its_member_keeps_no_log_of_says_so(store: MemoryStore, answering: FullLogs) -> None:
    put_run(store)
    with pytest.raises(NotFound, match=f"member w2 keeps no full log of run {RUN}"):
        fetch(store)


def test_a_member_that_does_not_answer_is_named_with_what_to_do(store: MemoryStore) -> None:
    with pytest.raises(Unavailable) as raised:
        fetch(store, wait=10, clock=InstantClock())
    assert raised.value.message == (
        f"member w2 did not answer within 10s: the full log of run {RUN} is kept on its "
        f"host (host h2); run `maomao logs {RUN} --full` there, or `maomao logs {RUN}` for "
        "the last 16 KiB"
    )
    assert store.scan(KEYS.log_requests("w2")) == []  # the request is withdrawn


class ForgingMember:
    """Answers every request with the chunks given and a marker of the true data."""

    def __init__(self, store: MemoryStore, true: bytes, sent: list[bytes]) -> None:
        self.store, self.true, self.sent = store, true, sent
        self.watch = store.watch(KEYS.log_requests("w2"))
        self.thread = threading.Thread(target=self.answer, daemon=True)
        self.thread.start()

    def answer(self) -> None:
        for event in self.watch:
            if event.type != "put" or event.value is None:
                continue
            nonce = event.key.rsplit("/", 1)[-1]
            for n, chunk in enumerate(self.sent):
                self.store.put(KEYS.log_chunk(RUN, nonce, n), chunk)
            digest = hashlib.sha256(self.true).hexdigest()
            marker = Marker("ok", len(self.sent), len(self.true), digest)
            self.store.put(KEYS.log_answer_end(RUN, nonce), marker.to_json())

    def stop(self) -> None:
        self.watch.cancel()
        self.thread.join(timeout=5)


def test_a_corrupt_chunk_is_caught_by_the_hash(store: MemoryStore) -> None:
    true = b"a" * (CHUNK + 10)
    member = ForgingMember(store, true, [true[:CHUNK], b"b" * 10])
    try:
        with pytest.raises(Unavailable, match="failed its sha256 check"):
            fetch(store)
    finally:
        member.stop()


def test_an_oversized_chunk_is_refused(store: MemoryStore) -> None:
    true = b"a" * 10
    member = ForgingMember(store, true, [b"a" * (CHUNK + 1)])
    try:
        with pytest.raises(Unavailable, match="is incomplete"):
            fetch(store)
    finally:
        member.stop()


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b'{"status": "ok", "chunks": 1, "bytes": 99999999999, "sha256": "' + b"0" * 64 + b'"}',
        b'{"status": "ok", "chunks": 5, "bytes": 10, "sha256": "' + b"0" * 64 + b'"}',
        b'{"status": "ok", "chunks": 1, "bytes": 10, "sha256": "nothex"}',
        b'{"status": "ok", "chunks": true, "bytes": 10, "sha256": "' + b"0" * 64 + b'"}',
        b'{"status": "sure"}',
        b"[" * 2000,
    ],
)
def test_a_marker_outside_the_limits_is_not_read(value: bytes) -> None:
    assert Marker.parse(value, LIMIT) is None


def test_a_member_not_in_the_member_list_is_named(tmp_path: Path) -> None:
    store = MemoryStore()
    put_run(store)
    settings = Settings(data=DataSettings(importdir=str(tmp_path / "d")))
    runs = RunService(store, KEYS, settings, None, "w1")  # type: ignore[arg-type]
    service = RunLogService(runs, store, KEYS, clock=InstantClock(), wait=10)

    with pytest.raises(Unavailable, match="member w2 is not in the member list: the full log"):
        service.full(RUN)
    assert store.scan(KEYS.log_requests("w2")) == []  # nothing asked of no one

    member = Member(name="w2", host="h2", version="0", started=0.0)
    store.put(KEYS.member("w2"), member.to_json())
    with pytest.raises(Unavailable, match=r"did not answer within 10s.*\(host h2\)"):
        service.full(RUN)


# What a worker answers ------------------------------------------------------


def answers(store: MemoryStore, logs: FullLogs) -> LogAnswers:
    return LogAnswers(
        store_factory=lambda: store, keys=KEYS, member="w2", logs=logs, clock=InstantClock()
    )


def request(nonce: str, run_id: str = RUN) -> tuple[str, bytes]:
    return KEYS.log_request("w2", nonce), LogRequest(run_id, nonce).to_json()


def test_a_worker_answers_only_for_the_runs_it_ran(store: MemoryStore, tmp_path: Path) -> None:
    logs = member_logs(tmp_path, b"secret of w1's run\n")
    put_run(store, member="w1")  # the record says another member ran it

    assert answers(store, logs).answer(store, *request("0" * 16)) == "refused"
    assert [e.key for e in store.scan(KEYS.log_answer(RUN, "0" * 16))] == [
        KEYS.log_answer_end(RUN, "0" * 16)
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (KEYS.log_request("w2", "0" * 16), b'{"run": "../../etc/passwd", "nonce": "' + b"0" * 16 + b'"}'),
        (KEYS.log_request("w2", "0" * 16), b'{"run": "' + RUN.encode() + b'", "nonce": "' + b"1" * 16 + b'"}'),
        (KEYS.log_request("w2", "../x"), b'{"run": "' + RUN.encode() + b'", "nonce": "../x"}'),
        (KEYS.log_request("w2", "0" * 16), b"x" * 5000),
        (KEYS.log_request("w2", "0" * 16), b"null"),
    ],
)  # fmt: skip
def test_an_invalid_request_is_ignored_and_nothing_written(
    store: MemoryStore, tmp_path: Path, key: str, value: bytes
) -> None:
    put_run(store)
    logs = member_logs(tmp_path, b"line\n")

    assert answers(store, logs).answer(store, key, value) is None
    assert store.scan(KEYS._p("logs", "")) == []


def test_a_request_is_answered_once_and_answers_are_bounded(
    store: MemoryStore, tmp_path: Path
) -> None:
    put_run(store)
    worker = answers(store, member_logs(tmp_path, b"line\n"))
    nonces = [f"{n:016x}" for n in range(MAX_LIVE_ANSWERS + 1)]

    first = worker.answer(store, *request(nonces[0]))
    again = worker.answer(store, *request(nonces[0]))
    rest = [worker.answer(store, *request(nonce)) for nonce in nonces[1:]]

    assert (first, again) == ("ok", None)
    assert rest == ["ok"] * (MAX_LIVE_ANSWERS - 1) + ["busy"]


def test_a_run_of_this_member_without_a_local_log_or_worker_says_so(tmp_path: Path) -> None:
    store = MemoryStore()
    put_run(store, member="w1")
    settings = Settings(data=DataSettings(importdir=str(tmp_path / "d")))
    runs = RunService(store, KEYS, settings, None, "w1")  # type: ignore[arg-type]
    service = RunLogService(runs, store, KEYS, clock=InstantClock(), wait=10)

    with pytest.raises(NotFound, match=r"this member \(w1\) keeps no full log of run"):
        service.full(RUN)


class OwnClient:
    """The shared memory store, but its close() closes nothing."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def close(self) -> None:
        return None


def test_the_worker_watches_again_after_its_watch_breaks(
    store: MemoryStore, tmp_path: Path
) -> None:
    logs = member_logs(tmp_path, b"after the break\n")
    put_run(store)
    # Its own client, as in a worker: closing it after the break closes no one else's watch.
    answers = LogAnswers(
        store_factory=lambda: cast(Store, OwnClient(store)),
        keys=KEYS,
        member="w2",
        logs=logs,
        clock=InstantClock(),
    )
    answers.start()
    try:
        assert fetch(store) == b"after the break\n"  # it watches
        store.break_watches()  # as on a lost connection: it reads and watches again
        assert fetch(store) == b"after the break\n"
    finally:
        answers.stop()
