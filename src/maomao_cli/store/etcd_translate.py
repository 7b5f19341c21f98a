"""The store's failures as maomao errors: gRPC and python3-etcd3 exceptions translated by
adapters/etcderrors.py, a compacted watch, and a request that found no answering quorum,
told apart by asking the members."""

from __future__ import annotations

import contextlib
from pathlib import Path

import etcd3.exceptions

from ..adapters import etcderrors
from ..config import EtcdSettings
from ..errors import Compacted, EtcdUnreachable, MaomaoError, Unavailable
from .deadlines import probe_budget


def translate(exc: BaseException, settings: EtcdSettings, *, probe: bool = True) -> MaomaoError:
    if isinstance(exc, MaomaoError):
        return exc
    endpoint = ",".join(settings.endpoints)
    if isinstance(exc, etcd3.exceptions.RevisionCompactedError):
        return Compacted(
            f"etcd at {endpoint}: the revisions watched were compacted "
            f"(the oldest kept is {exc.compacted_revision})",
            int(exc.compacted_revision),
        )
    endpoints = list(settings.endpoints)
    error = etcderrors.from_exception(
        exc,
        endpoint,
        settings.timeout,
        local_hint=etcderrors.nothing_listens(endpoints),
    )
    # A timeout or a missing leader while some member answers: is the quorum gone?
    # (Never when nothing listens on the one local endpoint: that is said as it is.)
    unanswered = type(error) is EtcdUnreachable and error.hint is None
    if probe and (unanswered or type(error) is Unavailable):
        return quorum_probe(settings) or error
    return error


def deadline_exceeded(settings: EtcdSettings) -> MaomaoError:
    """A request that got no answer in time (over the JSON gateway): said as python3-etcd3's
    timeout is, the quorum probed the same way."""
    return translate(etcd3.exceptions.ConnectionTimeoutError(), settings)


def quorum_probe(settings: EtcdSettings) -> MaomaoError | None:
    """NoQuorum when fewer voting members answer than a quorum needs; None when that
    is not the cause (or cannot be told)."""
    from concurrent.futures import ThreadPoolExecutor

    from ..adapters.etcdadmin import Tls, connect, netloc

    # The member list, then every member's status at once: two round trips at most.
    each = probe_budget(settings.timeout) / 2
    try:
        tls = None
        if settings.ca_file:
            tls = Tls(
                ca=Path(settings.ca_file).read_bytes(),
                cert=Path(settings.cert_file).read_bytes() if settings.cert_file else None,
                key=Path(settings.key_file).read_bytes() if settings.key_file else None,
            )
        with connect(list(settings.endpoints), tls, timeout=each) as admin:
            voters = [m for m in admin.members() if not m.is_learner]

            def answers(urls: tuple[str, ...]) -> bool:
                with contextlib.suppress(MaomaoError):
                    admin.status(netloc(urls[0]), timeout=each)
                    return True
                return False

            urls = [m.client_urls for m in voters if m.client_urls]
            with ThreadPoolExecutor(max(len(urls), 1), thread_name_prefix="probe") as pool:
                reachable = sum(pool.map(answers, urls))
    except (MaomaoError, OSError):
        return None
    if voters and reachable < len(voters) // 2 + 1:
        return etcderrors.no_quorum(reachable, len(voters))
    return None
