"""`maomao dataset clone/pull/status/key` and runs that commit and push into datasets,
against real git servers on loopback (git daemon, smart HTTPS, sshd), a real etcd and a
private dockerd for the runs."""

# The server fixtures are imported by name below, so test arguments shadow them.
# ruff: noqa: F811

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import DUMMY_IMAGE, Env, make_env
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
from servers import free_port

pytestmark = [pytest.mark.etcd]


def https_config(server: GitHttp) -> str:
    """[git] lines for the https server: its CA, and a credential for its host whose
    password comes from MAOMAO_GIT_PASSWORD (member_env sets it)."""
    assert server.tls is not None
    return (
        f'ca_file = "{server.tls.cert}"\n'
        f'[git.credentials."{server.host}"]\nusername = "{HTTP_USER}"\n'
    )


def member_env(
    root: Path, etcd: Any, prefix: str, member: str, git_config: str = "", **extra: str
) -> Env:
    """A member with its own importdir (root/data), statedir (root/state) and config."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.toml").write_text(
        f'[data]\nimportdir = "{root / "data"}"\n[docker]\nnetwork = "none"\n'
        f"[git]\ntimeout = 20.0\n{git_config}"
    )
    env = make_env(root, etcd.endpoints, prefix, MAOMAO_GIT_PASSWORD=HTTP_PASSWORD, **extra)
    env.vars["MAOMAO_MEMBER"] = member
    return env


def ok(result: Any) -> Any:
    assert result.code == 0, (result.code, result.out, result.err)
    return result


def status_json(env: Env, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(env.run("dataset", "status", name, "--json")).out)
    return data


def trust_sshd(env_root: Path, sshd: Sshd) -> None:
    """What the hint says to do: put the server's host key in <statedir>/known_hosts."""
    state = env_root / "state"
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "known_hosts", "a") as fh:
        fh.write(sshd.known_hosts.read_text())


def authorize_dataset_key(env: Env, env_root: Path, sshd: Sshd, name: str) -> None:
    """`maomao dataset key` makes the key; the server is told to accept it (a deploy key)."""
    result = ok(env.run("dataset", "key", name))
    public = result.out.strip()
    assert public.startswith("ssh-ed25519 "), result.out
    key = env_root / "state" / "keys" / name
    assert str(key) in result.err.replace("\n", "")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert ok(env.run("dataset", "key", name)).out.strip() == public  # made once
    with open(sshd.home / "authorized_keys", "a") as fh:
        fh.write(public + "\n")


def push_from_git(seed: SeedRepo, work: Path, rel: str, text: str, msg: str) -> None:
    other = seed.fresh_clone(work)
    (other / rel).parent.mkdir(parents=True, exist_ok=True)
    (other / rel).write_text(text)
    git("add", "-A", cwd=other)
    git("commit", "-q", "-m", msg, cwd=other)
    git("push", "-q", "origin", "main", cwd=other)


def server_messages(seed: SeedRepo) -> list[str]:
    return git("log", "--format=%B%x00", "main", cwd=seed.path).split("\x00")


def url_for(protocol: str, seed: SeedRepo, request: pytest.FixtureRequest) -> str:
    if protocol == "ssh":
        server: Sshd = request.getfixturevalue("sshd")
        return server.url(seed.path)
    return seed.urls[protocol]


def prepare_ssh(env: Env, root: Path, request: pytest.FixtureRequest, name: str) -> None:
    server: Sshd = request.getfixturevalue("sshd")
    authorize_dataset_key(env, root, server, name)
    trust_sshd(root, server)


# ---------------------------------------------------------------------------- clone/pull/status


