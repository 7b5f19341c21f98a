"""Typed access to JSON records in the store; unreadable records are reported and skipped."""

from __future__ import annotations

import logging

from ..errors import RecordError
from ..models import R
from ..store.base import Entry, Store

log = logging.getLogger("maomao")


def decode(cls: type[R], entry: Entry) -> R | None:
    try:
        return cls.from_json(entry.value)
    except RecordError as exc:
        # Written by a newer or broken member: say so once per read, never crash.
        log.warning("skipping %s: %s", entry.key, exc)
        return None


def load(store: Store, key: str, cls: type[R]) -> R | None:
    entry = store.get(key)
    return None if entry is None else decode(cls, entry)


def load_all(store: Store, prefix: str, cls: type[R]) -> list[R]:
    records = (decode(cls, entry) for entry in store.scan(prefix))
    return [r for r in records if r is not None]
