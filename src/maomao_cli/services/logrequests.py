"""Asking the member that ran a run for its full log, through etcd.

No new network port: etcd (and its auth) is the only way in. The asker writes
`logreq/<member>/<nonce>` (the run id in the value) on a short lease and watches
`logs/<run-id>/<nonce>/`; the member's worker (services/worker/loganswers.py) writes its
file there in chunks of at most CHUNK bytes, on a lease of a few minutes, then the marker
`end` with the status, the chunk count, the size and the sha256. The asker checks all of
it against its own limits (the values are another member's), joins, deletes the request
and the answer, and returns the bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import threading
from typing import TYPE_CHECKING, Any, Literal

from ..errors import NotFound, Unavailable
from ..frozen import frozen
from ..keys import Keys
from ..store.base import Store, Watch
from ..validation import RUN_ID

if TYPE_CHECKING:
    from ..ports import Clock  # a protocol: annotations only (ports imports the store's types)

CHUNK = 256 * 1024
NONCE = re.compile(r"[0-9a-f]{16}")
# A request's value is a few dozen bytes; anything bigger is not one.
REQUEST_MAX = 1024
MARKER_MAX = 1024
# Seconds between two looks for the answer when the watch has said nothing.
POLL = 1.0
# Seconds an answer stays in etcd if its asker never collects it.
ANSWER_TTL = 180

Status = Literal["ok", "missing", "refused", "busy"]
_STATUSES = ("ok", "missing", "refused", "busy")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@frozen
class LogRequest:
    run_id: str
    nonce: str

    def to_json(self) -> bytes:
        return json.dumps({"v": 1, "run": self.run_id, "nonce": self.nonce}).encode()

    @classmethod
    def parse(cls, key_nonce: str, value: bytes) -> LogRequest | None:
        """The request, or None when it is not a valid one (it is another member's data)."""
        if len(value) > REQUEST_MAX:
            return None
        try:
            data = json.loads(value)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict):
            return None
        run_id, nonce = data.get("run"), data.get("nonce")
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            return None
        if nonce != key_nonce or not NONCE.fullmatch(key_nonce):
            return None
        return cls(run_id, key_nonce)


@frozen
class Marker:
    status: Status
    chunks: int = 0
    size: int = 0
    sha256: str = ""

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "v": 1,
                "status": self.status,
                "chunks": self.chunks,
                "bytes": self.size,
                "sha256": self.sha256,
            }
        ).encode()

    @classmethod
    def parse(cls, value: bytes, limit: int) -> Marker | None:
        if len(value) > MARKER_MAX:
            return None
        try:
            data: Any = json.loads(value)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict) or data.get("status") not in _STATUSES:
            return None
        if data["status"] != "ok":
            return cls(data["status"])
        chunks, size, digest = (
            _count(data.get("chunks")),
            _count(data.get("bytes")),
            data.get("sha256"),
        )
        if chunks is None or size is None or not isinstance(digest, str):
            return None
        if size > limit or chunks != chunk_count(size) or not _SHA256.fullmatch(digest):
            return None
        return cls("ok", chunks, size, digest)


def _count(value: object) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok and isinstance(value, int) else None


def chunk_count(size: int) -> int:
    return -(-size // CHUNK)


def chunks_of(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


@frozen
class Asked:
    """Who is asked: the member that ran the run, and its host when it is known."""

    run_id: str
    member: str
    host: str | None


def _elsewhere(asked: Asked) -> str:
    where = f" (host {asked.host})" if asked.host else ""
    return (
        f"the full log of run {asked.run_id} is kept on its host{where}; run "
        f"`maomao logs {asked.run_id} --full` there, or `maomao logs {asked.run_id}` "
        "for the last 16 KiB"
    )


def absent(asked: Asked) -> Unavailable:
    return Unavailable(f"member {asked.member} is not in the member list: {_elsewhere(asked)}")


def fetch(
    store: Store,
    keys: Keys,
    asked: Asked,
    *,
    wait: float,
    limit: int,
    clock: Clock,
) -> bytes:
    """The full log of a run from the member that ran it: Unavailable when it does not
    answer within `wait` seconds or its answer fails the checks; NotFound when it keeps
    no full log of that run."""
    nonce = secrets.token_hex(8)
    answer = keys.log_answer(asked.run_id, nonce)
    end = keys.log_answer_end(asked.run_id, nonce)
    request = keys.log_request(asked.member, nonce)
    lease = store.grant_lease(max(int(wait) + 5, 5))
    answered = threading.Event()
    watch = store.watch(answer)  # open before the request: the answer cannot be missed
    try:
        threading.Thread(
            target=_watch_end, args=(watch, end, answered), name="logfetch", daemon=True
        ).start()
        store.put(request, LogRequest(asked.run_id, nonce).to_json(), lease=lease.id)
        deadline = clock.monotonic() + wait
        entry = store.get(end)
        while entry is None:
            left = deadline - clock.monotonic()
            if left <= 0:
                raise Unavailable(
                    f"member {asked.member} did not answer within {wait:g}s: {_elsewhere(asked)}"
                )
            # Looked at again at least every POLL seconds: a watch can end unseen.
            clock.wait(answered, min(left, POLL))
            answered.clear()
            entry = store.get(end)
        return _collect(store, keys, asked, nonce, entry.value, limit)
    finally:
        watch.cancel()
        # The lease and the answer's own lease clear whatever this cannot.
        with contextlib.suppress(Unavailable):
            store.delete(request)
        with contextlib.suppress(Unavailable):
            store.delete_prefix(answer)
        with contextlib.suppress(Unavailable):
            lease.revoke()


def _watch_end(watch: Watch, end: str, answered: threading.Event) -> None:
    try:
        for event in watch:
            if event.key == end:
                answered.set()
    except Unavailable:
        answered.set()  # the asker looks again itself


def _collect(store: Store, keys: Keys, asked: Asked, nonce: str, value: bytes, limit: int) -> bytes:
    marker = Marker.parse(value, limit)
    sender = f"member {asked.member}"
    if marker is None:
        raise Unavailable(
            f"{sender} sent an answer this member cannot read for run {asked.run_id} "
            f"(or one over its [worker] full_log_max of {limit} bytes)"
        )
    if marker.status == "missing":
        raise NotFound(
            f"{sender} keeps no full log of run {asked.run_id} (pruned with its retention, "
            "or the run predates full logs)",
            hint=f"`maomao logs {asked.run_id}` shows the last 16 KiB",
        )
    if marker.status != "ok":
        why = "it is busy answering others" if marker.status == "busy" else "it did not run it"
        raise Unavailable(f"{sender} refused the full log of run {asked.run_id}: {why}")
    parts: list[bytes] = []
    for n in range(marker.chunks):
        entry = store.get(keys.log_chunk(asked.run_id, nonce, n))
        if entry is None or len(entry.value) > CHUNK:
            raise Unavailable(f"{sender}'s answer for run {asked.run_id} is incomplete")
        parts.append(entry.value)
    data = b"".join(parts)
    if len(data) != marker.size or hashlib.sha256(data).hexdigest() != marker.sha256:
        raise Unavailable(
            f"{sender}'s answer for run {asked.run_id} failed its sha256 check; try again"
        )
    return data