@pytest.mark.parametrize("protocol", ["git", "https", "ssh"])
def test_clone_pull_status_over_each_protocol(
    protocol: str,
    seed_repo: SeedRepo,
    git_https: GitHttp,
    tmp_path: Path,
    etcd: Any,
    prefix: str,
    request: pytest.FixtureRequest,
) -> None:
    env = member_env(tmp_path / "m", etcd, prefix, "member-a", https_config(git_https))
    ok(env.run("dataset", "add", "census", url_for(protocol, seed_repo, request), "-b", "main"))
    if protocol == "ssh":
        server: Sshd = request.getfixturevalue("sshd")
        authorize_dataset_key(env, tmp_path / "m", server, "census")
        # No silent trust on first use: the unknown host is refused with the hint.
        refused = env.run("dataset", "clone", "census")
        assert refused.code == 1, refused
        assert "unknown SSH host key" in refused.err and "ssh-keyscan" in refused.err
        assert len(refused.err.strip().splitlines()) == 1
        assert not (tmp_path / "m" / "data" / "datasets" / "census").exists() or not any(
            (tmp_path / "m" / "data" / "datasets" / "census").iterdir()
        )
        trust_sshd(tmp_path / "m", server)

    ok(env.run("dataset", "clone", "census"))
    work = tmp_path / "m" / "data" / "datasets" / "census"
    assert (work / "README.md").read_text() == "seed dataset\n"
    again = env.run("dataset", "clone", "census")
    assert again.code == 2 and "not empty" in again.err

    push_from_git(seed_repo, tmp_path / "other", "new.csv", "2.0\n", "from git")
    pulled = ok(env.run("dataset", "pull", "census"))
    assert "fast-forwarded" in pulled.out
    assert (work / "new.csv").read_text() == "2.0\n"

    st = status_json(env, "census")
    assert (st["branch"], st["ahead"], st["behind"], st["changed_files"]) == ("main", 0, 0, [])
    assert st["last_push_error"] is None
    (work / "local.txt").write_text("mine\n")
    assert status_json(env, "census")["changed_files"] == ["local.txt"]
    text = ok(env.run("dataset", "status", "census")).out
    assert "ahead 0" in text and "local.txt" in text


def test_clone_to_dest_and_pull_finds_it(
    seed_repo: SeedRepo, tmp_path: Path, etcd: Any, prefix: str
) -> None:
    env = member_env(tmp_path / "m", etcd, prefix, "member-a")
    ok(env.run("dataset", "add", "census", seed_repo.urls["git"]))
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine\n")
    refused = env.run("dataset", "clone", "census", "--dest", str(full))
    assert refused.code == 2 and "not empty" in refused.err
    assert [p.name for p in full.iterdir()] == ["keep.txt"]

    dest = tmp_path / "elsewhere"
    ok(env.run("dataset", "clone", "census", "--dest", str(dest)))
    assert (dest / "README.md").exists()
    assert not (tmp_path / "m" / "data" / "datasets" / "census").exists()
    assert status_json(env, "census")["path"] == str(dest.resolve())


def test_bad_names_are_refused_and_nothing_is_written(
    tmp_path: Path, etcd: Any, prefix: str
) -> None:
    env = member_env(tmp_path / "m", etcd, prefix, "member-a")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for args in (
        ("dataset", "clone", "../x"),
        ("dataset", "clone", "../x", "--dest", str(tmp_path / "x")),
        ("dataset", "pull", "../x"),
        ("dataset", "status", "../x"),
        ("dataset", "key", "../x"),
        ("dataset", "add", "../x", "git://127.0.0.1/x.git"),
    ):
        result = env.run(*args)
        assert result.code == 2, (args, result)
        assert "invalid dataset name" in result.err
        assert len(result.err.strip().splitlines()) == 1
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert not (tmp_path.parent / "x").exists()
    missing = env.run("dataset", "clone", "nosuch")
    assert missing.code == 2 and "no dataset named 'nosuch'" in missing.err


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says anything."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield int(sock.getsockname()[1])
    sock.close()


def test_unreachable_or_silent_remote_fails_with_one_line(
    tmp_path: Path, etcd: Any, prefix: str, silent_server: int
) -> None:
    env = member_env(tmp_path / "m", etcd, prefix, "member-a", git_config="")
    (tmp_path / "m" / "config.toml").write_text(
        f'[data]\nimportdir = "{tmp_path / "m" / "data"}"\n[git]\ntimeout = 2.0\n'
    )
    ok(env.run("dataset", "add", "closed", f"git://127.0.0.1:{free_port()}/x.git"))
    ok(env.run("dataset", "add", "silent", f"git://127.0.0.1:{silent_server}/x.git"))
    ok(env.run("dataset", "add", "nohttp", f"http://127.0.0.1:{silent_server}/x.git"))
    for name, reason in (
        ("closed", "connection refused"),
        ("silent", "timed out"),
        ("nohttp", "timed out"),
    ):
        result = env.run("dataset", "clone", name, timeout=30)
        assert result.code == 1, (name, result)
        assert reason in result.err, (name, result.err)
        assert len(result.err.strip().splitlines()) == 1, result.err
        assert "Traceback" not in result.err
        assert not (tmp_path / "m" / "data" / "datasets" / name).exists()


