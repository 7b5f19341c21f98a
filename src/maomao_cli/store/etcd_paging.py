"""Prefix ranges and paged range reads on etcd: one page per request, a cursor to go on."""

from __future__ import annotations

from typing import Any

from .base import Entry, Page


def range_end(prefix: str) -> bytes:
    """The first key after every key that starts with prefix (etcd's range_end)."""
    raw = bytearray(prefix.encode())
    for i in range(len(raw) - 1, -1, -1):
        if raw[i] < 0xFF:
            raw[i] += 1
            return bytes(raw[: i + 1])
    return b"\0"


def page_bounds(prefix: str, cursor: str | None, descending: bool) -> tuple[str | bytes, ...]:
    """The range of one page: ascending pages continue at the cursor; descending ones end
    (exclusively) there."""
    end = range_end(prefix)
    return (prefix, cursor or end) if descending else (cursor or prefix, end)


def page_of(response: Any, revision: int | None, descending: bool) -> Page:
    """A RangeResponse as a Page, with the cursor of the next page when there is more."""
    entries = [
        Entry(
            key=kv.key.decode(),
            value=bytes(kv.value),
            mod_revision=int(kv.mod_revision),
            create_revision=int(kv.create_revision),
            lease=int(kv.lease),
        )
        for kv in response.kvs
    ]
    next_cursor = None
    if response.more and entries:
        last = entries[-1].key
        next_cursor = last if descending else last + "\0"
    return Page(entries, revision or int(response.header.revision), next_cursor)
