"""The etcd endpoints a long-running client (the worker) connects through.

A machine's endpoints file is written when it runs `maomao etcd init/join/leave`; members
that join later are not in it. So the book starts from the configured endpoints and then
asks the cluster itself for its voting members' client endpoints (on every connect and
every minute): a worker started on the founder then knows every member, and losing its
local member does not strand it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..config import EtcdSettings
from ..errors import BadInput

log = logging.getLogger("maomao.endpoints")

# Asks the cluster, through these endpoints, for its voting members' client endpoints.
MemberLister = Callable[[EtcdSettings], list[str]]


def voting_member_endpoints(settings: EtcdSettings) -> list[str]:
    """host:port of every voting member, from the cluster's member list. Learners are left
    out: they refuse most client requests until promoted."""
    from .etcdadmin import Tls, connect, netloc

    tls = None
    if settings.ca_file:
        try:
            tls = Tls(
                ca=Path(settings.ca_file).read_bytes(),
                cert=Path(settings.cert_file).read_bytes() if settings.cert_file else None,
                key=Path(settings.key_file).read_bytes() if settings.key_file else None,
            )
        except OSError as exc:
            raise BadInput(f"cannot read etcd TLS file: {exc}") from None
    with connect(list(settings.endpoints), tls, timeout=min(settings.timeout, 5.0)) as admin:
        members = admin.members()
    return [netloc(url) for m in members if not m.is_learner for url in m.client_urls]


class EndpointBook:
    """The current endpoint list; `refresh()` replaces it with the cluster's own.

    `endpoints_file`, when given, is rewritten with every change, so the other `maomao`
    commands on this machine know the new members too.
    """

    def __init__(
        self,
        settings: EtcdSettings,
        *,
        endpoints_file: str | None = None,
        list_members: MemberLister = voting_member_endpoints,
    ) -> None:
        self._settings = settings
        self._endpoints = tuple(settings.endpoints)
        self._file = Path(endpoints_file).expanduser() if endpoints_file else None
        self._list_members = list_members
        self._lock = threading.Lock()

    @property
    def endpoints(self) -> tuple[str, ...]:
        with self._lock:
            return self._endpoints

    def settings(self) -> EtcdSettings:
        """The etcd settings with the current endpoints: what the next client uses."""
        return replace(self._settings, endpoints=self.endpoints)

    def refresh(self) -> bool:
        """Ask the cluster for its members; True when the list changed. Raises MaomaoError
        when no endpoint answers (the list is kept then)."""
        found = self._list_members(self.settings())
        unique = tuple(dict.fromkeys(found))
        if not unique:
            return False  # a cluster always has a voting member: keep what we know
        with self._lock:
            if set(unique) == set(self._endpoints):
                return False
            before, self._endpoints = self._endpoints, unique
        log.info("etcd endpoints now %s (were %s)", ",".join(unique), ",".join(before))
        if self._file is not None:
            try:
                _write_atomically(self._file, "".join(f"{e}\n" for e in unique))
            except OSError as exc:
                log.warning("could not update %s: %s", self._file, exc)
        return True


def _write_atomically(path: Path, text: str) -> None:
    """Readers (any `maomao` command) see the old or the new list, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