# ---------------------------------------------------------------------------- runs


def run_id_of(env: Env, tool: str) -> dict[str, Any]:
    runs: list[dict[str, Any]] = json.loads(ok(env.run("runs", "--tool", tool, "--json")).out)
    return runs[0]


@pytest.mark.docker
@pytest.mark.timeout(240)
@pytest.mark.parametrize("protocol", ["git", "https", "ssh"])
def test_run_writes_into_the_dataset_commits_and_pushes(
    protocol: str,
    seed_repo: SeedRepo,
    git_https: GitHttp,
    tmp_path: Path,
    etcd: Any,
    prefix: str,
    docker: Any,
    request: pytest.FixtureRequest,
) -> None:
    root = tmp_path / "m"
    config = https_config(git_https)
    env = member_env(root, etcd, prefix, "member-a", config, MAOMAO_DOCKER_HOST=docker.host)
    url = url_for(protocol, seed_repo, request)
    ok(env.run("dataset", "add", "census", url, "--branch", "main", "--push"))
    if protocol == "ssh":
        prepare_ssh(env, root, request, "census")
    ok(env.run("register", "dummy", DUMMY_IMAGE, "--dataset", "census", "--data-subdir", "obs"))

    # Not cloned yet: the first run clones it.
    ok(env.run("run", "dummy", timeout=120))
    run = run_id_of(env, "dummy")
    assert run["status"] == "succeeded" and run["warning"] is None, run
    work = root / "data" / "datasets" / "census"
    written = sorted(p.name for p in (work / "obs").glob("control-*.csv"))
    assert len(written) == 1
    assert not (root / "data" / "dummy").exists()
    # The container wrote into its staging folder, which holds no .git.
    staged = root / "data" / "tools" / "dummy"
    assert sorted(p.name for p in staged.glob("control-*.csv")) == written
    assert not (staged / ".git").exists() and (work / ".git").is_dir()

    message = server_messages(seed_repo)[0]
    assert "dummy" in message and run["id"] in message and "member-a" in message
    author = git("log", "-1", "--format=%an <%ae>", "main", cwd=seed_repo.path)
    assert author == "member-a <member-a@maomao>"
    fresh = seed_repo.fresh_clone(tmp_path / "fresh")
    assert sorted(p.name for p in (fresh / "obs").glob("control-*.csv")) == written
    st = status_json(env, "census")
    assert (st["ahead"], st["changed_files"], st["last_push_error"]) == (0, [], None)


@pytest.mark.docker
@pytest.mark.timeout(300)
def test_two_members_in_turn_both_commits_reach_the_remote(
    seed_repo: SeedRepo, tmp_path: Path, etcd: Any, prefix: str, docker: Any
) -> None:
    a = member_env(tmp_path / "a", etcd, prefix, "a", MAOMAO_DOCKER_HOST=docker.host)
    b = member_env(tmp_path / "b", etcd, prefix, "b", MAOMAO_DOCKER_HOST=docker.host)
    ok(a.run("dataset", "add", "shared", seed_repo.urls["git"], "--push"))
    ok(a.run("register", "dummy", DUMMY_IMAGE, "--dataset", "shared"))
    ids = []
    for env in (a, b, a, b):
        ok(env.run("run", "dummy", timeout=120))
        run = run_id_of(env, "dummy")
        assert run["status"] == "succeeded" and run["warning"] is None, run
        ids.append(run["id"])
    messages = server_messages(seed_repo)
    for run_id in ids:
        assert sum(run_id in m for m in messages) == 1, (run_id, messages)
    fresh = seed_repo.fresh_clone(tmp_path / "fresh")
    assert len(list(fresh.glob("control-*.csv"))) == 4
    # The tool keeps its state per member (MAOMAO_MEMBER): two runs each, nothing shared.
    assert (fresh / ".dummy-run-count-a").read_text().strip() == "2"
    assert (fresh / ".dummy-run-count-b").read_text().strip() == "2"
    for env in (a, b):
        assert status_json(env, "shared")["ahead"] == 0


