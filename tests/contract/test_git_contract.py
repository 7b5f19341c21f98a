"""One contract for the DatasetSync port (git), run against every implementation.

The behaviours the dataset service relies on, against the dulwich adapter (a bare
repository served by `git daemon` on loopback) and against tests/fakes/git.FakeGit.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
from pathlib import Path
from typing import Protocol

import pytest

from fakes.git import FakeGit
from gitservers import GitDaemon, git, git_daemon, git_root, make_bare_repo  # noqa: F401
from maomao_cli.adapters.git import DulwichSync
from maomao_cli.errors import GitError
from maomao_cli.gitmodels import GitAuth
from maomao_cli.ports import DatasetSync

SEED = {"README.md": "seed dataset\n", "data/control-2024-01-01.csv": "1.0\n"}
AUTH = GitAuth()
TIMEOUT = 20.0


class Harness(Protocol):
    """An implementation under test, and the remotes it talks to."""

    sync: DatasetSync

    def new_remote(self, files: dict[str, str]) -> str:
        """A remote holding one commit of `files` on main; its URL."""
        ...

    def commit_elsewhere(self, url: str, changes: dict[str, str | None], message: str) -> str:
        """Another member pushes `changes` (None: delete) to main; the new tip."""
        ...

    def remote_files(self, url: str) -> dict[str, str]: ...

    def remote_head(self, url: str) -> str: ...

    def unreachable_url(self) -> str: ...

    def remove_remote(self, url: str) -> None: ...


class DulwichHarness:
    def __init__(self, root: Path, daemon: GitDaemon, scratch: Path) -> None:
        self.sync: DatasetSync = DulwichSync()
        self.root, self.daemon, self.scratch = root, daemon, scratch
        self.paths: dict[str, Path] = {}

    def new_remote(self, files: dict[str, str]) -> str:
        name = f"contract-{os.urandom(4).hex()}.git"
        self.root.mkdir(parents=True, exist_ok=True)
        make_bare_repo(self.root / name, files)
        url = self.daemon.url(name)
        self.paths[url] = self.root / name
        return url

    def commit_elsewhere(self, url: str, changes: dict[str, str | None], message: str) -> str:
        other = self.scratch / f"elsewhere-{os.urandom(4).hex()}"
        git("clone", "-q", "--branch", "main", str(self.paths[url]), str(other))
        for rel, text in changes.items():
            if text is None:
                (other / rel).unlink()
            else:
                (other / rel).parent.mkdir(parents=True, exist_ok=True)
                (other / rel).write_text(text)
        git("add", "-A", cwd=other)
        git("commit", "-q", "-m", message, cwd=other)
        git("push", "-q", "origin", "main", cwd=other)
        return self.remote_head(url)

    def remote_files(self, url: str) -> dict[str, str]:
        fresh = self.scratch / f"fresh-{os.urandom(4).hex()}"
        git("clone", "-q", "--branch", "main", str(self.paths[url]), str(fresh))
        files = [p for p in fresh.rglob("*") if p.is_file() and ".git" not in p.parts]
        return {p.relative_to(fresh).as_posix(): p.read_text() for p in files}

    def remote_head(self, url: str) -> str:
        return git("rev-parse", "main", cwd=self.paths[url])

    def unreachable_url(self) -> str:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])  # nothing listens there once closed
        return f"git://127.0.0.1:{port}/x.git"

    def remove_remote(self, url: str) -> None:
        shutil.rmtree(self.paths.pop(url))


class FakeHarness:
    def __init__(self) -> None:
        self.fake = FakeGit()
        self.sync: DatasetSync = self.fake

    def new_remote(self, files: dict[str, str]) -> str:
        url = f"git://fake.invalid/{os.urandom(4).hex()}.git"
        self.fake.add_remote(url, files)
        return url

    def commit_elsewhere(self, url: str, changes: dict[str, str | None], message: str) -> str:
        return self.fake.commit_on_remote(url, changes, message)

    def remote_files(self, url: str) -> dict[str, str]:
        return {p: data.decode() for p, data in self.fake.remote_files(url).items()}

    def remote_head(self, url: str) -> str:
        return self.fake.remotes[url].branches["main"]

    def unreachable_url(self) -> str:
        url = f"git://fake.invalid/{os.urandom(4).hex()}.git"
        self.fake.add_remote(url, SEED).reachable = False
        return url

    def remove_remote(self, url: str) -> None:
        del self.fake.remotes[url]


@pytest.fixture(params=[pytest.param("dulwich", marks=pytest.mark.slow), "fake"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    if request.param == "fake":
        return FakeHarness()
    root: Path = request.getfixturevalue("git_root")
    daemon: GitDaemon = request.getfixturevalue("git_daemon")
    return DulwichHarness(root, daemon, tmp_path)


def cloned(h: Harness, tmp_path: Path, name: str = "clone") -> tuple[str, Path]:
    url = h.new_remote(SEED)
    work = tmp_path / name
    h.sync.clone(url, work, branch="main", depth=None, auth=AUTH, timeout=TIMEOUT)
    return url, work


def pull(h: Harness, work: Path, author: str = "member-a") -> str:
    result = h.sync.pull(work, branch="main", auth=AUTH, timeout=TIMEOUT, author=author)
    return result.outcome


def push(h: Harness, work: Path) -> None:
    h.sync.push(work, branch="main", auth=AUTH, timeout=TIMEOUT)


def test_clone_gives_the_files_and_a_clean_status(harness: Harness, tmp_path: Path) -> None:
    lines: list[str] = []
    url = harness.new_remote(SEED)
    work = tmp_path / "clone"
    harness.sync.clone(
        url, work, branch="main", depth=None, auth=AUTH, timeout=TIMEOUT, progress=lines.append
    )
    assert (work / ".git").is_dir()
    assert (work / "README.md").read_text() == "seed dataset\n"
    assert (work / "data" / "control-2024-01-01.csv").read_text() == "1.0\n"
    assert lines and all("\n" not in line for line in lines)
    st = harness.sync.status(work, branch="main")
    assert (st.branch, st.ahead, st.behind, st.changed_files, st.last_push_error) == (
        "main", 0, 0, [], None,
    )  # fmt: skip


def test_clone_refuses_a_non_empty_destination(harness: Harness, tmp_path: Path) -> None:
    url = harness.new_remote(SEED)
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "keep.txt").write_text("mine\n")
    with pytest.raises(GitError, match="not empty"):
        harness.sync.clone(
            url, tmp_path / "dest", branch="main", depth=None, auth=AUTH, timeout=TIMEOUT
        )
    assert [p.name for p in (tmp_path / "dest").iterdir()] == ["keep.txt"]


def test_pull_brings_new_commits(harness: Harness, tmp_path: Path) -> None:
    url, work = cloned(harness, tmp_path)
    assert pull(harness, work) == "up-to-date"
    tip = harness.commit_elsewhere(url, {"theirs.txt": "from elsewhere\n"}, "theirs")
    result = harness.sync.pull(work, branch="main", auth=AUTH, timeout=TIMEOUT, author="a")
    assert (result.outcome, result.head, result.remote) == ("fast-forward", tip, tip)
    assert (work / "theirs.txt").read_text() == "from elsewhere\n"
    assert harness.sync.status(work, branch="main").changed_files == []


def test_commit_and_push_land_on_the_remote(harness: Harness, tmp_path: Path) -> None:
    url, work = cloned(harness, tmp_path)
    assert harness.sync.commit_all(work, "nothing", "member-a") is None
    (work / "data" / "control-2024-01-02.csv").write_text("2.0\n")
    (work / "README.md").write_text("seed dataset, updated\n")
    (work / "data" / "control-2024-01-01.csv").unlink()
    assert harness.sync.status(work, branch="main").changed_files == [
        "README.md",
        "data/control-2024-01-01.csv",
        "data/control-2024-01-02.csv",
    ]
    sha = harness.sync.commit_all(work, "tool dummy: run r1", "member-a")
    assert sha is not None and harness.sync.commit_all(work, "again", "member-a") is None
    push(harness, work)
    assert harness.remote_head(url) == sha
    assert harness.remote_files(url) == {
        "README.md": "seed dataset, updated\n",
        "data/control-2024-01-02.csv": "2.0\n",
    }


def test_status_reports_unpushed_commits(harness: Harness, tmp_path: Path) -> None:
    _, work = cloned(harness, tmp_path)
    for i in range(2):
        (work / f"run-{i}.csv").write_text(f"{i}\n")
        assert harness.sync.commit_all(work, f"run {i}", "member-a") is not None
    st = harness.sync.status(work, branch="main")
    assert (st.ahead, st.behind, st.changed_files) == (2, 0, [])
    push(harness, work)
    assert harness.sync.status(work, branch="main").ahead == 0


def test_pull_merges_changes_to_different_files(harness: Harness, tmp_path: Path) -> None:
    url, work = cloned(harness, tmp_path)
    (work / "mine.csv").write_text("1\n")
    mine = harness.sync.commit_all(work, "mine", "member-a")
    theirs = harness.commit_elsewhere(url, {"theirs.csv": "2\n"}, "theirs")
    result = harness.sync.pull(work, branch="main", auth=AUTH, timeout=TIMEOUT, author="a")
    assert (result.outcome, result.remote) == ("merged", theirs)
    assert result.head not in (mine, theirs)
    push(harness, work)
    files = harness.remote_files(url)
    assert (files["mine.csv"], files["theirs.csv"]) == ("1\n", "2\n")


def test_a_conflict_touches_nothing_and_blocks_the_push(harness: Harness, tmp_path: Path) -> None:
    url, work = cloned(harness, tmp_path)
    (work / "README.md").write_text("mine\n")
    mine = harness.sync.commit_all(work, "mine", "member-a")
    theirs = harness.commit_elsewhere(url, {"README.md": "theirs\n"}, "theirs")
    result = harness.sync.pull(work, branch="main", auth=AUTH, timeout=TIMEOUT, author="a")
    assert result.conflict and result.conflicts == ("README.md",)
    assert (result.head, result.remote) == (mine, theirs)
    assert (work / "README.md").read_text() == "mine\n"
    st = harness.sync.status(work, branch="main")
    assert (st.ahead, st.behind, st.changed_files) == (1, 1, [])
    with pytest.raises(GitError) as err:
        push(harness, work)
    assert "pull first" in (err.value.hint or "")
    assert harness.remote_head(url) == theirs


def test_a_local_remote_is_refused_unless_allowed(harness: Harness, tmp_path: Path) -> None:
    source = tmp_path / "secrets"
    source.mkdir()
    for url in (str(source), f"file://{source}"):
        with pytest.raises(GitError, match="refusing a local path"):
            harness.sync.clone(
                url, tmp_path / "dest", branch=None, depth=None, auth=AUTH, timeout=TIMEOUT
            )
        assert not (tmp_path / "dest").exists()


def test_an_unreachable_remote_is_a_one_line_git_error(harness: Harness, tmp_path: Path) -> None:
    url = harness.unreachable_url()
    dest = tmp_path / "dest"
    with pytest.raises(GitError) as err:
        harness.sync.clone(url, dest, branch="main", depth=None, auth=AUTH, timeout=5)
    assert err.value.message.startswith(f"clone {url}: ") and "refused" in err.value.message
    assert "\n" not in err.value.message
    assert not dest.exists()


def test_a_vanished_remote_is_a_git_error_and_the_clone_stays(
    harness: Harness, tmp_path: Path
) -> None:
    url, work = cloned(harness, tmp_path)
    (work / "run.csv").write_text("1\n")
    sha = harness.sync.commit_all(work, "run", "member-a")
    harness.remove_remote(url)
    with pytest.raises(GitError) as err:
        pull(harness, work)
    assert err.value.message.startswith(f"pull {url}: ")
    with pytest.raises(GitError):
        push(harness, work)
    st = harness.sync.status(work, branch="main")
    assert st.ahead == 1 and st.last_push_error is None  # the service keeps that note
    assert (work / "run.csv").read_text() == "1\n" and sha is not None


def test_the_wrong_branch_is_refused(harness: Harness, tmp_path: Path) -> None:
    _, work = cloned(harness, tmp_path)
    with pytest.raises(GitError, match="branch main is checked out, not other"):
        harness.sync.status(work, branch="other")


def test_an_ssh_key_is_made_once_owner_only(harness: Harness, tmp_path: Path) -> None:
    key = tmp_path / "state" / "keys" / "obs"
    public = harness.sync.generate_ssh_key(key, "maomao-obs@member-a")
    assert public.startswith("ssh-ed25519 ") and public.endswith(" maomao-obs@member-a")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert harness.sync.generate_ssh_key(key, "another comment") == public
