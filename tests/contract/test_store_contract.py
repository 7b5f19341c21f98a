"""One contract for the store port, run against every adapter (memory and real etcd)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from functools import partial

import pytest

from maomao_cli.config import EtcdSettings
from maomao_cli.errors import Unavailable
from maomao_cli.store.base import PAGE_SIZE, Event, Store, scan_pages
from maomao_cli.store.etcd import EtcdStore
from maomao_cli.store.etcd_gateway import GatewayStore
from maomao_cli.store.memory import MemoryStore
from servers import EtcdCluster, free_port


@pytest.fixture(
    params=[
        "memory",
        pytest.param("etcd", marks=pytest.mark.etcd),
        pytest.param("gateway", marks=pytest.mark.etcd),  # a command's: reads over HTTP
    ]
)
def store(request: pytest.FixtureRequest, prefix: str) -> Iterator[Store]:
    if request.param == "memory":
        backend: Store = MemoryStore()
    else:
        cluster: EtcdCluster = request.getfixturevalue("etcd")
        settings = EtcdSettings(endpoints=tuple(cluster.endpoints.split(",")))
        if request.param == "gateway":
            backend = GatewayStore(settings, partial(EtcdStore, settings))
        else:
            backend = EtcdStore(settings)
    yield backend
    backend.delete_prefix(prefix)
    backend.close()


def test_put_get_list_sorted(store: Store, prefix: str) -> None:
    store.put(f"{prefix}/b", b"2")
    store.put(f"{prefix}/a", b"1")
    store.put(f"{prefix}x/c", b"outside")  # shares the string prefix, not the folder
    entry = store.get(f"{prefix}/a")
    assert entry is not None and entry.value == b"1"
    assert [e.key for e in store.scan(f"{prefix}/")] == [f"{prefix}/a", f"{prefix}/b"]
    assert store.count(f"{prefix}/") == 2
    assert store.get(f"{prefix}/missing") is None
    store.delete_prefix(f"{prefix}x/")


def test_create_only_if_absent(store: Store, prefix: str) -> None:
    assert store.create(f"{prefix}/claim", b"first") is True
    assert store.create(f"{prefix}/claim", b"second") is False
    entry = store.get(f"{prefix}/claim")
    assert entry is not None and entry.value == b"first"


def test_create_races_have_one_winner(store: Store, prefix: str) -> None:
    wins: list[int] = []

    def claim(i: int) -> None:
        if store.create(f"{prefix}/race", str(i).encode()):
            wins.append(i)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def test_replace_compares_revision(store: Store, prefix: str) -> None:
    store.put(f"{prefix}/k", b"v1")
    entry = store.get(f"{prefix}/k")
    assert entry is not None
    assert store.replace(f"{prefix}/k", b"v2", mod_revision=entry.mod_revision) is True
    assert store.replace(f"{prefix}/k", b"v3", mod_revision=entry.mod_revision) is False
    final = store.get(f"{prefix}/k")
    assert final is not None and final.value == b"v2"


def test_delete_if_unchanged(store: Store, prefix: str) -> None:
    store.put(f"{prefix}/guard", b"old holder")
    entry = store.get(f"{prefix}/guard")
    assert entry is not None
    store.put(f"{prefix}/guard", b"new holder")
    assert store.delete_if(f"{prefix}/guard", mod_revision=entry.mod_revision) is False
    current = store.get(f"{prefix}/guard")
    assert current is not None and current.value == b"new holder"
    assert store.delete_if(f"{prefix}/guard", mod_revision=current.mod_revision) is True
    assert store.get(f"{prefix}/guard") is None


def test_delete(store: Store, prefix: str) -> None:
    store.put(f"{prefix}/k", b"v")
    assert store.delete(f"{prefix}/k") is True
    assert store.delete(f"{prefix}/k") is False
    store.put(f"{prefix}/x/1", b"")
    store.put(f"{prefix}/x/2", b"")
    assert store.delete_prefix(f"{prefix}/x/") == 2


@pytest.fixture
def second_client(request: pytest.FixtureRequest, store: Store) -> Iterator[Store]:
    """Another client of the same backend (the memory store is its own only client)."""
    if isinstance(store, MemoryStore):
        yield store
        return
    cluster: EtcdCluster = request.getfixturevalue("etcd")
    client = EtcdStore(EtcdSettings(endpoints=tuple(cluster.endpoints.split(","))))
    yield client
    client.close()


def test_a_lease_is_kept_and_revoked_through_another_client(
    store: Store, second_client: Store, prefix: str
) -> None:
    lease = store.grant_lease(5)
    store.put(f"{prefix}/leased", b"v", lease=lease.id)
    carried = second_client.lease_of(lease.id, lease.ttl)
    assert (carried.id, carried.ttl) == (lease.id, lease.ttl)
    assert carried.refresh() is True
    carried.revoke()
    assert store.get(f"{prefix}/leased") is None
    assert second_client.lease_of(lease.id, lease.ttl).refresh() is False


def test_lease_revoke_removes_keys(store: Store, prefix: str) -> None:
    lease = store.grant_lease(5)
    store.put(f"{prefix}/leased", b"v", lease=lease.id)
    assert store.get(f"{prefix}/leased") is not None
    assert lease.refresh() is True
    lease.revoke()
    assert store.get(f"{prefix}/leased") is None


def test_watch_sees_puts_and_deletes_in_order(store: Store, prefix: str) -> None:
    _, revision = store.scan_with_revision(f"{prefix}/")
    watch = store.watch(f"{prefix}/", start_revision=revision + 1)
    seen: list[Event] = []

    def consume() -> None:
        for event in watch:
            seen.append(event)
            if len(seen) == 3:
                return

    consumer = threading.Thread(target=consume)
    consumer.start()
    store.put(f"{prefix}/a", b"1")
    store.put(f"{prefix}/a", b"2")
    store.delete(f"{prefix}/a")
    consumer.join(10)
    watch.cancel()
    assert [(e.type, e.value) for e in seen] == [("put", b"1"), ("put", b"2"), ("delete", None)]
    assert seen[0].revision < seen[1].revision < seen[2].revision


def test_watch_from_past_revision_replays(store: Store, prefix: str) -> None:
    revision = store.put(f"{prefix}/early", b"x")
    watch = store.watch(f"{prefix}/", start_revision=revision)
    first = next(iter(watch))
    watch.cancel()
    assert (first.type, first.key) == ("put", f"{prefix}/early")


def test_unreachable_etcd_fails_fast_with_endpoint() -> None:
    port = free_port()
    store = EtcdStore(EtcdSettings(endpoints=(f"127.0.0.1:{port}",), timeout=2))
    started = time.monotonic()
    with pytest.raises(Unavailable) as info:
        store.get("/maomao/x")
    assert f"127.0.0.1:{port}" in str(info.value)
    assert time.monotonic() - started < 10  # bounded, generous: the timeout is 2 s
    store.close()


def test_claim_outcomes(store: Store, prefix: str) -> None:
    from maomao_cli.store.base import Claim

    first = Claim(f"{prefix}/f/1", b"me", guard=f"{prefix}/active", guard_value=b"run")
    assert store.claim([first]) == ["won"]
    assert store.claim([first]) == ["won"], "the same claim again (a lost answer) is still ours"
    assert store.claim([Claim(f"{prefix}/f/1", b"other")]) == ["taken"]
    # The next firing is free but the guard (the previous run) is still held.
    second = Claim(f"{prefix}/f/2", b"me", guard=f"{prefix}/active", busy_value=b"me-busy")
    assert store.claim([second]) == ["busy"]
    held = store.get(f"{prefix}/f/2")
    assert held is not None and held.value == b"me-busy", "a busy claim still takes the key"
    assert store.claim([second]) == ["busy"], "a retried busy claim stays busy"
    other = Claim(f"{prefix}/f/2", b"other", guard=f"{prefix}/active", busy_value=b"o-busy")
    assert store.claim([other]) == ["taken"], "only one member records the skip"
    store.delete(f"{prefix}/active")
    third = Claim(f"{prefix}/f/3", b"me", guard=f"{prefix}/active", busy_value=b"me-busy")
    assert store.claim([third]) == ["won"]
    guard = store.get(f"{prefix}/active")
    assert guard is not None


def test_a_claim_writes_its_records_with_its_outcome_and_only_then(
    store: Store, prefix: str
) -> None:
    from maomao_cli.store.base import Claim

    def claim(tail: str, value: bytes) -> Claim:
        return Claim(
            f"{prefix}/f/{tail}",
            value,
            guard=f"{prefix}/active",
            busy_value=value + b"-busy",
            with_won=((f"{prefix}/runs/{tail}", b"running"), (f"{prefix}/idx/{tail}", b"")),
            with_busy=((f"{prefix}/runs/{tail}", b"skipped"), (f"{prefix}/idx/{tail}", b"")),
        )

    def record(tail: str) -> bytes | None:
        entry = store.get(f"{prefix}/runs/{tail}")
        return None if entry is None else entry.value

    assert store.claim([claim("1", b"me")]) == ["won"]
    assert record("1") == b"running"
    assert store.get(f"{prefix}/idx/1") is not None, "every record the claim carries"
    store.put(f"{prefix}/runs/1", b"succeeded")
    assert store.claim([claim("1", b"me")]) == ["won"], "ours, recognised by its value"
    assert record("1") == b"succeeded", "a claim answered again writes nothing again"
    assert store.claim([claim("2", b"me")]) == ["busy"], "the guard is held"
    assert record("2") == b"skipped", "a busy claim writes its busy records"
    store.delete(f"{prefix}/active")
    store.put(f"{prefix}/f/3", b"other")
    assert store.claim([claim("3", b"me")]) == ["taken"]
    assert record("3") is None, "a lost claim writes nothing"
    assert store.get(f"{prefix}/active") is None, "nor its guard"


def test_a_claim_compared_with_its_schedule_is_refused_once_the_schedule_changed(
    store: Store, prefix: str
) -> None:
    from maomao_cli.store.base import Claim

    schedule = f"{prefix}/schedules/s"
    store.put(schedule, b"v1")
    seen = store.get(schedule)
    assert seen is not None

    def claim(tail: str, revision: int, value: bytes = b"me") -> Claim:
        return Claim(
            f"{prefix}/f/{tail}",
            value,
            guard=f"{prefix}/active/{tail}",
            busy_value=value + b"-busy",
            with_won=((f"{prefix}/runs/{tail}", b"running"),),
            unless_changed=(schedule, revision),
        )

    assert store.claim([claim("1", seen.mod_revision)]) == ["won"], "unchanged: claimed"
    store.put(schedule, b"v2")  # e.g. `maomao schedule pause`, not seen by the claimant
    assert store.claim([claim("2", seen.mod_revision)]) == ["changed"]
    assert store.get(f"{prefix}/f/2") is None and store.get(f"{prefix}/runs/2") is None
    assert store.get(f"{prefix}/active/2") is None, "a refused claim writes nothing"
    assert store.claim([claim("1", seen.mod_revision)]) == ["won"], "ours before the change"
    assert store.claim([claim("1", seen.mod_revision, b"other")]) == ["changed"]
    now = store.get(schedule)
    assert now is not None
    assert store.claim([claim("2", now.mod_revision)]) == ["won"], "at the revision seen now"
    store.put(f"{prefix}/active/3", b"run")  # the previous run still runs
    assert store.claim([claim("3", now.mod_revision)]) == ["busy"]
    store.delete(schedule)
    assert store.claim([claim("3", now.mod_revision)]) == ["busy"], "recognised by its value"
    assert store.claim([claim("4", now.mod_revision)]) == ["changed"], "removed: changed"


def test_many_compared_claims_in_one_call(store: Store, prefix: str) -> None:
    from maomao_cli.store.base import Claim

    schedule = f"{prefix}/schedules/s"
    store.put(schedule, b"v1")
    seen = store.get(schedule)
    assert seen is not None
    fresh, stale = (schedule, seen.mod_revision), (schedule, seen.mod_revision - 1)
    claims = [
        Claim(f"{prefix}/c/{i:03d}", b"me", unless_changed=fresh if i % 2 else stale)
        for i in range(130)  # more than one transaction's worth
    ]
    outcomes = list(store.claim(claims))
    assert outcomes == ["won" if i % 2 else "changed" for i in range(130)]
    assert len(store.scan(f"{prefix}/c/")) == 65


def test_claim_batch_has_one_winner_per_key(store: Store, prefix: str) -> None:
    from maomao_cli.store.base import Claim

    keys = [f"{prefix}/batch/{i}" for i in range(50)]
    outcomes: list[list[object]] = []

    def contender(name: str) -> None:
        outcomes.append(list(store.claim([Claim(k, name.encode()) for k in keys])))

    threads = [threading.Thread(target=contender, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for index in range(len(keys)):
        column = [o[index] for o in outcomes]
        assert column.count("won") == 1 and column.count("taken") == 2


def mixed_claims(prefix: str, store: Store, plain: int) -> list[object]:
    """One claim call of every kind at once: `plain` free keys, a taken key, a free key
    whose guard is held, and two firings sharing a free guard (one schedule)."""
    from maomao_cli.store.base import Claim

    store.put(f"{prefix}/m/taken", b"other")
    store.put(f"{prefix}/m/held-guard", b"run")
    claims = [Claim(f"{prefix}/m/free/{i:03d}", b"me") for i in range(plain)]
    claims.append(Claim(f"{prefix}/m/taken", b"me"))
    claims.append(
        Claim(f"{prefix}/m/guarded", b"me", guard=f"{prefix}/m/held-guard", busy_value=b"busy")
    )
    claims.extend(
        Claim(f"{prefix}/m/{tail}", b"me", guard=f"{prefix}/m/guard", busy_value=b"busy")
        for tail in ("first", "second")
    )
    return list(store.claim(claims))


def test_a_call_of_many_claims_gives_each_its_own_outcome(store: Store, prefix: str) -> None:
    outcomes = mixed_claims(prefix, store, plain=130)  # more than one transaction's worth
    assert outcomes[:130] == ["won"] * 130
    assert outcomes[130:132] == ["taken", "busy"]
    assert sorted(map(str, outcomes[132:])) == ["busy", "won"], "one guard: one run, one skip"
    assert len(store.scan(f"{prefix}/m/free/")) == 130


@pytest.mark.etcd
def test_claims_reach_a_cluster_that_allows_few_operations_per_transaction(
    prefix: str,
) -> None:
    """A cluster started with a lower --max-txn-ops refuses a batch: its claims go one
    transaction each, with the same outcomes."""
    cluster = EtcdCluster(1, extra=["--max-txn-ops", "8"]).start()
    store = EtcdStore(EtcdSettings(endpoints=(cluster.endpoints,)))
    try:
        outcomes = mixed_claims(prefix, store, plain=20)
        assert outcomes[:22] == ["won"] * 20 + ["taken", "busy"]
        assert sorted(map(str, outcomes[22:])) == ["busy", "won"]
    finally:
        store.close()
        cluster.stop()


def test_claim_reports_outage_per_claim() -> None:
    from maomao_cli.store.base import Claim

    port = free_port()
    store = EtcdStore(EtcdSettings(endpoints=(f"127.0.0.1:{port}",), timeout=2))
    outcomes = store.claim([Claim("/x/1", b"v"), Claim("/x/2", b"v")])
    assert len(outcomes) == 2 and all(isinstance(o, Unavailable) for o in outcomes)
    store.close()


def test_scan_page_continues_in_both_orders(store: Store, prefix: str) -> None:
    keys = [f"{prefix}/p/{i:02d}" for i in range(7)]
    for key in keys:
        store.put(key, key.encode())
    store.put(f"{prefix}/px", b"outside")  # shares the string prefix, not the folder

    def read_all(descending: bool) -> list[list[str]]:
        pages: list[list[str]] = []
        cursor: str | None = None
        revision: int | None = None
        while True:
            page = store.scan_page(
                f"{prefix}/p/", limit=3, cursor=cursor, descending=descending, revision=revision
            )
            pages.append([e.key for e in page.entries])
            if page.cursor is None:
                return pages
            cursor, revision = page.cursor, page.revision

    assert read_all(False) == [keys[0:3], keys[3:6], keys[6:7]]
    assert read_all(True) == [keys[6:3:-1], keys[3:0:-1], keys[0:1]]
    newest = store.scan_page(f"{prefix}/p/", limit=2, descending=True)
    assert [e.key for e in newest.entries] == [keys[6], keys[5]]
    assert [e.value for e in newest.entries] == [keys[6].encode(), keys[5].encode()]
    bare = store.scan_page(f"{prefix}/p/", limit=2, keys_only=True)
    assert [(e.key, e.value) for e in bare.entries] == [(keys[0], b""), (keys[1], b"")]
    exact = store.scan_page(f"{prefix}/p/", limit=7)
    assert len(exact.entries) == 7 and exact.cursor is None


def test_paged_scan_is_one_snapshot(store: Store, prefix: str) -> None:
    """Pages after the first are read at the first page's revision: a key written between
    two pages is not seen, one deleted between them still is."""
    for i in range(4):
        store.put(f"{prefix}/s/{i}", b"v")
    first = store.scan_page(f"{prefix}/s/", limit=2)
    store.put(f"{prefix}/s/9", b"late")
    store.delete(f"{prefix}/s/3")
    assert first.cursor is not None
    rest = store.scan_page(f"{prefix}/s/", limit=10, cursor=first.cursor, revision=first.revision)
    assert [e.key for e in rest.entries] == [f"{prefix}/s/2", f"{prefix}/s/3"]
    assert rest.revision == first.revision
    assert [e.key for e in scan_pages(store, f"{prefix}/s/", page_size=1)] == [
        f"{prefix}/s/{i}" for i in (0, 1, 2, 9)
    ]


def test_scan_with_revision_reads_past_one_page(store: Store, prefix: str) -> None:
    for i in range(PAGE_SIZE * 2 + 3):
        store.put(f"{prefix}/many/{i:04d}", b"x")
    entries, revision = store.scan_with_revision(f"{prefix}/many/")
    assert len(entries) == PAGE_SIZE * 2 + 3
    assert [e.key for e in entries] == sorted(e.key for e in entries)
    assert revision == store.status().revision