@pytest.mark.docker
@pytest.mark.timeout(300)
def test_conflict_keeps_local_commits_and_warns(
    seed_repo: SeedRepo, tmp_path: Path, etcd: Any, prefix: str, docker: Any
) -> None:
    a = member_env(tmp_path / "a", etcd, prefix, "a", MAOMAO_DOCKER_HOST=docker.host)
    b = member_env(tmp_path / "b", etcd, prefix, "b", MAOMAO_DOCKER_HOST=docker.host)
    ok(a.run("dataset", "add", "shared", seed_repo.urls["git"], "--push"))
    ok(a.run("register", "dummy", DUMMY_IMAGE, "--dataset", "shared"))
    ok(a.run("dataset", "clone", "shared"))
    ok(b.run("dataset", "clone", "shared"))
    work_a = tmp_path / "a" / "data" / "datasets" / "shared"
    work_b = tmp_path / "b" / "data" / "datasets" / "shared"
    # Both members change the same file, differently.
    (work_a / "README.md").write_text("edited by a\n")
    (work_b / "README.md").write_text("edited by b\n")

    ok(a.run("run", "dummy", timeout=120))
    run_a = run_id_of(a, "dummy")
    assert run_a["warning"] is None, run_a

    result = ok(b.run("run", "dummy", timeout=120))
    assert "warning" in result.err and "README.md" in result.err
    run_b = run_id_of(b, "dummy")
    assert run_b["status"] == "succeeded"
    assert "not pushed" in run_b["warning"] and "README.md" in run_b["warning"]

    # Nothing lost: a's commit on the remote, b's commit and edit in b's clone.
    assert any(run_a["id"] in m for m in server_messages(seed_repo))
    assert not any(run_b["id"] in m for m in server_messages(seed_repo))
    assert run_b["id"] in git("log", "-1", "--format=%B", cwd=work_b)
    assert (work_b / "README.md").read_text() == "edited by b\n"
    st = status_json(b, "shared")
    assert st["ahead"] == 1 and st["changed_files"] == []
    assert "README.md" in st["last_push_error"]
    assert "last push error" in ok(b.run("dataset", "status", "shared")).out
    # maomao's bookkeeping is in the state dir, outside anything a container can reach.
    own = tmp_path / "b" / "state" / "datasets" / "shared"
    assert "README.md" in (own / "last-push-error").read_text()
    assert (own / "lock").exists()
    assert sorted(p.name for p in (work_b / ".git").glob("maomao*")) == []

    # The next run retries (and still cannot): a second local commit, still succeeded.
    ok(b.run("run", "dummy", timeout=120))
    assert "not pushed" in (run_id_of(b, "dummy")["warning"] or "")
    assert status_json(b, "shared")["ahead"] == 2

    # Resolved by hand (b takes a's side; maomao's pull left origin/main fetched), the
    # next run pushes everything.
    git("merge", "-q", "-X", "theirs", "origin/main", "-m", "merge a", cwd=work_b)
    ok(b.run("run", "dummy", timeout=120))
    run = run_id_of(b, "dummy")
    assert run["warning"] is None, run
    st = status_json(b, "shared")
    assert (st["ahead"], st["last_push_error"]) == (0, None)
    messages = server_messages(seed_repo)
    assert any(run_b["id"] in m for m in messages) and any(run_a["id"] in m for m in messages)
    fresh = seed_repo.fresh_clone(tmp_path / "fresh")
    assert (fresh / "README.md").read_text() == "edited by a\n"
    assert len(list(fresh.glob("control-*.csv"))) == 4


def test_files_are_owner_only_and_config_masks_the_password(
    seed_repo: SeedRepo, git_https: GitHttp, tmp_path: Path, etcd: Any, prefix: str
) -> None:
    env = member_env(tmp_path / "m", etcd, prefix, "member-a", https_config(git_https))
    ok(env.run("dataset", "add", "census", seed_repo.urls["https"]))
    ok(env.run("dataset", "clone", "census"))
    config = ok(env.run("config")).out
    assert HTTP_PASSWORD not in config
    shown = ok(env.run("dataset", "show", "census", "--json")).out
    assert HTTP_PASSWORD not in shown
    git_config = (tmp_path / "m" / "data" / "datasets" / "census" / ".git" / "config").read_text()
    assert HTTP_PASSWORD not in git_config
    # etcd holds no credentials either.
    dump = subprocess.run(
        ["etcdctl", f"--endpoints={etcd.endpoints}", "get", "--prefix", prefix],
        capture_output=True,
        text=True,
        env={**os.environ, "ETCDCTL_API": "3"},
        timeout=30,
    )
    assert dump.returncode == 0 and HTTP_PASSWORD not in dump.stdout


