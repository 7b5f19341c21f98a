"""Feeds: the records of one kind as an etcd watch delivers them, typed and in order."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Generic

from ..errors import RecordError
from ..models import R
from ..store.base import Watch


class Feed(Generic[R]):
    """`(revision, record)` for each record written under a watched prefix; deletions are
    left out, and a record that cannot be read is logged and skipped (as
    `records.decode` does). The watch is open once the feed exists, so nothing written
    after that is missed; `cancel()` (from any thread) ends the iteration."""

    def __init__(self, watch: Watch, cls: type[R], log: logging.Logger) -> None:
        self._watch = watch
        self._cls = cls
        self._log = log

    def __iter__(self) -> Iterator[tuple[int, R]]:
        for event in self._watch:
            if event.type != "put" or event.value is None:
                continue
            try:
                record = self._cls.from_json(event.value)
            except RecordError as exc:
                # Written by a newer or broken member: say so, never end the feed.
                self._log.warning("skipping %s: %s", event.key, exc)
                continue
            yield event.revision, record

    def cancel(self) -> None:
        self._watch.cancel()
