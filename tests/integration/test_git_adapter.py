"""The git adapter against real servers on loopback: file, git daemon, smart HTTP(S) and sshd."""

# The server fixtures are imported by name below, so test arguments shadow them.
# ruff: noqa: F811

from __future__ import annotations

import socket
import stat
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitservers import (  # noqa: F401  (fixtures)
    HTTP_PASSWORD,
    HTTP_USER,
    GitHttp,
    SeedRepo,
    Sshd,
    git,
    git_daemon,
    git_http,
    git_https,
    git_root,
    seed_repo,
    sshd,
)
from maomao_cli.adapters import git as g
from maomao_cli.adapters import packindex
from maomao_cli.errors import GitError
from maomao_cli.gitmodels import HttpsCredential

PROTOCOLS = ["path", "file", "git", "https", "ssh"]
TIMEOUT = 20.0
LOCAL = g.GitAuth(allow_local=True)  # local paths and file:// are refused without it


def https_auth(
    server: GitHttp, password: str = HTTP_PASSWORD, host: str | None = None
) -> g.GitAuth:
    """The member's own credential for the https server, and its self-signed CA."""
    assert server.tls is not None
    credential = HttpsCredential(HTTP_USER, password)
    return g.GitAuth(https={host or server.host: credential}, ca_file=server.tls.cert)


def remote(seed: SeedRepo, protocol: str, request: pytest.FixtureRequest) -> tuple[str, g.GitAuth]:
    """URL and credentials for one protocol (ssh starts sshd only when asked for)."""
    if protocol == "ssh":
        sshd: Sshd = request.getfixturevalue("sshd")
        return sshd.url(seed.path), g.GitAuth(ssh_key=sshd.client_key, known_hosts=sshd.known_hosts)
    if protocol == "https":
        return seed.urls["https"], https_auth(request.getfixturevalue("git_https"))
    if protocol in ("path", "file"):
        return seed.urls[protocol], LOCAL
    return seed.urls[protocol], g.GitAuth()


def server_log(seed: SeedRepo) -> list[str]:
    return git("log", "--format=%s", "main", cwd=seed.path).splitlines()


def one_line(err: GitError) -> str:
    assert "\n" not in err.message, err.message
    return err.message


# ---------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_clone_pull_commit_push_round_trip(
    protocol: str, seed_repo: SeedRepo, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url, auth = remote(seed_repo, protocol, request)
    work = tmp_path / "clone"
    lines: list[str] = []
    g.clone(url, work, branch="main", depth=None, auth=auth, timeout=TIMEOUT, progress=lines.append)
    assert (work / "README.md").read_text() == "seed dataset\n"
    assert (work / "data" / "control-2024-01-01.csv").read_text() == "1.0\n"
    assert any(g.parse_progress(line) for line in lines), lines

    # Someone else pushes with the git command line; our pull fast-forwards.
    other = seed_repo.fresh_clone(tmp_path / "other")
    (other / "theirs.txt").write_text("from git\n")
    git("add", "-A", cwd=other)
    git("commit", "-q", "-m", "theirs", cwd=other)
    git("push", "-q", "origin", "main", cwd=other)
    pulled = g.pull(work, branch="main", auth=auth, timeout=TIMEOUT, progress=None)
    assert pulled.outcome == "fast-forward"
    assert pulled.head == seed_repo.head()
    assert (work / "theirs.txt").read_text() == "from git\n"

    # A run writes a new file, changes one and deletes one; commit and push.
    (work / "data" / "control-2024-01-02.csv").write_text("2.0\n")
    (work / "README.md").write_text("seed dataset, updated\n")
    (work / "theirs.txt").unlink()
    assert sorted(g.status(work, branch="main").changed_files) == [
        "README.md",
        "data/control-2024-01-02.csv",
        "theirs.txt",
    ]
    sha = g.commit_all(work, "tool dummy run r1", "member-a")
    assert sha is not None
    st = g.status(work, branch="main")
    assert (st.ahead, st.changed_files) == (1, [])
    g.push(work, branch="main", auth=auth, timeout=TIMEOUT, progress=None)
    assert g.status(work, branch="main").ahead == 0

    assert seed_repo.head() == sha
    fresh = seed_repo.fresh_clone(tmp_path / "fresh")
    assert (fresh / "data" / "control-2024-01-02.csv").read_text() == "2.0\n"
    assert (fresh / "README.md").read_text() == "seed dataset, updated\n"
    assert not (fresh / "theirs.txt").exists()
    author = git("log", "-1", "--format=%an <%ae>|%s", cwd=fresh)
    assert author == "member-a <member-a@maomao>|tool dummy run r1"