# ---------------------------------------------------------------------------- empty remotes


@pytest.fixture
def empty_remote(git_root: Path, git_daemon: Any) -> tuple[Path, str]:
    """A bare repository without any commit, served by git daemon."""
    git_root.mkdir(parents=True, exist_ok=True)
    path = git_root / f"empty-{os.urandom(4).hex()}.git"
    git("init", "-q", "--bare", "-b", "main", str(path))
    return path, git_daemon.url(path.name)


@pytest.mark.docker
@pytest.mark.timeout(240)
def test_clone_of_an_empty_remote_then_a_run_pushes_the_first_commit(
    empty_remote: tuple[Path, str], tmp_path: Path, etcd: Any, prefix: str, docker: Any
) -> None:
    bare, url = empty_remote
    root = tmp_path / "m"
    env = member_env(root, etcd, prefix, "member-a", MAOMAO_DOCKER_HOST=docker.host)
    ok(env.run("dataset", "add", "fresh", url, "--push"))  # no --branch: the remote's default
    cloned = ok(env.run("dataset", "clone", "fresh"))
    assert "Traceback" not in cloned.err
    work = root / "data" / "datasets" / "fresh"
    assert git("symbolic-ref", "HEAD", cwd=work) == "refs/heads/main"
    assert git("config", "branch.main.merge", cwd=work) == "refs/heads/main"
    assert status_json(env, "fresh")["branch"] == "main"

    ok(env.run("register", "dummy", DUMMY_IMAGE, "--dataset", "fresh"))
    ok(env.run("run", "dummy", timeout=120))
    run = run_id_of(env, "dummy")
    assert run["status"] == "succeeded" and run["warning"] is None, run
    assert run["pushed"] is True and run["dataset_commit"]
    assert git("rev-parse", "main", cwd=bare) == run["dataset_commit"]
    message = git("log", "-1", "--format=%B", "main", cwd=bare)
    assert f"maomao-run: {run['id']}" in message and "maomao-member: member-a" in message
    st = status_json(env, "fresh")
    assert (st["ahead"], st["unpushed_runs"], st["last_push_error"]) == (0, [], None)


# ---------------------------------------------------------------------------- --user


@pytest.mark.docker
@pytest.mark.timeout(240)
def test_a_tool_run_as_another_user_writes_its_data_or_fails_before_starting(
    tmp_path: Path, etcd: Any, prefix: str, docker: Any
) -> None:
    import shutil

    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("needs root and chattr (e2fsprogs)")
    root = tmp_path / "m"
    env = member_env(root, etcd, prefix, "member-a", MAOMAO_DOCKER_HOST=docker.host)
    ok(env.run("register", "as1000", DUMMY_IMAGE, "--user", "1000:1000"))
    ok(env.run("run", "as1000", timeout=120))
    data = root / "data" / "tools" / "as1000"
    written = list(data.glob("control-*.csv"))
    assert len(written) == 1
    assert {(p.stat().st_uid, p.stat().st_gid) for p in [data, *written]} == {(1000, 1000)}

    # A data directory maomao cannot hand over (immutable: even root cannot chown it).
    ok(env.run("register", "stuck", DUMMY_IMAGE, "--user", "1000:1000"))
    stuck = root / "data" / "tools" / "stuck"
    stuck.mkdir(parents=True)
    subprocess.run(["chattr", "+i", str(stuck)], check=True)
    try:
        failed = env.run("run", "stuck", timeout=120)
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)
    assert failed.code == 1, failed
    run = run_id_of(env, "stuck")
    assert run["status"] == "failed" and run["retryable"] is False
    assert run["exit_code"] is None  # no container started
    error = run["error"]
    assert "\n" not in error and "owned by 0:0" in error and "user 1000:1000" in error
    assert list(stuck.iterdir()) == []

    # A user the image does not know: the engine refuses it at start, never retried.
    ok(env.run("register", "nobody-here", DUMMY_IMAGE, "--user", "nosuchuser"))
    refused = env.run("run", "nobody-here", timeout=120)
    assert refused.code == 1, refused
    run = run_id_of(env, "nobody-here")
    assert run["status"] == "failed" and run["retryable"] is False, run
    assert "nosuchuser" in run["error"] and "\n" not in run["error"]
