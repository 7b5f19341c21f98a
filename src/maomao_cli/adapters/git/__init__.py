"""Git adapter for datasets, built on dulwich: clone, pull, commit, push, status, keys.

No `git` binary is needed at run time. SSH goes through the system `ssh` client and keys
are made with `ssh-keygen` from the same package (openssh-client).

`DulwichSync` implements the DatasetSync port (maomao_cli.ports) that services receive.
The modules, one idea each:

- remotes: which transport a URL names, shown without credentials;
- transports, onepass: the dulwich clients with timeouts, and the one-pass first clone;
- translate: dulwich, urllib3 and ssh failures as one-line GitErrors;
- repository, operations: a clone on disk; clone, pull, commit, push, status;
- checkout: writing a fresh clone's tree; sshkeys: dataset keys;
- dulwich_internals: every use of dulwich's private names, checked by a unit test.

dulwich is heavy, so only these modules import it, and importing the package does not:
the operations are loaded on first use (module __getattr__).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from maomao_cli.gitmodels import GitAuth, Progress, PullResult, RepoStatus
from maomao_cli.gitprogress import parse_progress

from .sync import DulwichSync

if TYPE_CHECKING:
    from .operations import (
        DEFAULT_TIMEOUT,
        clone,
        commit_all,
        pull,
        push,
        status,
    )
    from .sshkeys import generate_ssh_key

__all__ = [
    "DEFAULT_TIMEOUT",
    "DulwichSync",
    "GitAuth",
    "Progress",
    "PullResult",
    "RepoStatus",
    "clone",
    "commit_all",
    "generate_ssh_key",
    "parse_progress",
    "pull",
    "push",
    "status",
]

_LAZY = {
    "DEFAULT_TIMEOUT": "operations",
    "clone": "operations",
    "commit_all": "operations",
    "pull": "operations",
    "push": "operations",
    "status": "operations",
    "generate_ssh_key": "sshkeys",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
