"""Membership changes against a scripted etcd administration port on a fake clock: which
refusals are waited out (by type), and what a refused change leaves behind."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from maomao_cli.config import DataSettings, Settings, WorkerSettings
from maomao_cli.errors import (
    AlreadyExists,
    BadInput,
    LearnerNotInSync,
    MaomaoError,
    MemberNotReady,
    Unavailable,
    UnhealthyCluster,
)
from maomao_cli.etcdvalues import EndpointStatus, Member, Tls
from maomao_cli.services.cluster import Clock, ClusterPaths, ClusterService, MemberConfig
from maomao_cli.services.cluster.joining import PROMOTION_WAITS
from maomao_cli.services.cluster.state import save_member, write_endpoints
from maomao_cli.services.cluster.waiting import retrying


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> Clock:
        return Clock(monotonic=self.monotonic, sleep=self.sleep)


def scripted(*outcomes: MaomaoError | str) -> Callable[[], str]:
    """A change that raises or returns each outcome in turn."""
    queue = list(outcomes)

    def change() -> str:
        outcome = queue.pop(0)
        if isinstance(outcome, MaomaoError):
            raise outcome
        return outcome

    return change


@pytest.mark.parametrize("refusal", [LearnerNotInSync, MemberNotReady, UnhealthyCluster])
def test_a_promotion_waits_out_what_passes_by_itself(refusal: type[MaomaoError]) -> None:
    fake = FakeClock()
    change = scripted(refusal("not yet"), refusal("not yet"), "promoted")
    result = retrying(
        change, retry_on=PROMOTION_WAITS, deadline=fake.now + 10, interval=0.5, clock=fake.clock()
    )
    assert result == "promoted"
    assert fake.slept == [0.5, 0.5]


@pytest.mark.parametrize(
    "failure",
    [
        MaomaoError("etcd at e: etcdserver: can only promote a learner member"),
        AlreadyExists("etcd at e: etcdserver: member ID already exist"),
        Unavailable("etcd at e is unreachable: connection refused"),
    ],
)
def test_a_promotion_gives_up_at_once_on_anything_else(failure: MaomaoError) -> None:
    fake = FakeClock()
    with pytest.raises(type(failure)) as raised:
        retrying(
            scripted(failure, "never"),
            retry_on=PROMOTION_WAITS,
            deadline=fake.now + 10,
            interval=0.5,
            clock=fake.clock(),
        )
    assert raised.value is failure
    assert fake.slept == []


def test_the_last_refusal_is_raised_at_the_deadline() -> None:
    fake = FakeClock()
    refusals = [LearnerNotInSync(f"lagging {i}") for i in range(10)]
    with pytest.raises(LearnerNotInSync, match="lagging 4"):
        retrying(
            scripted(*refusals),
            retry_on=PROMOTION_WAITS,
            deadline=fake.now + 2,
            interval=0.5,
            clock=fake.clock(),
        )
    assert fake.now == 1002.0


# ---------------------------------------------------------------- the service, scripted etcd

ME = Member(1, "a", ("http://10.0.0.1:2380",), ("http://10.0.0.1:2379",), False)
B = Member(2, "b", ("http://10.0.0.2:2380",), ("http://10.0.0.2:2379",), False)
C = Member(3, "c", ("http://10.0.0.3:2380",), ("http://10.0.0.3:2379",), False)


class ScriptedAdmin:
    """The administration port over a member list; membership changes fail as scripted."""

    def __init__(self, members: list[Member], *, add: list[MaomaoError] | None = None) -> None:
        self.endpoints: list[str] = []
        self.list = members
        self.add_failures = add or []
        self.remove_failures: list[MaomaoError] = []
        self.removed: list[int] = []
        self.connected: list[list[str]] = []

    def connect(
        self, endpoints: list[str], tls: Tls | None, timeout: float = 5.0
    ) -> contextlib.AbstractContextManager[ScriptedAdmin]:
        @contextlib.contextmanager
        def session() -> Iterator[ScriptedAdmin]:
            self.connected.append(list(endpoints))
            self.endpoints = list(endpoints)
            yield self

        return session()

    def members(self) -> list[Member]:
        return list(self.list)

    def add_member(self, peer_urls: list[str], *, learner: bool) -> tuple[Member, list[Member]]:
        if self.add_failures:
            raise self.add_failures.pop(0)
        added = Member(9, "", tuple(peer_urls), (), learner)
        self.list.append(added)
        return added, list(self.list)

    def remove_member(self, member_id: int) -> list[Member]:
        if self.remove_failures:
            raise self.remove_failures.pop(0)
        self.removed.append(member_id)
        self.list = [m for m in self.list if m.id != member_id]
        return list(self.list)

    def promote_member(self, member_id: int) -> list[Member]:
        raise AssertionError("not scripted")

    def status(self, endpoint: str, timeout: float | None = None) -> EndpointStatus:
        raise AssertionError("not scripted")

    def healthy(self, endpoint: str, timeout: float | None = None) -> bool:
        return True


def settings_in(tmp_path: Path, member: str = "new") -> Settings:
    return Settings(
        data=DataSettings(importdir=str(tmp_path / "data"), statedir=str(tmp_path / "state")),
        worker=WorkerSettings(member=member),
    )


def test_join_reports_a_member_added_meanwhile_and_removes_nobody(tmp_path: Path) -> None:
    admin = ScriptedAdmin(
        [ME], add=[UnhealthyCluster("etcd at e is unreachable: unhealthy cluster")]
    )
    admin.add_failures.append(AlreadyExists("etcd at e: etcdserver: member ID already exist"))
    fake = FakeClock()
    service = ClusterService(settings_in(tmp_path), admin.connect, clock=fake.clock())
    with pytest.raises(BadInput, match="already exists") as raised:
        service.join("10.0.0.1:2379", listen="10.0.0.9", tls=False)
    assert "a member with peer URL http://10.0.0.9:2380 already exists" in raised.value.message
    assert admin.removed == []  # it is someone else's: nothing of ours to undo
    assert fake.slept == [0.5]  # the unhealthy cluster was waited out first
    assert not service.has_member()


def test_join_refuses_a_taken_name_even_with_force(tmp_path: Path) -> None:
    admin = ScriptedAdmin([ME, B])
    service = ClusterService(settings_in(tmp_path, member="b"), admin.connect)
    with pytest.raises(BadInput, match="cannot join: a member named 'b' already exists"):
        service.join("10.0.0.1:2379", listen="10.0.0.9", tls=False, force=True)


def joined_member(tmp_path: Path) -> ClusterPaths:
    paths = ClusterPaths(tmp_path / "state" / "cluster")
    member = MemberConfig(
        name="a",
        host="10.0.0.1",
        client_port=2379,
        peer_port=2380,
        tls=False,
        initial_cluster="a=http://10.0.0.1:2380",
        initial_state="new",
        cluster_token="t",
        member_id=ME.id,
    )
    save_member(paths, member)
    write_endpoints(paths, ["10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"])
    return paths


def test_leave_waits_out_an_unhealthy_cluster_then_removes_itself(tmp_path: Path) -> None:
    paths = joined_member(tmp_path)
    admin = ScriptedAdmin([ME, B, C])
    admin.remove_failures = [UnhealthyCluster("etcd at e is unreachable: unhealthy cluster")] * 3
    fake = FakeClock()
    service = ClusterService(settings_in(tmp_path, member="a"), admin.connect, clock=fake.clock())
    left = service.leave()
    assert (left.name, left.remaining, left.stopped_pid) == ("a", ["b", "c"], None)
    assert admin.removed == [ME.id]
    assert fake.slept == [0.5, 0.5, 0.5]
    # The others are asked first, and the change goes through them only.
    assert admin.connected == [["10.0.0.2:2379", "10.0.0.3:2379", "10.0.0.1:2379"]]
    assert admin.endpoints == ["10.0.0.2:2379", "10.0.0.3:2379"]
    assert not paths.member.exists()
    assert paths.endpoints.read_text().split() == ["10.0.0.2:2379", "10.0.0.3:2379"]


def test_leave_removes_the_ca_key_and_the_join_token(tmp_path: Path) -> None:
    paths = joined_member(tmp_path)
    for secret in (paths.ca_key, paths.token, paths.ca_cert, paths.key("client")):
        secret.write_text("secret")
    service = ClusterService(settings_in(tmp_path, member="a"), ScriptedAdmin([ME, B, C]).connect)
    left = service.leave()
    assert sorted(left.removed_files) == sorted([str(paths.ca_key), str(paths.token)])
    assert not paths.ca_key.exists() and not paths.token.exists()
    # What a client of the cluster still needs stays.
    assert paths.ca_cert.exists() and paths.key("client").exists()


def test_leave_does_not_wait_out_too_few_started_members(tmp_path: Path) -> None:
    joined_member(tmp_path)
    admin = ScriptedAdmin([ME, B, C])
    admin.remove_failures = [MemberNotReady("etcd at e: etcdserver: re-configuration failed")]
    fake = FakeClock()
    service = ClusterService(settings_in(tmp_path, member="a"), admin.connect, clock=fake.clock())
    with pytest.raises(MemberNotReady):
        service.leave()
    assert fake.slept == []
    assert service.has_member()  # nothing changed: still a member
