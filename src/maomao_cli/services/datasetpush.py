"""Getting a dataset's local commits onto its remote: pull, then push; a push the remote
rejects because another member pushed first is fetched, merged and pushed again at once,
up to a bounded number of times, waiting a random part of a doubling backoff between tries
so members that collided do not collide again. Every failure is a log line."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import GitError, PushRejected
from ..gitmodels import GitAuth
from ..models import Dataset
from .datasetnotes import conflict_text

if TYPE_CHECKING:
    from ..ports import DatasetSync

log = logging.getLogger("maomao.datasets")

PUSH_ATTEMPTS = 6
PUSH_BACKOFF = 0.25  # seconds, the first wait's mean
PUSH_BACKOFF_MAX = 4.0

NotePushError = Callable[[str | None], None]


def backoff(attempt: int, random: Callable[[], float]) -> float:
    """Seconds to wait after the attempt-th rejected push: a random part of a
    doubling step, so two members that collided seldom collide again."""
    step = min(PUSH_BACKOFF * 2 ** (attempt - 1), PUSH_BACKOFF_MAX)
    return float(step * (0.5 + random()))


def sync(
    git: DatasetSync,
    dataset: Dataset,
    work: Path,
    *,
    auth: GitAuth,
    timeout: float,
    author: str,
    attempts: int,
    wait: Callable[[int], None],
    note: NotePushError,
) -> str | None:
    """Pull then push the local commits; None when all went, else why not.
    `wait(attempt)` waits out the backoff after a rejected attempt; `note` remembers the
    outcome for `status`."""
    rejected: PushRejected | None = None
    for attempt in range(1, attempts + 1):
        try:
            result = git.pull(
                work, branch=dataset.branch, auth=auth, timeout=timeout, author=author
            )
            if result.conflict:
                text = conflict_text(dataset, result)
                log.warning("%s", text)
                note(text)
                return text
            git.push(work, branch=dataset.branch, auth=auth, timeout=timeout)
        except PushRejected as exc:
            rejected = exc
            log.warning(
                "dataset %s: push attempt %d of %d rejected: %s",
                dataset.name,
                attempt,
                attempts,
                exc.message,
            )
            if attempt < attempts:
                wait(attempt)
            continue
        except GitError as exc:
            log.warning("dataset %s: push failed: %s", dataset.name, exc.message)
            return not_pushed(dataset, exc, note)
        note(None)
        if attempt > 1:
            log.info("dataset %s: pushed at attempt %d", dataset.name, attempt)
        return None
    assert rejected is not None
    return not_pushed(dataset, rejected, note)


def not_pushed(dataset: Dataset, exc: GitError, note: NotePushError) -> str:
    with contextlib.suppress(OSError):
        note(exc.message)
    return (
        f"dataset {dataset.name}: not pushed ({exc.message}); "
        "the commit stays local and is pushed with the next run"
    )
