"""The tools as this worker knows them: read once on (re)connecting and kept current by a
watch on the tools' prefix, so starting a run reads no tool from etcd (one round trip
less per run) and a run whose slot comes while etcd is down still starts.

A tool the book does not hold yet (registered a moment ago, its event still on the way)
is read from etcd; a change still on the way decides the runs that start after it
arrives, within the watch's latency, like any change made just after a run started.
"""

from __future__ import annotations

import threading

from ...errors import NotFound
from ...keys import Keys
from ...models import Tool
from ...store.base import Entry, Store
from ..records import decode, load


class ToolBook:
    def __init__(self, keys: Keys) -> None:
        self._keys = keys
        self._lock = threading.Lock()
        self._tools: dict[str, Tool] = {}

    def read(self, store: Store) -> int:
        """Every tool as etcd has them now; the revision the watch goes on from."""
        entries, revision = store.scan_with_revision(self._keys.tools())
        self.load(entries)
        return revision

    def load(self, entries: list[Entry]) -> None:
        """Every tool, as a scan found them (the watch goes on from the scan's revision)."""
        tools = (decode(Tool, entry) for entry in entries)
        fresh = {tool.name: tool for tool in tools if tool is not None}
        with self._lock:
            self._tools = fresh

    def on_event(self, key: str, value: bytes | None) -> None:
        name = self._keys.leaf(key)
        tool = None if value is None else decode(Tool, Entry(key, value, 0))
        with self._lock:
            if tool is None:  # deleted, or unreadable: read again when a run needs it
                self._tools.pop(name, None)
            else:
                self._tools[name] = tool

    def known(self, name: str) -> Tool | None:
        """The book's tool, without asking etcd."""
        with self._lock:
            return self._tools.get(name)

    def get(self, store: Store, name: str) -> Tool:
        """The tool a run starts with: the book's, else etcd's; NotFound if neither has it,
        Unavailable if the book lacks it and etcd cannot be asked."""
        with self._lock:
            known = self._tools.get(name)
        if known is not None:
            return known
        # Not kept: the watch's event is what makes it the book's (kept here, a read could
        # put back a tool whose deletion the watch had already applied).
        tool = load(store, self._keys.tool(name), Tool)
        if tool is None:
            raise NotFound(f"schedule refers to tool {name!r}, which is not registered")
        return tool
