"""Builds the services a command needs, lazily, from the effective settings.

Commands ask for what they use (`ctx.registry`, `ctx.runs`...); nothing connects to
etcd or Docker until then, so `maomao --help` and `maomao config` stay instant.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING

from .keys import Keys

if TYPE_CHECKING:
    from . import config
    from .adapters.docker_runner import DockerRunner
    from .adapters.etcdendpoints import EndpointBook
    from .services.datasets import DatasetService
    from .services.registry import Registry
    from .services.runs import RunService
    from .services.schedules import ScheduleService
    from .services.spikes import SpikeService
    from .services.worker import Worker
    from .store.base import Store


class Context:
    def __init__(
        self,
        config_path: str | None = None,
        endpoints: str | None = None,
        prefix: str | None = None,
    ) -> None:
        self._config_path = config_path
        self._endpoints = endpoints
        self._prefix = prefix
        self._store: Store | None = None

    @cached_property
    def settings(self) -> config.Settings:
        from . import config

        return config.load(self._config_path, endpoints=self._endpoints, prefix=self._prefix)

    @cached_property
    def keys(self) -> Keys:
        return Keys(self.settings.etcd.prefix)

    @property
    def store(self) -> Store:
        if self._store is None:
            from .store.etcd import EtcdStore  # grpc is heavy: only when etcd is needed

            self._store = EtcdStore(self.settings.etcd)
        return self._store

    @cached_property
    def registry(self) -> Registry:
        from .services.registry import Registry

        return Registry(self.store, self.keys)

    @cached_property
    def schedules(self) -> ScheduleService:
        from .services.schedules import ScheduleService

        return ScheduleService(self.store, self.keys, self.registry)

    def make_worker(
        self, *, labels: dict[str, str] | None = None, max_parallel: int | None = None
    ) -> Worker:
        """The worker builds its own etcd clients (it reconnects), after any fork."""
        from .services.worker import Worker
        from .store.etcd import EtcdStore

        settings = self.settings
        book: EndpointBook | None = None
        if self._endpoints_from_file(settings):
            # A cluster member's list (`maomao etcd init/join`): kept current from the
            # cluster itself, so members that joined later are known too.
            from .adapters.etcdendpoints import EndpointBook

            book = EndpointBook(settings.etcd, endpoints_file=settings.etcd.endpoints_file)

        def store_factory() -> Store:
            return EtcdStore(book.settings() if book is not None else settings.etcd)

        return Worker(
            settings,
            store_factory=store_factory,
            refresh_endpoints=book.refresh if book is not None else None,
            make_runs=self.make_run_service,
            labels=labels,
            max_parallel=max_parallel,
            remove_leftovers=lambda member: self.runner.remove_containers(
                {"maomao.member": member}
            ),
        )

    def _endpoints_from_file(self, settings: config.Settings) -> bool:
        """Did the endpoints come from [etcd] endpoints_file (no flag, no variable)?"""
        return bool(
            settings.etcd.endpoints_file
            and not self._endpoints
            and not os.environ.get("MAOMAO_ETCD_ENDPOINTS")
        )

    @cached_property
    def runner(self) -> DockerRunner:
        from .adapters.docker_runner import DockerRunner  # docker-py: only when a run needs it

        return DockerRunner(self.settings.docker)

    def make_run_service(self, store: Store) -> RunService:
        """A run service on the given store (the worker passes its own); after-run hooks
        (spike check, dataset commit) are registered here, once for every caller."""
        from .services.runs import RunService
        from .services.spikes import SpikeService

        runs = RunService(store, self.keys, self.settings, self.runner, self.settings.member)
        spikes = SpikeService(store, self.keys, self.settings, self.settings.member)
        runs.add_hook(spikes.check_after_run)
        datasets = self.make_dataset_service(store)
        runs.set_data_dir_resolver(datasets.data_dir)
        runs.add_hook(datasets.after_run)
        return runs

    def make_dataset_service(self, store: Store) -> DatasetService:
        from .adapters.git import DulwichSync  # light: dulwich loads on the first git call
        from .services.datasets import DatasetService
        from .services.registry import Registry

        registry = self.registry if store is self._store else Registry(store, self.keys)
        return DatasetService(self.settings, registry, self.settings.member, DulwichSync())

    @cached_property
    def datasets(self) -> DatasetService:
        return self.make_dataset_service(self.store)

    @cached_property
    def spikes(self) -> SpikeService:
        from .services.spikes import SpikeService

        return SpikeService(self.store, self.keys, self.settings, self.settings.member)

    @cached_property
    def runs(self) -> RunService:
        return self.make_run_service(self.store)

    def close(self) -> None:
        if "runner" in self.__dict__:
            self.runner.close()
        if self._store is not None:
            self._store.close()
            self._store = None
