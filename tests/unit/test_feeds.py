"""Feeds survive a lost watch (services/feeds.py): opened again from the revision after the
last one delivered, so every record written meanwhile arrives exactly once; a compacted
gap is said and skipped; an etcd that stays away ends the feed with Unavailable. On the
memory store, whose watches tests can break; no sleeping (the retry delays are zero)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from maomao_cli.errors import Unavailable
from maomao_cli.models import Spike
from maomao_cli.services.feeds import Feed
from maomao_cli.store.memory import MemoryStore, MemoryWatch

PREFIX = "/t/spikes/"
log = logging.getLogger("test.feeds")


def spike(n: int) -> bytes:
    return Spike(
        tool="x", sortable=f"{n:04d}", value=float(n), baseline=0.0, deviation=0.0,
        deviation_pct=0.0, score=0.0, direction="up",
    ).to_json()  # fmt: skip


def values(feed: Feed[Spike], count: int) -> Iterator[int]:
    for n, (_, record) in enumerate(feed):
        yield int(record.value)
        if n + 1 == count:
            return


def test_a_broken_watch_resumes_after_the_last_revision_seen() -> None:
    store = MemoryStore()
    feed = Feed(store, PREFIX, Spike, log, retry_delays=(0.0,))
    seen = values(feed, 6)
    store.put(PREFIX + "1", spike(1))
    store.put(PREFIX + "2", spike(2))
    assert [next(seen), next(seen)] == [1, 2]
    store.break_watches()  # the member it watched through left
    for n in (3, 4, 5, 6):  # written while the watch is down
        store.put(PREFIX + str(n), spike(n))
    assert list(seen) == [3, 4, 5, 6]  # each once, in order
    feed.cancel()


def test_events_already_delivered_are_not_repeated() -> None:
    """An endpoint that replays from an older revision: the feed drops what it gave."""

    class Replaying(MemoryStore):
        def watch(self, prefix: str, *, start_revision: int | None = None) -> MemoryWatch:
            return super().watch(prefix, start_revision=1 if start_revision else None)

    store = Replaying()
    feed = Feed(store, PREFIX, Spike, log, retry_delays=(0.0,))
    seen = values(feed, 3)
    store.put(PREFIX + "1", spike(1))
    assert next(seen) == 1
    store.break_watches()
    store.put(PREFIX + "2", spike(2))
    store.put(PREFIX + "3", spike(3))
    assert list(seen) == [2, 3]


def test_a_compacted_gap_is_said_and_the_feed_resumes_from_now() -> None:
    store = MemoryStore()
    notices: list[str] = []
    feed = Feed(store, PREFIX, Spike, log, notice=notices.append, retry_delays=(0.0, 0.0))
    seen = values(feed, 2)
    store.put(PREFIX + "1", spike(1))
    assert next(seen) == 1
    store.break_watches()
    store.put(PREFIX + "2", spike(2))  # lost in the compaction
    store.compacted = store.status().revision
    got: list[int] = []
    reader = threading.Thread(target=lambda: got.extend(seen))
    reader.start()
    while not notices:  # the feed has met the compaction and reopened from now
        reader.join(0.01)
    store.put(PREFIX + "3", spike(3))
    reader.join(10)
    assert got == [3]
    assert len(notices) == 1 and "were compacted while the watch was down" in notices[0]


def test_an_etcd_that_stays_away_ends_the_feed() -> None:
    store = MemoryStore()
    feed = Feed(store, PREFIX, Spike, log, retry_delays=(0.0, 0.0, 0.0))
    store.break_watches()
    store.down = True
    with pytest.raises(Unavailable, match="simulated outage"):
        list(feed)


def test_cancel_ends_a_feed_waiting_to_reconnect() -> None:
    store = MemoryStore()
    feed = Feed(store, PREFIX, Spike, log, retry_delays=(3600.0,))
    store.break_watches()
    done = threading.Event()

    def read() -> None:
        list(feed)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    feed.cancel()
    assert done.wait(10)
