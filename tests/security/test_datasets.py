"""Issue 15's dataset attacks, each reproduced against the real services and shown refused
or harmless: a private dockerd running the attacker's tool, a real etcd holding the
attacker's records, git daemon and HTTP(S) git servers that log every Authorization header.

The host's secrets are sentinel files outside every importdir: owned by this (root) user,
mode 0600, known content. Each test checks they are unchanged, that nothing was created
beside them, and that their content is in no run's output, in no record, on no remote.
"""

# The server fixtures are imported by name below, so test arguments shadow them.
# ruff: noqa: F811

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import DUMMY_IMAGE, Env, make_env
from gitservers import (  # noqa: F401  (fixtures)
    HTTP_PASSWORD,
    HTTP_USER,
    GitDaemon,
    GitHttp,
    SeedRepo,
    git,
    git_daemon,
    git_http,
    git_https,
    git_root,
    make_bare_repo,
    seed_repo,
)

ATTACK_IMAGE = "maomao/attacker:test"
MOUNT = "/usr/src/app/data"


# ---------------------------------------------------------------------------- the host


@dataclass(frozen=True)
class Sentinel:
    path: Path
    content: str

    def intact(self) -> bool:
        st = os.lstat(self.path)
        return (
            stat.S_ISREG(st.st_mode)
            and st.st_uid == os.geteuid()
            and stat.S_IMODE(st.st_mode) == 0o600
            and self.path.read_text() == self.content
        )


@dataclass(frozen=True)
class Host:
    """What must stay untouched: a folder of secrets, and an empty folder."""

    secrets: Path
    passwd: Sentinel  # a stand-in /etc/passwd
    secret: Sentinel  # a 0600 host secret, e.g. /root/secret-number
    empty: Path  # e.g. /etc/cron.d: nothing may appear in it

    def untouched(self) -> bool:
        return (
            self.passwd.intact()
            and self.secret.intact()
            and sorted(p.name for p in self.secrets.iterdir()) == ["passwd", "secret"]
            and list(self.empty.iterdir()) == []
        )

    def leaked_in(self, text: str) -> bool:
        return self.passwd.content in text or self.secret.content in text


@pytest.fixture
def host(tmp_path: Path) -> Host:
    secrets = tmp_path / "host-secrets"
    secrets.mkdir()
    made = []
    for name in ("passwd", "secret"):
        path = secrets / name
        content = f"SENTINEL-{name}-{uuid.uuid4().hex}\n"
        path.write_text(content)
        path.chmod(0o600)
        made.append(Sentinel(path, content))
    empty = tmp_path / "host-empty"
    empty.mkdir()
    return Host(secrets, made[0], made[1], empty)


# ---------------------------------------------------------------------------- a member


