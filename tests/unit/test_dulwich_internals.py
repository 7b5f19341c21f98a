"""The private dulwich names maomao relies on still exist in the installed dulwich."""

from __future__ import annotations

import dulwich
import pytest
from dulwich.repo import Repo

from maomao_cli.adapters.git import dulwich_internals


def _version() -> str:
    return ".".join(map(str, dulwich.__version__))


def test_installed_dulwich_has_every_private_name_maomao_uses() -> None:
    missing = dulwich_internals.missing()
    assert not missing, (
        f"dulwich {_version()} no longer has {', '.join(missing)}: "
        "adapt src/maomao_cli/adapters/git/dulwich_internals.py (or pin dulwich)"
    )


def test_a_dropped_name_is_reported_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    owner = next(c for c in Repo.__mro__ if "_change_object_format" in vars(c))
    monkeypatch.delattr(owner, "_change_object_format")
    assert dulwich_internals.missing() == ["dulwich.repo.Repo._change_object_format"]


def test_a_changed_connect_signature_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from dulwich.client import TCPGitClient

    def _connect(self: TCPGitClient, cmd: bytes, path: bytes) -> None:
        raise AssertionError("never called")

    monkeypatch.setattr(TCPGitClient, "_connect", _connect)
    assert [m.split("(")[0] for m in dulwich_internals.missing()] == [
        "dulwich.client.TCPGitClient._connect"
    ]


def test_the_timeout_client_routes_dulwichs_connect_through_the_hook() -> None:
    from maomao_cli.adapters.git.transports import TimeoutTCPGitClient

    # dulwich must find our connect first in the MRO, or git:// has no timeout.
    assert TimeoutTCPGitClient._connect is dulwich_internals.ConnectHook._connect
