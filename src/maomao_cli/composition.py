"""The composition root: the one place that picks concrete adapters and builds services.

`Services` is built once per command (by the CLI callback) or once per server (`maomao
serve`), from the effective settings. Every backend can be injected (a memory store, a
scripted runner, a fake git, a fake clock), which is how the in-process tests run the
real commands without etcd or Docker. Whatever is not injected is built on first use,
so `maomao --help` and `maomao config` connect to nothing and import no heavy library.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from functools import cached_property, partial
from typing import TYPE_CHECKING

from .keys import Keys

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from .adapters.metrics import ServeMetrics
    from .config import Settings
    from .etcdvalues import Tls
    from .ports import Clock, ConnectAdmin, ContainerRunner, DatasetSync, EtcdAdmin
    from .services.audit import AuditService
    from .services.cluster import ClusterService
    from .services.coverage import CoverageService
    from .services.datasets import DatasetService
    from .services.members import MemberService
    from .services.registry import Registry
    from .services.runlogs import RunLogService
    from .services.runrecords import RunRecords
    from .services.runs import RunService
    from .services.schedules import ScheduleService
    from .services.spikes import SpikeService
    from .services.worker import Worker
    from .services.worker.observer import Observing, WorkerObserver
    from .store.base import Store


class Services:
    def __init__(
        self,
        settings: Settings | Callable[[], Settings],
        *,
        store: Store | None = None,
        store_factory: Callable[[], Store] | None = None,
        runner: ContainerRunner | None = None,
        git: DatasetSync | None = None,
        connect_admin: ConnectAdmin | None = None,
        clock: Clock | None = None,
        endpoints_from_file: bool | None = None,
    ) -> None:
        """`settings` may be a loader, called on first use (a bad config file then fails
        inside the command, where the error boundary reports it). `store_factory` makes
        the stores a worker reconnects with; by default, etcd clients on the settings."""
        self._settings_source = settings
        self._store = store
        self._owns_store = store is None
        self._store_factory = store_factory
        self._runner = runner
        self._owns_runner = runner is None
        self._git = git
        self._connect_admin = connect_admin
        self._clock = clock
        self._endpoints_from_file = endpoints_from_file

    @classmethod
    def from_options(
        cls, config_path: str | None, endpoints: str | None, prefix: str | None
    ) -> Services:
        """What the CLI's global options ask for: the config file, etcd endpoints, prefix."""

        def load() -> Settings:
            from . import config

            return config.load(config_path, endpoints=endpoints, prefix=prefix)

        return cls(load, endpoints_from_file=None if endpoints is None else False)

    @cached_property
    def settings(self) -> Settings:
        source = self._settings_source
        return source if not callable(source) else source()

    @cached_property
    def keys(self) -> Keys:
        return Keys(self.settings.etcd.prefix)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = self.new_store()
        return self._store

    def new_store(self, *, patient: bool = False) -> Store:
        """A fresh store client (the worker makes its own, after any fork, and remakes
        them when it reconnects); `patient`: a daemon's (see EtcdStore)."""
        if self._store_factory is not None:
            return self._store_factory()
        if not self._owns_store and self._store is not None:
            return self._store  # an injected store (tests): everyone shares it
        settings = self.settings.etcd

        def grpc_store() -> Store:
            from .store.etcd import EtcdStore  # grpc is heavy: only when etcd is needed

            return EtcdStore(settings, patient=patient)

        if patient:
            return grpc_store()
        # A command reads over etcd's JSON gateway, without importing gRPC (see there).
        from .store.etcd_gateway import GatewayStore

        return GatewayStore(settings, grpc_store)

    @property
    def runner(self) -> ContainerRunner:
        if self._runner is None:
            from .adapters.docker_runner import DockerRunner  # docker-py: only for runs

            self._runner = DockerRunner(self.settings.docker)
        return self._runner

    @property
    def clock(self) -> Clock:
        if self._clock is None:
            from .clock import SystemClock

            self._clock = SystemClock()
        return self._clock

    @property
    def git(self) -> DatasetSync:
        if self._git is None:
            from .adapters.git import DulwichSync  # dulwich itself loads on the first git call

            self._git = DulwichSync()
        return self._git

    @cached_property
    def cluster(self) -> ClusterService:
        """The collaboration's etcd cluster as this machine's member sees it."""
        from .services.cluster import ClusterService

        return ClusterService(self.settings, self._connect_admin or _connect_etcd_admin)

    @cached_property
    def registry(self) -> Registry:
        from .services.registry import Registry

        return Registry(self.store, self.keys, allow_local_urls=self.settings.git.allow_local)

    @cached_property
    def schedules(self) -> ScheduleService:
        from .services.schedules import ScheduleService

        return ScheduleService(
            self.store, self.keys, self.registry, settings=self.settings, clock=self._clock
        )

    @cached_property
    def coverage(self) -> CoverageService:
        from .services.coverage import CoverageService

        return CoverageService(self.store, self.keys, self.settings, self._clock)

    @cached_property
    def datasets(self) -> DatasetService:
        return self.make_dataset_service(self.store)

    @cached_property
    def spikes(self) -> SpikeService:
        from .services.spikes import SpikeService

        return SpikeService(self.store, self.keys, self.settings, self.settings.member)

    @cached_property
    def audit(self) -> AuditService:
        from .services.audit import AuditService

        return AuditService(self.store, self.keys, notify=self.spikes.notify_event)

    @cached_property
    def members(self) -> MemberService:
        from .services.members import MemberService

        return MemberService(self.store, self.keys)

    @cached_property
    def runs(self) -> RunService:
        # Manual runs (`maomao run`, POST /v1/runs) hold a lease of their own.
        return self.make_run_service(self.store, hold_runs=True)

    @cached_property
    def run_records(self) -> RunRecords:
        """Run records, read only: listing a run needs neither the runner nor the after-run
        hooks, so it imports none of them (see bench/cli_latency.py)."""
        from .services.fulllogs import FullLogs
        from .services.runrecords import RunRecords

        settings = self.settings
        full_logs = FullLogs(
            settings.data.state_path / "logs",
            settings.worker.full_log_bytes,
            clock=self.clock.now,
        )
        return RunRecords(
            self.store, self.keys, settings, clock=self.clock.now, full_logs=full_logs
        )

    @cached_property
    def run_logs(self) -> RunLogService:
        """Full run logs: this host's, or fetched from the member that ran the run."""
        from .services.runlogs import RunLogService

        return RunLogService(
            self.runs,
            self.store,
            self.keys,
            clock=self.clock,
            wait=self.settings.worker.full_log_wait,
        )

    def make_run_service(
        self,
        store: Store,
        *,
        on_spike: Callable[[str], None] | None = None,
        hold_runs: bool = False,
    ) -> RunService:
        """A run service on the given store (the worker passes its own); the after-run
        hooks (spike check, dataset commit) are registered here, once for every caller."""
        from .services.audit import AuditService
        from .services.runs import RunService
        from .services.spikes import SpikeService

        runs = RunService(
            store, self.keys, self.settings, self.runner, self.settings.member, hold_runs=hold_runs
        )
        spikes = SpikeService(store, self.keys, self.settings, self.settings.member)
        if on_spike is not None:
            spikes.on_stored = lambda spike: on_spike(spike.tool)
        runs.add_hook(spikes.check_after_run, prepare=spikes.prepare)
        datasets = self.make_dataset_service(store)
        runs.set_data_dir_resolver(datasets.data_dir)
        runs.set_run_guard(datasets.run_lock)
        runs.add_hook(datasets.after_run)
        # Last: it compares the records the hooks before it completed.
        runs.add_hook(AuditService(store, self.keys, notify=spikes.notify_event).after_run)
        return runs

    def make_dataset_service(self, store: Store) -> DatasetService:
        from .services.datasets import DatasetService
        from .services.registry import Registry
        from .services.runrecords import mark_pushed

        registry = (
            self.registry
            if store is self._store
            else Registry(store, self.keys, allow_local_urls=self.settings.git.allow_local)
        )
        service = DatasetService(self.settings, registry, self.settings.member, self.git)
        service.on_pushed = partial(mark_pushed, store, self.keys)
        return service

    @cached_property
    def serve_metrics(self) -> ServeMetrics:
        """`maomao serve`'s /metrics page."""
        from .adapters.metrics import ServeMetrics

        return ServeMetrics(check_etcd=lambda: self.store.get(self.keys.tools()))

    def observe_worker(self, metrics: str | None = None) -> Observing:
        """The worker's observers: Prometheus metrics on `metrics` (or [worker] metrics)
        when set, systemd notifications when started by systemd (NOTIFY_SOCKET)."""
        from .services.worker.observer import Observers, Observing

        observing = Observing()
        found: list[WorkerObserver] = []
        where = metrics if metrics is not None else self.settings.worker.metrics
        if where:
            from .adapters.metrics import WorkerMetrics, listen_address, serve_metrics

            address = listen_address(where, "--metrics" if metrics else "[worker] metrics")
            recorder = WorkerMetrics(now=self.clock.now)
            server = serve_metrics(recorder.registry, address)
            observing.closers.append(server.close)
            observing.metrics_address = str(replace(address, port=server.port))
            found.append(recorder)
        from .adapters.systemd import SystemdNotify

        notify = SystemdNotify.from_environment()
        if notify is not None:
            observing.closers.append(notify.close)
            found.append(notify)
        if found:
            observing.observer = Observers(found)
        return observing

    def make_worker(
        self,
        *,
        labels: dict[str, str] | None = None,
        max_parallel: int | None = None,
        observer: WorkerObserver | None = None,
    ) -> Worker:
        from .services.fulllogs import FullLogs
        from .services.worker import Worker
        from .services.worker.loganswers import LogAnswers

        refresh: Callable[[], bool] | None = None
        store_factory: Callable[[], Store] = partial(self.new_store, patient=True)
        if self._store_factory is None and self._uses_endpoints_file():
            # A cluster member's list (`maomao etcd init/join`): kept current from the
            # cluster itself, so members that joined later are known too.
            from .adapters.etcdendpoints import EndpointBook
            from .store.etcd import EtcdStore

            settings = self.settings.etcd
            book = EndpointBook(settings, endpoints_file=settings.endpoints_file)
            refresh = book.refresh

            def store_factory() -> Store:
                return EtcdStore(book.settings(), patient=True)

        worker = self.settings.worker
        log_answers = LogAnswers(
            store_factory=store_factory,
            keys=self.keys,
            member=self.settings.member,
            logs=FullLogs(
                self.settings.data.state_path / "logs",
                worker.full_log_bytes,
                clock=self.clock.now,
            ),
            clock=self.clock,
            max_age=worker.runs_max_age,
        )
        return Worker(
            self.settings,
            store_factory=store_factory,
            log_answers=log_answers,
            refresh_endpoints=refresh,
            make_runs=(
                self.make_run_service
                if observer is None
                else lambda store: self.make_run_service(store, on_spike=observer.spike)
            ),
            observer=observer,
            labels=labels,
            max_parallel=max_parallel,
            clock=self.clock,
            remove_leftovers=lambda member: self.runner.remove_containers(
                {"maomao.worker": member}
            ),
            outbox_dir=self.settings.data.state_path,
            freeze_after_load=True,  # `maomao worker` is a process of its own
        )

    def _uses_endpoints_file(self) -> bool:
        """Did the endpoints come from [etcd] endpoints_file (no flag, no variable)?"""
        if not self.settings.etcd.endpoints_file or self._endpoints_from_file is False:
            return False
        return not os.environ.get("MAOMAO_ETCD_ENDPOINTS")

    def close(self) -> None:
        """Close what this object built (injected backends belong to whoever made them)."""
        if self._owns_runner and self._runner is not None:
            close = getattr(self._runner, "close", None)
            if close is not None:
                close()
        if self._owns_store and self._store is not None:
            self._store.close()
            self._store = None


def _connect_etcd_admin(
    endpoints: list[str], tls: Tls | None, timeout: float = 5.0
) -> AbstractContextManager[EtcdAdmin]:
    from .adapters.etcdadmin import connect  # grpc is heavy: only when etcd is asked

    return connect(endpoints, tls, timeout)