def member(root: Path, etcd: Any, prefix: str, git_config: str = "", docker: Any = None) -> Env:
    """A member with its own importdir (root/data), statedir (root/state) and config."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.toml").write_text(
        f'[data]\nimportdir = "{root / "data"}"\n[docker]\nnetwork = "none"\n'
        f"[git]\ntimeout = 10.0\n{git_config}"
    )
    extra = {"MAOMAO_DOCKER_HOST": docker.host} if docker is not None else {}
    return make_env(root, etcd.endpoints, prefix, **extra)


def ok(result: Any) -> Any:
    assert result.code == 0, (result.code, result.out, result.err)
    return result


def runs(env: Env, tool: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(ok(env.run("runs", "--tool", tool, "--json")).out)
    return data


def everything_shown(env: Env, etcd: Any, prefix: str) -> str:
    """What every member can read: all records (with each run's log tail) and the logs."""
    dump = subprocess.run(
        ["etcdctl", f"--endpoints={etcd.endpoints}", "get", "--prefix", prefix],
        capture_output=True,
        text=True,
        env={**os.environ, "ETCDCTL_API": "3"},
        timeout=30,
    ).stdout
    logs = [env.run("logs", r["id"]).out for r in json.loads(env.run("runs", "--json").out)]
    return dump + "".join(logs)


def put_record(etcd: Any, key: str, value: dict[str, Any]) -> None:
    """Another member's client writing a record straight into etcd, past every check."""
    subprocess.run(
        ["etcdctl", f"--endpoints={etcd.endpoints}", "put", key, json.dumps(value)],
        check=True,
        capture_output=True,
        env={**os.environ, "ETCDCTL_API": "3"},
        timeout=30,
    )


def dataset_record(name: str, url: str) -> dict[str, Any]:
    return {"v": 1, "name": name, "url": url, "branch": None, "push": False, "depth": None,
            "created": time.time()}  # fmt: skip


def remote_text(seed: SeedRepo) -> str:
    """Everything the shared remote holds: every blob of every commit."""
    return git("log", "-p", "--all", "--format=%H %B", cwd=seed.path)


@pytest.fixture(scope="session")
def attacker(docker: Any) -> Iterator[str]:
    """An image whose entrypoint runs the script in its ATTACK variable (set with
    `register --env`): any member can register such a tool."""
    import docker as docker_py

    dockerfile = f'FROM {DUMMY_IMAGE}\nENTRYPOINT ["/bin/sh", "-c", "eval \\"$ATTACK\\""]\n'
    client = docker_py.APIClient(base_url=docker.host, timeout=120)
    try:
        for event in client.build(
            fileobj=io.BytesIO(dockerfile.encode()),
            tag=ATTACK_IMAGE,
            rm=True,
            pull=False,
            network_mode="none",
            decode=True,
        ):
            assert "error" not in event, event
        yield ATTACK_IMAGE
        # Before the docker fixture removes the base image, which this one depends on.
        for container in client.containers(all=True, filters={"ancestor": ATTACK_IMAGE}):
            client.remove_container(container["Id"], force=True)
        client.remove_image(ATTACK_IMAGE, force=True)
    finally:
        client.close()


def register_attack(env: Env, name: str, script: str, *extra: str) -> None:
    ok(env.run("register", name, ATTACK_IMAGE, "--env", f"ATTACK={script}", *extra))


# ---------------------------------------------------------------------------- .git


@pytest.mark.timeout(240)
def test_a_dataset_tool_never_sees_git_and_its_links_lead_nowhere(
    seed_repo: SeedRepo, host: Host, attacker: str, docker: Any, etcd: Any, prefix: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Bullet 1: the bookkeeping files of .git symlinked to host files, core.worktree set to
    a host folder, a host secret linked into the data folder."""
    root = tmp_path / "m"
    env = member(root, etcd, prefix, docker=docker)
    ok(env.run("dataset", "add", "shared", seed_repo.urls["git"], "--push"))
    script = f"""
        D={MOUNT}
        ls -a $D > $D/seen-by-tool.txt
        mkdir -p $D/.git
        ln -s {host.passwd.path} $D/.git/maomao-last-push-error
        ln -s {host.empty}/created-by-the-lock $D/.git/maomao.lock
        printf '[core]\\n\\tworktree = {host.empty}\\n' > $D/.git/config
        ln -s {host.secret.path} $D/leak.csv
        ln -s {host.secrets} $D/hostdir
        mkfifo $D/control-pipe.csv
        echo 1 > $D/data-ok.txt
        echo attack done
    """
    register_attack(env, "intruder", script, "--dataset", "shared")

    first = ok(env.run("run", "intruder", timeout=120))
    [run] = runs(env, "intruder")
    assert run["status"] == "succeeded", run
    for name in (".git", "leak.csv", "hostdir", "control-pipe.csv"):
        assert name in (run["warning"] or ""), run["warning"]  # named, not copied
        assert name in first.err
    work = root / "data" / "datasets" / "shared"
    seen = (work / "seen-by-tool.txt").read_text().split()
    assert ".git" not in seen and "README.md" in seen
    fresh = seed_repo.fresh_clone(tmp_path / "fresh")
    assert (fresh / "data-ok.txt").read_text() == "1\n"  # the tool's data still lands
    for name in ("leak.csv", "hostdir", "control-pipe.csv"):
        assert not os.path.lexists(fresh / name) and not os.path.lexists(work / name)
    assert sorted(p.name for p in (work / ".git").glob("maomao*")) == []

    # A failing push makes maomao write its note: in the state dir, never through a link.
    shutil.rmtree(seed_repo.path)
    ok(env.run("run", "intruder", timeout=120))
    latest = runs(env, "intruder")[0]
    assert latest["status"] == "succeeded" and "not pushed" in latest["warning"]
    note = root / "state" / "datasets" / "shared" / "last-push-error"
    assert note.is_file() and not note.is_symlink()
    assert "last push error" in ok(env.run("dataset", "status", "shared")).out

    assert host.untouched()
    assert not host.leaked_in(everything_shown(env, etcd, prefix))
    assert not host.leaked_in(git("log", "-p", "--all", cwd=work))


@pytest.mark.timeout(240)
def test_links_in_a_datasets_content_give_the_tool_nothing(
    git_root: Path, git_daemon: GitDaemon, host: Host, attacker: str, docker: Any,
    etcd: Any, prefix: str, tmp_path: Path,
) -> None:  # fmt: skip
    """The dataset itself (any member's remote) holds links to host files and folders."""
    name = f"links-{uuid.uuid4().hex[:6]}.git"
    make_bare_repo(git_root / name, {"legit.csv": "1\n"})
    upstream = tmp_path / "upstream"
    git("clone", "-q", str(git_root / name), str(upstream))
    (upstream / "passwd").symlink_to(host.passwd.path)
    (upstream / "etc").symlink_to(host.empty)
    (upstream / "secrets").symlink_to(host.secrets)
    git("add", "-A", cwd=upstream)
    git("commit", "-q", "-m", "links", cwd=upstream)
    git("push", "-q", "origin", "main", cwd=upstream)

    root = tmp_path / "m"
    env = member(root, etcd, prefix, docker=docker)
    ok(env.run("dataset", "add", "linked", git_daemon.url(name), "--push"))
    script = f"""
        D={MOUNT}
        cat $D/passwd $D/secrets/secret; ls -a $D $D/etc $D/secrets
        mkdir -p $D/etc && echo '* * * * * root id' > $D/etc/cron
        echo overwritten > $D/passwd
        echo 2 > $D/legit.csv
    """
    register_attack(env, "reader", script, "--dataset", "linked")
    result = ok(env.run("run", "reader", timeout=120))
    [run] = runs(env, "reader")
    assert run["status"] == "succeeded", run
    assert "a symbolic link" in result.err  # each link named as it is skipped

    assert host.untouched()
    assert not host.leaked_in(everything_shown(env, etcd, prefix))
    work = root / "data" / "datasets" / "linked"
    assert (work / "legit.csv").read_text() == "2\n"
    # What the tool wrote where the dataset had links replaced the links, in the tree only.
    assert not (work / "etc").is_symlink() and (work / "etc" / "cron").is_file()
    assert not (work / "passwd").is_symlink() and (work / "passwd").read_text() == "overwritten\n"
    assert (work / "secrets").is_symlink()  # the tool never saw it: it stays the dataset's


@pytest.mark.timeout(240)
def test_a_clone_whose_config_was_tampered_with_runs_nothing_and_writes_nowhere(
    seed_repo: SeedRepo, host: Host, docker: Any, etcd: Any, prefix: str, tmp_path: Path
) -> None:
    """A clone a container reached before this release: core.worktree, hooks, filters and
    core.sshCommand in its .git; maomao honours none of them."""
    root = tmp_path / "m"
    env = member(root, etcd, prefix, docker=docker)
    ok(env.run("dataset", "add", "old", seed_repo.urls["git"], "--push"))
    ok(env.run("dataset", "clone", "old"))
    work = root / "data" / "datasets" / "old"
    marker = host.empty / "hook-ran"
    hooks = work / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    for hook in ("pre-commit", "commit-msg", "post-commit", "post-merge", "pre-push"):
        (hooks / hook).write_text(f"#!/bin/sh\ncp {host.secret.path} {marker}\n")
        (hooks / hook).chmod(0o755)
    with open(work / ".git" / "config", "a") as config:
        config.write(
            f"[core]\n\tworktree = {host.empty}\n\tsshCommand = touch {marker}\n"
            f'\thooksPath = {hooks}\n[filter "x"]\n\tclean = cp {host.secret.path} {marker}\n'
        )
    (work / ".gitattributes").write_text("* filter=x\n")
    ok(env.run("register", "dummy", DUMMY_IMAGE, "--dataset", "old"))
    ok(env.run("run", "dummy", timeout=120))
    [run] = runs(env, "dummy")
    assert run["status"] == "succeeded" and run["warning"] is None, run

    assert host.untouched()
    fresh = seed_repo.fresh_clone(tmp_path / "fresh")
    assert len(list(fresh.glob("control-*.csv"))) == 1
    assert not host.leaked_in(remote_text(seed_repo))


# ---------------------------------------------------------------------------- credentials


@pytest.fixture
def evil_https(git_root: Path, git_https: GitHttp) -> Iterator[GitHttp]:
    """Another member's https server, with a certificate the member trusts (the worst
    case): it asks for credentials like the real one and logs what it gets."""
    server = GitHttp(git_root, tls=git_https.tls).start()
    yield server
    server.stop()


@pytest.mark.timeout(120)
def test_credentials_go_only_to_their_host_over_https_after_it_asks(
    seed_repo: SeedRepo, git_http: GitHttp, git_https: GitHttp, evil_https: GitHttp,
    etcd: Any, prefix: str, tmp_path: Path,
) -> None:  # fmt: skip
    assert git_https.tls is not None
    env = member(
        tmp_path / "m", etcd, prefix,
        f'ca_file = "{git_https.tls.cert}"\n'
        f'[git.credentials."{git_https.host}"]\n'
        f'username = "{HTTP_USER}"\npassword = "{HTTP_PASSWORD}"\n',
    )  # fmt: skip
    seen = {id(s): len(s.requests) for s in (git_http, git_https, evil_https)}
    # Any member registers these; every member clones them.
    ok(env.run("dataset", "add", "plain", git_http.url(seed_repo.name)))
    ok(env.run("dataset", "add", "elsewhere", evil_https.url(seed_repo.name)))
    for name in ("plain", "elsewhere"):
        refused = env.run("dataset", "clone", name, timeout=60)
        assert refused.code == 1 and "authentication failed" in refused.err, refused
    for attacker in (git_http, evil_https):
        asked = attacker.requests[seen[id(attacker)] :]
        assert asked and all(r.authorization is None for r in asked)

    ok(env.run("dataset", "add", "legit", seed_repo.urls["https"]))
    ok(env.run("dataset", "clone", "legit", timeout=60))
    legit = git_https.requests[seen[id(git_https)] :]
    assert legit[0].authorization is None  # sent only once the host asked
    assert all(r.authorization is not None for r in legit[1:]) and len(legit) > 1
    assert HTTP_PASSWORD not in everything_shown(env, etcd, prefix)

    # The old keys, which sent the password to every host, are refused with the new form.
    (tmp_path / "m" / "config.toml").write_text(
        f'[git]\nhttps_username = "{HTTP_USER}"\nhttps_password = "{HTTP_PASSWORD}"\n'
    )
    old = env.run("dataset", "list")
    assert old.code == 2 and "[git.credentials." in old.err
    assert len(old.err.strip().splitlines()) == 1 and HTTP_PASSWORD not in old.err


# ---------------------------------------------------------------------------- local URLs


@pytest.mark.timeout(240)
def test_a_local_path_or_file_url_is_no_dataset(
    host: Host, attacker: str, docker: Any, etcd: Any, prefix: str, tmp_path: Path
) -> None:
    """Bullet 3: the member's own disk as a dataset, its files then shown to everyone."""
    private = tmp_path / "root-secrets"  # a git repository on the member's own disk
    git("init", "-q", "-b", "main", str(private))
    shutil.copy(host.secret.path, private / "secret")
    git("add", "-A", cwd=private)
    git("commit", "-q", "-m", "mine", cwd=private)
    root = tmp_path / "m"
    env = member(root, etcd, prefix, docker=docker)
    for url in (str(private), f"file://{private}", "/etc", "file:///etc"):
        refused = env.run("dataset", "add", "mine", url)
        assert refused.code == 2 and "must be remote" in refused.err, refused
        assert "allow_local" in refused.err
    assert json.loads(ok(env.run("dataset", "list", "--json")).out) == []

    # A record written past `dataset add`: the clone refuses it too, and the run fails.
    put_record(etcd, f"{prefix}/datasets/mine", dataset_record("mine", f"file://{private}"))
    register_attack(env, "shower", f"cat {MOUNT}/secret; ls -a {MOUNT}", "--dataset", "mine")
    env.run("run", "shower", timeout=120)
    [run] = runs(env, "shower")
    assert run["status"] == "failed" and "refusing a local path" in run["error"], run
    assert not (root / "data" / "datasets" / "mine").exists()
    assert host.untouched()
    assert not host.leaked_in(everything_shown(env, etcd, prefix))

    # A member that means it (tests, one machine) says so in its own config.
    single = member(tmp_path / "single", etcd, prefix + "-single", "allow_local = true\n")
    ok(single.run("dataset", "add", "mine", str(private)))
    ok(single.run("dataset", "clone", "mine"))


# ---------------------------------------------------------------------------- names


@pytest.mark.timeout(240)
def test_a_tool_named_datasets_sees_only_its_own_folder(
    seed_repo: SeedRepo, attacker: str, docker: Any, etcd: Any, prefix: str, tmp_path: Path
) -> None:
    """Bullet 4: <importdir>/datasets held every clone of the member, .git included."""
    root = tmp_path / "m"
    env = member(root, etcd, prefix, docker=docker)
    ok(env.run("dataset", "add", "census", seed_repo.urls["git"]))
    ok(env.run("dataset", "clone", "census"))
    clone = root / "data" / "datasets" / "census"
    before = sorted(str(p.relative_to(clone)) for p in clone.rglob("*"))
    register_attack(
        env, "datasets", f"ls -aR {MOUNT}; rm -rf {MOUNT}/census; echo owned > {MOUNT}/x"
    )
    ok(env.run("run", "datasets", timeout=120))
    [run] = runs(env, "datasets")
    assert run["status"] == "succeeded", run
    listing = ok(env.run("logs", run["id"])).out
    assert "census" not in listing and "HEAD" not in listing, listing
    assert sorted(str(p.relative_to(clone)) for p in clone.rglob("*")) == before
    assert (root / "data" / "tools" / "datasets" / "x").read_text() == "owned\n"
    assert ok(env.run("dataset", "status", "census")).code == 0


# ---------------------------------------------------------------------------- ssh


@pytest.mark.timeout(120)
def test_an_ssh_user_or_host_never_becomes_an_ssh_option(
    etcd: Any, prefix: str, tmp_path: Path, host: Host
) -> None:
    """Bullet 5: ssh://-oProxyCommand=CMD@host/x passed `dataset add`."""
    marker = host.empty / "proxy-command-ran"
    env = member(tmp_path / "m", etcd, prefix)
    urls = [
        f"ssh://-oProxyCommand=touch%20{marker}@127.0.0.1/x",
        f"ssh://git@-oProxyCommand=touch%20{marker}/x",
        "-oProxyCommand=touch@127.0.0.1:x",
        "git@-oProxyCommand=x:path",
        "ssh://us$(id)er@127.0.0.1/x",
    ]
    for url in urls:
        refused = env.run("dataset", "add", "evil", "--", url)
        assert refused.code == 2 and "invalid url" in refused.err, (url, refused)
    assert json.loads(ok(env.run("dataset", "list", "--json")).out) == []
    # Records written past `dataset add` (an older member's client): the clone refuses.
    for url in urls[:2]:
        put_record(etcd, f"{prefix}/datasets/evil", dataset_record("evil", url))
        refused = env.run("dataset", "clone", "evil", timeout=60)
        assert refused.code == 1 and "refusing SSH" in refused.err, refused
    assert host.untouched()
