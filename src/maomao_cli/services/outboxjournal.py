"""The outbox's journal on disk: the run records a worker keeps while etcd is down.

One file per member in the state directory, append-only: a `put` line when a record is
kept, a `done` line when it reached etcd, each fsync'd before the worker goes on, so a
worker killed (or stopped) during an outage writes the records at its next start. When
nothing is pending the file is emptied. A torn last line (power loss mid-write) is
skipped; so is anything else that is not a line this module wrote.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections import OrderedDict
from pathlib import Path

log = logging.getLogger("maomao.worker")


class OutboxJournal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> OrderedDict[str, tuple[bytes, int]]:
        """The records still pending, by key, oldest first: (value, sequence number)."""
        pending: OrderedDict[str, tuple[bytes, int]] = OrderedDict()
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return pending
        done: set[int] = set()
        puts: list[tuple[int, str, bytes]] = []
        for line in text.splitlines():
            parsed = _parse(line)
            if isinstance(parsed, int):
                done.add(parsed)
            elif parsed is not None:
                puts.append(parsed)
        for seq, key, value in puts:
            pending.pop(key, None)  # a newer write of a key replaces the older
            pending[key] = (value, seq)
        for key, (_, seq) in list(pending.items()):
            if seq in done:
                del pending[key]
        return pending

    def kept(self, seq: int, key: str, value: bytes) -> None:
        self._append({"put": seq, "key": key, "value": base64.b64encode(value).decode()})

    def written(self, seq: int) -> None:
        self._append({"done": seq})

    def clear(self) -> None:
        """Nothing is pending: start the file afresh."""
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "w", encoding="utf-8") as handle:
                os.fsync(handle.fileno())

    def _append(self, line: dict[str, object]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(line) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)


def _parse(line: str) -> int | tuple[int, str, bytes] | None:
    try:
        item = json.loads(line)
    except ValueError:
        return None
    if not isinstance(item, dict):
        return None
    if "done" in item:
        done = item["done"]
        return done if isinstance(done, int) and not isinstance(done, bool) else None
    seq, key, value = item.get("put"), item.get("key"), item.get("value")
    if not isinstance(seq, int) or not isinstance(key, str) or not isinstance(value, str):
        return None
    try:
        return seq, key, base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
