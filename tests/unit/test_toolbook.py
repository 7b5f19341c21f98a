"""The worker's tool book: a run starts from the tools read at connect and kept current
by the watch's events, reading etcd only for a tool whose event has not arrived."""

from __future__ import annotations

import pytest

from maomao_cli.errors import NotFound, Unavailable
from maomao_cli.keys import Keys
from maomao_cli.models import Tool
from maomao_cli.services.worker.toolbook import ToolBook
from maomao_cli.store.base import Entry
from maomao_cli.store.memory import MemoryStore

KEYS = Keys("/maomao")


class CountedStore(MemoryStore):
    """Counts reads; fails them while `down`."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.down = False

    def get(self, key: str) -> Entry | None:
        self.reads += 1
        if self.down:
            raise Unavailable("etcd unreachable")
        return super().get(key)


def put(store: MemoryStore, name: str, image: str) -> Entry:
    key = KEYS.tool(name)
    store.put(key, Tool(name=name, image=image).to_json())
    entry = store.get(key)
    assert entry is not None
    return entry


@pytest.fixture
def store() -> CountedStore:
    return CountedStore()


def test_a_run_reads_no_tool_the_book_holds(store: CountedStore) -> None:
    book = ToolBook(KEYS)
    book.load([put(store, "t", "img:1")])
    store.reads, store.down = 0, True
    assert book.get(store, "t").image == "img:1"
    assert store.reads == 0


def test_the_watchs_events_change_and_remove_tools(store: CountedStore) -> None:
    book = ToolBook(KEYS)
    book.load([put(store, "t", "img:1")])
    book.on_event(KEYS.tool("t"), Tool(name="t", image="img:2").to_json())
    assert book.get(store, "t").image == "img:2"
    store.delete(KEYS.tool("t"))
    book.on_event(KEYS.tool("t"), None)
    with pytest.raises(NotFound, match="tool 't', which is not registered"):
        book.get(store, "t")


def test_a_tool_whose_event_is_on_the_way_is_read_and_not_kept(store: CountedStore) -> None:
    book = ToolBook(KEYS)
    book.load([])
    put(store, "new", "img")
    store.reads = 0
    assert book.get(store, "new").image == "img"
    assert book.get(store, "new").image == "img"
    assert store.reads == 2, "read each time: only the watch's event puts it in the book"
    store.down = True
    with pytest.raises(Unavailable):
        book.get(store, "new")


def test_an_unreadable_event_drops_the_tool_so_it_is_read_again(store: CountedStore) -> None:
    book = ToolBook(KEYS)
    book.load([put(store, "t", "img:1")])
    book.on_event(KEYS.tool("t"), b"{not json")
    store.reads = 0
    assert book.get(store, "t").image == "img:1"
    assert store.reads == 1


def test_a_new_scan_replaces_the_book(store: CountedStore) -> None:
    book = ToolBook(KEYS)
    book.load([put(store, "a", "img"), put(store, "b", "img")])
    store.delete(KEYS.tool("a"))
    book.load([put(store, "b", "img:2")])  # after a reconnect: a was deleted meanwhile
    assert book.get(store, "b").image == "img:2"
    with pytest.raises(NotFound):
        book.get(store, "a")
