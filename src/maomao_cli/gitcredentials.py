"""The member's https credentials in its config: `[git.credentials."HOST"]` tables.

A credential belongs to one host ("host", meaning port 443, or "host:port"), and the git
transports send it to that host only, over https, after a 401 (adapters/git/transports).
The former [git] https_username / https_password, which went to every host, are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError
from .gitmodels import HttpsCredential

EXAMPLE = '[git.credentials."git.example.org"] with username = "..." and password = "..."'
_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")


def retired(key: str) -> str:
    """Why the old [git] `key` is refused, and what to write instead."""
    return (
        f"[git] {key} is no longer read: https credentials are per host, sent only to "
        f"that host over https, e.g. {EXAMPLE}"
    )


def parse(where: str, value: Any) -> dict[str, HttpsCredential]:
    """The [git] credentials tables, by lowercase host key."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be tables, e.g. {EXAMPLE}")
    return {
        _host(where, host): _credential(f'{where}."{host}"', entry) for host, entry in value.items()
    }


def with_password(
    credentials: Mapping[str, HttpsCredential], password: str
) -> dict[str, HttpsCredential]:
    """MAOMAO_GIT_PASSWORD: the password of each entry that gives none (so that the file
    need not hold it)."""
    return {
        host: c if c.password else HttpsCredential(c.username, password)
        for host, c in credentials.items()
    }


def shown(credentials: Mapping[str, HttpsCredential], mask: str | None) -> dict[str, Any]:
    """As plain data for `maomao config`, each password replaced by `mask` (None: shown)."""
    return {
        host: {"username": c.username, "password": c.password if mask is None else mask}
        for host, c in credentials.items()
    }


def _host(where: str, host: str) -> str:
    """A host name (or [IPv6]) with an optional port, lowercase; ':443' is dropped."""
    key = host.strip().lower()
    port = key.rpartition(":")[2] if not key.endswith("]") and ":" in key else None
    if not _HOST.fullmatch(key) or (port is not None and not 0 < int(port) < 65536):
        raise ConfigError(
            f'{where}."{host}": expected a host name or host:port, e.g. "git.example.org"'
        )
    return key.removesuffix(":443")


def _credential(where: str, value: Any) -> HttpsCredential:
    if not isinstance(value, dict) or not set(value) <= {"username", "password"}:
        raise ConfigError(f"{where} must be a table with username and password")
    username, password = value.get("username"), value.get("password", "")
    if not isinstance(username, str) or not username or ":" in username:
        raise ConfigError(f"{where} username must be a non-empty string without ':'")
    if not isinstance(password, str):
        raise ConfigError(f"{where} password must be a string")
    return HttpsCredential(username, password)
