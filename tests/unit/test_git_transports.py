"""The transports' own rules: the ssh command line maomao builds, the https host a
credential belongs to, and dulwich's requests going through maomao's hook."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from maomao_cli.adapters.git import dulwich_internals
from maomao_cli.adapters.git.transports import HttpClient, OpenSSHVendor, SSHClient, https_host
from maomao_cli.errors import GitError
from maomao_cli.gitmodels import GitAuth


class Spawned(Exception):
    def __init__(self, args: list[str]) -> None:
        self.args_seen = args


@pytest.fixture
def argv(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    seen: list[list[str]] = []

    def popen(args: list[str], **kw: Any) -> Any:
        seen.append(args)
        raise Spawned(args)

    monkeypatch.setattr(subprocess, "Popen", popen)
    return seen


def test_the_ssh_command_line_ends_options_before_the_destination(
    argv: list[list[str]], tmp_path: Path
) -> None:
    vendor = OpenSSHVendor(GitAuth(ssh_key=tmp_path / "key", known_hosts=tmp_path / "kh"), 10)
    with pytest.raises(Spawned):
        vendor.run_command(
            "git.example.org",
            b"git-upload-pack '/x'",
            username="git",
            port=2222,
            ssh_command="touch /tmp/pwned",  # core.sshCommand or GIT_SSH_COMMAND: ignored
        )
    [args] = argv
    assert args[0] == "ssh" and "touch /tmp/pwned" not in " ".join(args)
    assert args[-3:] == ["--", "git@git.example.org", "git-upload-pack '/x'"]
    assert args.index("--") == len(args) - 3


@pytest.mark.parametrize(
    ("host", "user"),
    [
        ("-oProxyCommand=id", None),
        ("host", "-oProxyCommand=id"),
        ("host", "a b"),
        ("host", "us$(id)"),
        ("ho st", None),
        ("host;id", None),
        ("", None),
    ],
)
def test_an_ssh_user_or_host_that_is_no_name_is_refused(
    argv: list[list[str]], host: str, user: str | None
) -> None:
    with pytest.raises(GitError, match="refusing SSH"):
        OpenSSHVendor(GitAuth(), 10).run_command(host, b"git-upload-pack '/x'", username=user)
    assert argv == []


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://git.example.org/x.git", "git.example.org"),
        ("https://Git.Example.ORG:443/x.git", "git.example.org"),
        ("https://127.0.0.1:8443/x.git", "127.0.0.1:8443"),
        ("https://[::1]:8443/x.git", "[::1]:8443"),
        ("https://user:pw@git.example.org/x", "git.example.org"),
        ("http://git.example.org/x.git", None),  # never over plain http
        ("git://git.example.org/x.git", None),
        ("https:///x", None),
    ],
)
def test_the_host_a_credential_is_for(url: str, host: str | None) -> None:
    assert https_host(url) == host


def test_dulwichs_requests_go_through_maomaos_hook() -> None:
    # dulwich must find our _http_request first in the MRO, or it would send credentials
    # the way it likes (before any challenge).
    assert HttpClient._http_request is dulwich_internals.HttpRequestHook._http_request
    assert not dulwich_internals.missing()


def test_ssh_connections_go_through_the_hook_that_closes_them() -> None:
    assert SSHClient._connect is dulwich_internals.ConnectHook._connect
