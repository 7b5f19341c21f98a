"""The endpoint book (the worker's list of etcd endpoints, refreshed from the cluster's
member list) and the worker's use of it, with a fake member list and the in-memory store."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from maomao_cli.adapters.etcdendpoints import EndpointBook
from maomao_cli.config import EtcdSettings, Settings
from maomao_cli.errors import Unavailable
from maomao_cli.services.worker import Worker
from maomao_cli.store.memory import MemoryStore

H1, H2, H3 = "10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"


class FakeCluster:
    """Answers the member list; records the endpoints each question went through."""

    def __init__(self, members: list[str]) -> None:
        self.members = members
        self.asked_through: list[tuple[str, ...]] = []
        self.down = False

    def __call__(self, settings: EtcdSettings) -> list[str]:
        self.asked_through.append(settings.endpoints)
        if self.down:
            raise Unavailable("etcd is unreachable")
        return list(self.members)


def book_for(cluster: FakeCluster, file: Path | None = None) -> EndpointBook:
    if file is not None:
        file.write_text(f"{H1}\n")
    return EndpointBook(
        EtcdSettings(endpoints=(H1,), ca_file="/ca.crt"),
        endpoints_file=str(file) if file else None,
        list_members=cluster,
    )


def test_a_member_that_joined_later_is_learned_and_written_to_the_file(tmp_path: Path) -> None:
    cluster = FakeCluster([H1, H2, H3])
    file = tmp_path / "endpoints"
    book = book_for(cluster, file)

    assert book.refresh() is True
    assert book.endpoints == (H1, H2, H3)
    assert book.settings().endpoints == (H1, H2, H3)
    assert book.settings().ca_file == "/ca.crt"  # only the endpoints change
    assert file.read_text().split() == [H1, H2, H3]
    assert oct(file.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir()] == ["endpoints"]  # no temporary left


def test_the_next_question_goes_through_the_refreshed_list() -> None:
    cluster = FakeCluster([H1, H2, H3])
    book = book_for(cluster)
    book.refresh()
    cluster.members = [H2, H3]  # host 1 left

    assert book.refresh() is True
    assert cluster.asked_through == [(H1,), (H1, H2, H3)]
    assert book.endpoints == (H2, H3)


@pytest.mark.parametrize("members", [[H1], [H1, H1], []], ids=["same", "duplicates", "empty"])
def test_no_change_keeps_the_list_and_the_file(tmp_path: Path, members: list[str]) -> None:
    file = tmp_path / "endpoints"
    book = book_for(FakeCluster(members), file)
    before = file.stat().st_mtime_ns

    assert book.refresh() is False
    assert book.endpoints == (H1,)
    assert file.stat().st_mtime_ns == before


def test_an_unreachable_cluster_keeps_the_list() -> None:
    cluster = FakeCluster([H1, H2])
    cluster.down = True
    book = book_for(cluster)

    with pytest.raises(Unavailable):
        book.refresh()
    assert book.endpoints == (H1,)


def test_the_worker_refreshes_on_connect_and_periodically_and_survives_failures() -> None:
    store = MemoryStore()
    calls: list[int] = []
    refreshed = threading.Event()

    def refresh() -> bool:
        calls.append(1)
        if len(calls) >= 3:
            refreshed.set()
        raise Unavailable("etcd is unreachable")  # a failed refresh is only logged

    worker = Worker(
        Settings(),
        store_factory=lambda: store,
        make_runs=lambda s: object(),  # type: ignore[arg-type,return-value]
        member="w1",
        refresh_endpoints=refresh,
        endpoints_every=0.05,
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert worker.ready.wait(10)
        assert calls, "refreshed once on connect, before the worker is ready"
        assert refreshed.wait(10), "refreshed again on its timer"
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