def test_commit_all_nothing_changed_and_gitignore(seed_repo: SeedRepo, tmp_path: Path) -> None:
    work = tmp_path / "clone"
    g.clone(seed_repo.urls["file"], work, auth=LOCAL, timeout=TIMEOUT)
    assert g.commit_all(work, "nothing", "member-a") is None
    (work / ".gitignore").write_text("*.tmp\n")
    (work / "scratch.tmp").write_text("ignored\n")
    sha = g.commit_all(work, "ignore temp files", "Member A <a@example.org>")
    assert sha is not None
    files = git("ls-tree", "-r", "--name-only", sha, cwd=work).splitlines()
    assert ".gitignore" in files and "scratch.tmp" not in files
    assert g.commit_all(work, "again", "member-a") is None


# ---------------------------------------------------------------------------- two members


@pytest.mark.parametrize("protocol", ["git", "https", "ssh"])
def test_two_members_push_in_turn_merge_without_loss(
    protocol: str, seed_repo: SeedRepo, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url, auth = remote(seed_repo, protocol, request)
    a, b = tmp_path / "a", tmp_path / "b"
    g.clone(url, a, auth=auth, timeout=TIMEOUT)
    g.clone(url, b, auth=auth, timeout=TIMEOUT)

    (a / "data" / "control-a.csv").write_text("1\n")
    sha_a = g.commit_all(a, "run by a", "member-a")
    assert g.pull(a, auth=auth, timeout=TIMEOUT).outcome == "up-to-date"
    g.push(a, auth=auth, timeout=TIMEOUT)

    (b / "data" / "control-b.csv").write_text("2\n")
    sha_b = g.commit_all(b, "run by b", "member-b")
    with pytest.raises(GitError) as rejected:  # b is behind: a plain push must not clobber a
        g.push(b, auth=auth, timeout=TIMEOUT)
    assert "pull first" in (rejected.value.hint or "")
    merged = g.pull(b, auth=auth, timeout=TIMEOUT, author="member-b")
    assert merged.outcome == "merged"
    g.push(b, auth=auth, timeout=TIMEOUT)

    assert g.pull(a, auth=auth, timeout=TIMEOUT).outcome == "fast-forward"
    assert (a / "data" / "control-b.csv").read_text() == "2\n"
    fresh = seed_repo.fresh_clone(tmp_path / "fresh")
    assert (fresh / "data" / "control-a.csv").read_text() == "1\n"
    assert (fresh / "data" / "control-b.csv").read_text() == "2\n"
    history = git("rev-list", "main", cwd=fresh).splitlines()
    assert sha_a in history and sha_b in history and seed_repo.seed in history
    parents = git("log", "-1", "--format=%P", cwd=fresh).split()
    assert set(parents) == {sha_a, sha_b}


def test_real_conflict_keeps_both_local_commits(seed_repo: SeedRepo, tmp_path: Path) -> None:
    url, auth = seed_repo.urls["git"], g.GitAuth()
    a, b = tmp_path / "a", tmp_path / "b"
    g.clone(url, a, auth=auth, timeout=TIMEOUT)
    g.clone(url, b, auth=auth, timeout=TIMEOUT)
    (a / "README.md").write_text("a's version\n")
    sha_a = g.commit_all(a, "a edits readme", "member-a")
    g.push(a, auth=auth, timeout=TIMEOUT)

    (b / "README.md").write_text("b's version\n")
    (b / "data" / "control-b.csv").write_text("2\n")
    sha_b = g.commit_all(b, "b edits readme", "member-b")
    result = g.pull(b, auth=auth, timeout=TIMEOUT)

    assert result.conflict and result.conflicts == ("README.md",)
    assert (result.head, result.remote) == (sha_b, sha_a)
    # Nothing local moved: b's commit is HEAD, its files are in the work tree, clean.
    assert git("rev-parse", "HEAD", cwd=b) == sha_b
    assert (b / "README.md").read_text() == "b's version\n"
    assert (b / "data" / "control-b.csv").read_text() == "2\n"
    st = g.status(b)
    assert (st.ahead, st.behind, st.changed_files) == (1, 1, [])
    with pytest.raises(GitError):
        g.push(b, auth=auth, timeout=TIMEOUT)
    # The remote still holds a's commit, and b's commit is still in b's history.
    assert seed_repo.head() == sha_a
    assert sha_b in git("rev-list", "HEAD", cwd=b)


# ---------------------------------------------------------------------------- failures


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens there once closed


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts connections and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(sock.getsockname()[1])
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


@pytest.mark.parametrize(
    "template",
    ["git://127.0.0.1:{port}/x.git", "http://127.0.0.1:{port}/x.git", "ssh://u@127.0.0.1:{port}/x"],
)
def test_closed_port_fails_with_one_line(template: str, closed_port: int, tmp_path: Path) -> None:
    url = template.format(port=closed_port)
    dest = tmp_path / "dest"
    with pytest.raises(GitError) as err:
        g.clone(url, dest, auth=g.GitAuth(known_hosts=tmp_path / "kh"), timeout=5)
    line = one_line(err.value)
    assert url in line and "refused" in line
    assert not dest.exists()


@pytest.mark.parametrize(
    "template",
    ["git://127.0.0.1:{port}/x.git", "http://127.0.0.1:{port}/x.git", "ssh://u@127.0.0.1:{port}/x"],
)
def test_silent_server_times_out(template: str, silent_port: int, tmp_path: Path) -> None:
    url = template.format(port=silent_port)
    dest = tmp_path / "dest"
    dest.mkdir()  # an existing empty directory is kept, and left empty
    with pytest.raises(GitError) as err:
        g.clone(url, dest, auth=g.GitAuth(known_hosts=tmp_path / "kh"), timeout=1)
    line = one_line(err.value)
    assert url in line and "timed out" in line
    assert dest.is_dir() and list(dest.iterdir()) == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wrong_path_fails_with_one_line(
    protocol: str, seed_repo: SeedRepo, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url, auth = remote(seed_repo, protocol, request)
    url = url.replace(seed_repo.name, "no-such-repo.git")
    dest = tmp_path / "dest"
    with pytest.raises(GitError) as err:
        g.clone(url, dest, auth=auth, timeout=TIMEOUT)
    line = one_line(err.value)
    assert "no-such-repo.git" in line
    assert "no git repository" in line, line
    assert not dest.exists()


def test_unknown_ssh_host_key_refused_with_hint(
    seed_repo: SeedRepo, sshd: Sshd, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    auth = g.GitAuth(ssh_key=sshd.client_key, known_hosts=known_hosts)
    url = sshd.url(seed_repo.path)
    with pytest.raises(GitError) as err:
        g.clone(url, tmp_path / "dest", auth=auth, timeout=TIMEOUT)
    assert "unknown SSH host key" in one_line(err.value) and url in err.value.message
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {known_hosts}" in (err.value.hint or "")
    assert not (tmp_path / "dest").exists()

    # Trust on first use only when configured: then the key is recorded.
    trusting = g.GitAuth(ssh_key=sshd.client_key, known_hosts=known_hosts, trust_new_hosts=True)
    g.clone(url, tmp_path / "dest", auth=trusting, timeout=TIMEOUT)
    assert (tmp_path / "dest" / "README.md").exists()
    host_key = (sshd.home / "ssh_host_ed25519_key.pub").read_text().split()[1]
    assert host_key in known_hosts.read_text()


def test_ssh_wrong_key_is_an_auth_failure(seed_repo: SeedRepo, sshd: Sshd, tmp_path: Path) -> None:
    other_key = tmp_path / "keys" / "other"
    g.generate_ssh_key(other_key, "not-authorized")
    auth = g.GitAuth(ssh_key=other_key, known_hosts=sshd.known_hosts)
    with pytest.raises(GitError) as err:
        g.clone(sshd.url(seed_repo.path), tmp_path / "dest", auth=auth, timeout=TIMEOUT)
    assert "authentication failed" in one_line(err.value)


def test_https_wrong_password_is_an_auth_failure_and_not_shown(
    seed_repo: SeedRepo, git_https: GitHttp, tmp_path: Path
) -> None:
    auth = https_auth(git_https, password="wrong-password-123")
    with pytest.raises(GitError) as err:
        g.clone(seed_repo.urls["https"], tmp_path / "dest", auth=auth, timeout=TIMEOUT)
    assert "authentication failed" in one_line(err.value)
    assert "wrong-password-123" not in err.value.message + (err.value.hint or "")
    assert "wrong-password-123" not in repr(auth)


def test_https_credential_is_sent_only_after_the_host_asks(
    seed_repo: SeedRepo, git_https: GitHttp, tmp_path: Path
) -> None:
    seen = len(git_https.requests)
    g.clone(seed_repo.urls["https"], tmp_path / "dest", auth=https_auth(git_https), timeout=TIMEOUT)
    requests = git_https.requests[seen:]
    assert requests[0].authorization is None  # the first request carries nothing
    assert len({r.authorization for r in requests[1:]}) == 1
    assert requests[1].path == requests[0].path and requests[1].authorization is not None
    assert HTTP_PASSWORD not in (tmp_path / "dest" / ".git" / "config").read_text()


def test_no_credential_over_plain_http_or_to_another_host(
    seed_repo: SeedRepo, git_http: GitHttp, git_https: GitHttp, tmp_path: Path
) -> None:
    seen_http, seen_https = len(git_http.requests), len(git_https.requests)
    assert git_https.tls is not None
    plain = g.GitAuth(https={git_http.host: HttpsCredential(HTTP_USER, HTTP_PASSWORD)})
    elsewhere = https_auth(git_https, host="git.example.org")
    for url, auth in ((seed_repo.urls["http"], plain), (seed_repo.urls["https"], elsewhere)):
        with pytest.raises(GitError, match="authentication failed"):
            g.clone(url, tmp_path / "dest", auth=auth, timeout=TIMEOUT)
    assert len(git_http.requests) > seen_http and len(git_https.requests) > seen_https
    assert [r.authorization for r in git_http.requests[seen_http:]] == [None] * (
        len(git_http.requests) - seen_http
    )
    assert all(r.authorization is None for r in git_https.requests[seen_https:])


def test_credentials_in_a_url_are_never_sent(
    seed_repo: SeedRepo, git_https: GitHttp, tmp_path: Path
) -> None:
    assert git_https.tls is not None
    seen = len(git_https.requests)
    url = git_https.url(seed_repo.name, credentials=True)
    with pytest.raises(GitError, match="authentication failed"):
        g.clone(url, tmp_path / "dest", auth=g.GitAuth(ca_file=git_https.tls.cert), timeout=TIMEOUT)
    assert all(r.authorization is None for r in git_https.requests[seen:])
    assert not (tmp_path / "dest").exists()


def test_a_local_remote_needs_allow_local(seed_repo: SeedRepo, tmp_path: Path) -> None:
    for url in (seed_repo.urls["path"], seed_repo.urls["file"]):
        with pytest.raises(GitError) as err:
            g.clone(url, tmp_path / "dest", auth=g.GitAuth(), timeout=TIMEOUT)
        assert "refusing a local path" in one_line(err.value)
        assert "allow_local" in (err.value.hint or "")
        assert not (tmp_path / "dest").exists()


def test_the_clones_own_config_is_never_honoured(seed_repo: SeedRepo, tmp_path: Path) -> None:
    """core.worktree, hooks, filters, core.sshCommand in .git/config: maomao ignores them."""
    url, auth = seed_repo.urls["git"], g.GitAuth()
    work, outside, marker = tmp_path / "clone", tmp_path / "outside", tmp_path / "ran"
    outside.mkdir()
    g.clone(url, work, auth=auth, timeout=TIMEOUT)
    hooks = work / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    for hook in ("pre-commit", "commit-msg", "post-commit", "post-merge", "post-checkout"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {marker}\n")
        (hooks / hook).chmod(0o755)
    with open(work / ".git" / "config", "a") as config:
        config.write(
            f"[core]\n\tworktree = {outside}\n\tsshCommand = touch {marker}\n"
            f"\thooksPath = {hooks}\n\tautocrlf = true\n"
            f'[filter "evil"]\n\tclean = sh -c "touch {marker}; cat"\n'
            f'\tsmudge = sh -c "touch {marker}; cat"\n\trequired = true\n'
        )
    (work / ".gitattributes").write_text("* filter=evil\n")
    (work / "data" / "new.csv").write_text("3\r\n")
    other = seed_repo.fresh_clone(tmp_path / "other")
    (other / "theirs.txt").write_text("theirs\n")
    git("add", "-A", cwd=other)
    git("commit", "-q", "-m", "theirs", cwd=other)
    git("push", "-q", "origin", "main", cwd=other)

    assert "data/new.csv" in g.status(work, branch="main").changed_files
    assert g.commit_all(work, "run", "member-a") is not None
    assert g.pull(work, auth=auth, timeout=TIMEOUT, author="member-a").outcome == "merged"
    g.push(work, auth=auth, timeout=TIMEOUT)

    assert not marker.exists()
    assert list(outside.iterdir()) == []
    assert (work / "theirs.txt").read_text() == "theirs\n"
    stored = git("cat-file", "-p", "main:data/new.csv", cwd=seed_repo.path)
    assert stored == "3"  # byte for byte (git strips the trailing newline it prints)
    raw = subprocess.run(
        ["git", "cat-file", "blob", "main:data/new.csv"],
        cwd=seed_repo.path, capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert raw == b"3\r\n"  # no line-ending conversion, no filter


def test_a_pull_never_writes_through_a_link_the_dataset_made(
    seed_repo: SeedRepo, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    upstream = seed_repo.fresh_clone(tmp_path / "upstream")
    (upstream / "a").symlink_to(outside)
    git("add", "-A", cwd=upstream)
    git("commit", "-q", "-m", "a link", cwd=upstream)
    git("push", "-q", "origin", "main", cwd=upstream)
    work = tmp_path / "clone"
    g.clone(seed_repo.urls["git"], work, auth=g.GitAuth(), timeout=TIMEOUT)
    assert (work / "a").is_symlink()
    (upstream / "a").unlink()  # the next commit makes the link a folder with a file
    (upstream / "a").mkdir()
    (upstream / "a" / "x").write_text("x\n")
    git("add", "-A", cwd=upstream)
    git("commit", "-q", "-m", "a folder", cwd=upstream)
    git("push", "-q", "origin", "main", cwd=upstream)
    assert g.pull(work, auth=g.GitAuth(), timeout=TIMEOUT).outcome == "fast-forward"
    assert list(outside.iterdir()) == []
    assert not (work / "a").is_symlink() and (work / "a" / "x").read_text() == "x\n"


def test_an_ssh_user_or_host_that_is_an_option_never_reaches_ssh(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    for url in (
        f"ssh://-oProxyCommand=touch%20{marker}@127.0.0.1/x",
        f"ssh://git@-oProxyCommand=touch%20{marker}/x",
        "-oProxyCommand=touch@127.0.0.1:x",
    ):
        with pytest.raises(GitError, match="refusing SSH"):
            g.clone(url, tmp_path / "dest", auth=g.GitAuth(), timeout=5)
    assert not marker.exists() and not (tmp_path / "dest").exists()


def test_clone_refuses_non_empty_destination(seed_repo: SeedRepo, tmp_path: Path) -> None:
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "keep.txt").write_text("mine\n")
    with pytest.raises(GitError) as err:
        g.clone(seed_repo.urls["file"], tmp_path / "dest", auth=LOCAL, timeout=TIMEOUT)
    assert "not empty" in one_line(err.value)
    assert (tmp_path / "dest" / "keep.txt").read_text() == "mine\n"


# ---------------------------------------------------------------------------- depth


@pytest.mark.parametrize("protocol", ["file", "git", "https"])
def test_depth_limited_clone_then_pull(
    protocol: str, seed_repo: SeedRepo, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url, auth = remote(seed_repo, protocol, request)
    upstream = seed_repo.fresh_clone(tmp_path / "upstream")
    for i in range(3):
        (upstream / f"f{i}.txt").write_text(f"{i}\n")
        git("add", "-A", cwd=upstream)
        git("commit", "-q", "-m", f"c{i}", cwd=upstream)
    git("push", "-q", "origin", "main", cwd=upstream)

    work = tmp_path / "shallow"
    g.clone(url, work, depth=1, auth=auth, timeout=TIMEOUT)
    assert (work / ".git" / "shallow").exists()
    assert git("rev-list", "--count", "HEAD", cwd=work) == "1"
    assert (work / "f2.txt").read_text() == "2\n"

    (upstream / "f3.txt").write_text("3\n")
    git("add", "-A", cwd=upstream)
    git("commit", "-q", "-m", "c3", cwd=upstream)
    git("push", "-q", "origin", "main", cwd=upstream)
    assert g.pull(work, auth=auth, timeout=TIMEOUT).outcome == "fast-forward"
    assert (work / "f3.txt").read_text() == "3\n"


# ---------------------------------------------------------------------------- one-pass clone


def _grow_history(seed: SeedRepo, tmp_path: Path) -> None:
    """Commits that rewrite one file, so the server's pack holds delta chains."""
    upstream = seed.fresh_clone(tmp_path / "grow")
    rows = "".join(f"row {i},{i * 7 % 100}\n" for i in range(300))
    for i in range(15):
        rows = rows.replace(f"row {i * 11},", f"row {i * 11},x")
        (upstream / "data" / "big.csv").write_text(rows)
        (upstream / f"note-{i}.txt").write_text(f"{i}\n")
        git("add", "-A", cwd=upstream)
        git("commit", "-q", "-m", f"grow {i}", cwd=upstream)
    git("push", "-q", "origin", "main", cwd=upstream)
    git("repack", "-q", "-a", "-d", "-f", cwd=seed.path)


def _count_index_pack(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The object count of every pack packindex indexes from now on."""
    counts: list[int] = []
    real = packindex.index_pack

    def counted(*args: Any, **kw: Any) -> packindex.IndexedPack:
        indexed = real(*args, **kw)
        counts.append(indexed.objects)
        return indexed

    monkeypatch.setattr(packindex, "index_pack", counted)
    return counts


@pytest.mark.parametrize("protocol", ["git", "https", "ssh"])
def test_clone_indexes_the_pack_in_one_pass_and_git_agrees(
    protocol: str,
    seed_repo: SeedRepo,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _grow_history(seed_repo, tmp_path)
    url, auth = remote(seed_repo, protocol, request)
    calls = _count_index_pack(monkeypatch)
    work = tmp_path / "clone"
    g.clone(url, work, auth=auth, timeout=TIMEOUT)

    assert len(calls) == 1 and calls[0] > 45  # seed + 15 commits, their trees and blobs
    assert git("fsck", "--strict", "--no-dangling", cwd=work) == ""
    assert git("status", "--porcelain", cwd=work) == ""  # index and files agree
    expected = seed_repo.fresh_clone(tmp_path / "expected")
    assert (work / "data" / "big.csv").read_bytes() == (expected / "data" / "big.csv").read_bytes()
    assert git("rev-parse", "HEAD", cwd=work) == seed_repo.head()


def test_clone_falls_back_to_dulwich_for_packs_too_big_to_hold(
    seed_repo: SeedRepo, git_daemon: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _grow_history(seed_repo, tmp_path)
    from dulwich.object_store import DiskObjectStore

    monkeypatch.setattr(packindex, "MAX_INFLATED", 1000)
    general: list[str] = []
    real = DiskObjectStore.add_thin_pack

    def counted(self: DiskObjectStore, *args: Any, **kw: Any) -> Any:
        general.append(str(self.path))
        return real(self, *args, **kw)

    monkeypatch.setattr(DiskObjectStore, "add_thin_pack", counted)
    work = tmp_path / "clone"
    g.clone(seed_repo.urls["git"], work, auth=g.GitAuth(), timeout=TIMEOUT)
    assert len(general) == 1  # dulwich's own path stored the pack
    assert git("fsck", "--strict", "--no-dangling", cwd=work) == ""
    assert git("status", "--porcelain", cwd=work) == ""
    assert git("rev-parse", "HEAD", cwd=work) == seed_repo.head()
    assert list((work / ".git" / "objects" / "pack").glob("tmp_pack_*")) == []


@pytest.mark.parametrize("protocol", ["path", "file"])
def test_local_clone_copies_packs_and_loose_objects(
    protocol: str, seed_repo: SeedRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _grow_history(seed_repo, tmp_path)  # packed
    upstream = seed_repo.fresh_clone(tmp_path / "loose")
    (upstream / "loose.txt").write_text("not packed yet\n")
    git("add", "-A", cwd=upstream)
    git("commit", "-q", "-m", "loose", cwd=upstream)
    git("push", "-q", "origin", "main", cwd=upstream)  # small pushes stay loose objects
    assert git("count-objects", cwd=seed_repo.path).split()[0] != "0"
    indexed = _count_index_pack(monkeypatch)
    work = tmp_path / "clone"
    g.clone(seed_repo.urls[protocol], work, auth=LOCAL, timeout=TIMEOUT)

    assert len(indexed) == 1  # the one pack, copied and indexed
    assert (work / "loose.txt").read_text() == "not packed yet\n"
    assert git("fsck", "--strict", "--no-dangling", cwd=work) == ""
    assert git("status", "--porcelain", cwd=work) == ""
    assert git("rev-parse", "HEAD", cwd=work) == seed_repo.head()
    assert git("config", "remote.origin.url", cwd=work) == seed_repo.urls[protocol]


def test_local_clone_of_a_shallow_source_is_shallow(seed_repo: SeedRepo, tmp_path: Path) -> None:
    _grow_history(seed_repo, tmp_path)
    shallow = tmp_path / "shallow-source"
    git("clone", "-q", "--bare", "--depth=2", seed_repo.urls["file"], str(shallow))
    work = tmp_path / "clone"
    g.clone(str(shallow), work, auth=LOCAL, timeout=TIMEOUT)
    assert git("rev-parse", "HEAD", cwd=work) == seed_repo.head()
    assert git("rev-list", "--count", "HEAD", cwd=work) == "2"
    assert (work / ".git" / "shallow").read_text() == (shallow / "shallow").read_text()
    assert (work / "note-14.txt").read_text() == "14\n"
    assert git("status", "--porcelain", cwd=work) == ""


# ---------------------------------------------------------------------------- keys, progress


def test_generate_ssh_key_once_owner_only(tmp_path: Path) -> None:
    key = tmp_path / "state" / "keys" / "dataset-x"
    public = g.generate_ssh_key(key, "maomao dataset x")
    assert public.startswith("ssh-ed25519 ") and public.endswith(" maomao dataset x")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    private = key.read_bytes()
    assert g.generate_ssh_key(key, "another comment") == public
    assert key.read_bytes() == private
    assert [p.name for p in key.parent.iterdir() if p.name.startswith(".keygen")] == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Counting objects: 45% (9/20)", ("Counting objects", 9, 20)),
        ("remote: Counting objects: 100% (20/20), done.", ("Counting objects", 20, 20)),
        (
            "Receiving objects:  50% (500/1000), 1.20 MiB | 2.40 MiB/s",
            ("Receiving objects", 500, 1000),
        ),
        ("Compressing objects: 100% (3/3), done.", ("Compressing objects", 3, 3)),
        ("Enumerating objects: 11, done.", ("Enumerating objects", 11, 11)),
        ("counting objects: 5, done.", ("counting objects", 5, 5)),
        ("Counting objects: 12", ("Counting objects", 12, 0)),
        ("writing pack data: 0/5", ("writing pack data", 0, 5)),
        ("Total 20 (delta 3), reused 0 (delta 0), pack-reused 0", None),
        ("", None),
        ("error: something broke", None),
    ],
)
def test_parse_progress(line: str, expected: tuple[str, int, int] | None) -> None:
    assert g.parse_progress(line) == expected


# ---------------------------------------------------------------------------- empty remotes


@pytest.fixture
def empty_repo(git_root: Path, git_daemon: Any) -> Iterator[tuple[Path, dict[str, str]]]:
    """A bare repository without a single commit, its HEAD on `trunk` (not main)."""
    git_root.mkdir(parents=True, exist_ok=True)
    path = git_root / f"empty-{uuid.uuid4().hex[:8]}.git"
    git("init", "-q", "--bare", "-b", "trunk", str(path))
    yield path, {"path": str(path), "git": git_daemon.url(path.name)}


def head_and_config(work: Path) -> tuple[str, str]:
    head = git("symbolic-ref", "HEAD", cwd=work)
    merge = git("config", "--get-regexp", r"^branch\..*\.merge$", cwd=work)
    return head, merge


@pytest.mark.parametrize("protocol", ["path", "git"])
@pytest.mark.parametrize(
    ("branch", "expected"),
    [("data", "data"), (None, "trunk")],  # asked for, else the remote's default
)
def test_a_clone_of_an_empty_remote_is_on_the_branch_and_its_first_push_creates_it(
    empty_repo: tuple[Path, dict[str, str]],
    tmp_path: Path,
    protocol: str,
    branch: str | None,
    expected: str,
) -> None:
    bare, urls = empty_repo
    auth = LOCAL if protocol == "path" else g.GitAuth()
    work = tmp_path / "clone"
    g.clone(urls[protocol], work, branch=branch, auth=auth, timeout=TIMEOUT)
    # HEAD and the config name the same branch.
    assert head_and_config(work) == (
        f"refs/heads/{expected}",
        f"branch.{expected}.merge refs/heads/{expected}",
    )
    assert g.status(work, branch=branch) == g.RepoStatus(expected, 0, 0, [])
    assert g.pull(work, branch=branch, auth=auth, timeout=TIMEOUT).outcome == "up-to-date"
    (work / "first.csv").write_text("1\n")
    sha = g.commit_all(work, "first\n\nmaomao-run: r1\n", "member-a")
    assert sha is not None
    g.push(work, branch=branch, auth=auth, timeout=TIMEOUT)
    assert git("rev-parse", expected, cwd=bare) == sha
    assert g.status(work, branch=branch).ahead == 0


def test_a_missing_branch_of_a_remote_with_branches_is_one_line(
    seed_repo: SeedRepo, tmp_path: Path
) -> None:
    with pytest.raises(GitError) as caught:
        g.clone(seed_repo.urls["git"], tmp_path / "c", branch="nosuch", timeout=TIMEOUT)
    assert "no branch 'nosuch'" in one_line(caught.value)
    assert not (tmp_path / "c").exists()


def test_a_rejected_push_is_a_push_rejected_error(seed_repo: SeedRepo, tmp_path: Path) -> None:
    from maomao_cli.errors import PushRejected

    url = seed_repo.urls["git"]
    a, b = tmp_path / "a", tmp_path / "b"
    for work in (a, b):
        g.clone(url, work, branch="main", timeout=TIMEOUT)
    for work, name in ((a, "a.csv"), (b, "b.csv")):
        (work / name).write_text("1\n")
        g.commit_all(work, name, "m")
    g.push(a, branch="main", timeout=TIMEOUT)
    with pytest.raises(PushRejected):
        g.push(b, branch="main", timeout=TIMEOUT)
    assert g.pull(b, branch="main", timeout=TIMEOUT, author="m").outcome == "merged"
    g.push(b, branch="main", timeout=TIMEOUT)
    assert g.status(b, branch="main").ahead == 0
