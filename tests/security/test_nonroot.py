"""The worker without root (issue 15): the systemd unit is hardened and verifies, the
example config in docs/worker.md matches it, and a real `maomao worker` runs as a
dedicated system user against the test etcd and dockerd: its tool writes files owned by
that user, nothing under the importdir is owned by root, and one SIGTERM stops it.

The user is made for the test (a random name, removed at the end) and reaches the private
dockerd's socket through a fresh group, as the `docker` group would give it (the socket's
group and mode are restored afterwards). The venv's interpreter lives under /root (mode
0700), which another user cannot traverse: the worker runs in a private mount namespace
where the interpreter's prefix (and the socket) are bind-mounted on a world-traversable
path, so no other host permission changes; the worktree's src and the venv's packages are
world-readable and go on PYTHONPATH."""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import DUMMY_IMAGE, ROOT, Env, make_env
from maomao_cli import config
from servers import DockerDaemon, EtcdCluster

UNIT = ROOT / "docs" / "systemd" / "maomao-worker.service"
WORKER_DOC = ROOT / "docs" / "worker.md"
# systemd-analyze security's overall exposure, in tenths (0 safe .. 100 exposed): the
# unit run as root without sandboxing scores 96; this one must stay well below 50.
MAX_EXPOSURE = 45
TOOL = "nonroot"  # registered with --user: the worker's uid and gid
AS_IMAGE = "asimage"  # registered without: the image's user, root
MEMBER = "nonroot-member"
STOP_WITHIN = 30.0  # seconds from the one SIGTERM to the worker's exit
RUN_WITHIN = 90.0  # seconds until the first run of the every-second schedule succeeded


# -- the unit and the documented config ---------------------------------------------------


def unit_directives() -> dict[str, list[str]]:
    """Every [Service] directive of the unit with its values, in order (keys may repeat)."""
    directives: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            directives.setdefault(key, []).append(value)
    return directives


def documented_config() -> str:
    """The example /etc/maomao/config.toml of the section "Running without root"."""
    text = WORKER_DOC.read_text(encoding="utf-8")
    section = text.split("## Running without root", 1)[1]
    found = re.search(r"```toml\n( *# /etc/maomao/config.toml\n.*?) *```", section, re.DOTALL)
    assert found, "docs/worker.md shows no /etc/maomao/config.toml in its non-root section"
    return textwrap.dedent(found.group(1))  # the block is indented in its list item


def test_the_unit_runs_as_a_dedicated_user_with_only_its_two_paths_writable() -> None:
    service = unit_directives()
    expected = {
        "User": ["maomao"],
        "Group": ["maomao"],
        "SupplementaryGroups": ["docker"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "ReadWritePaths": ["/var/lib/maomao/data /var/lib/maomao/state"],
        "KillSignal": ["SIGTERM"],
        "ExecStart": ["/usr/local/bin/maomao worker"],
    }
    assert {key: service.get(key) for key in expected} == expected
    assert service["StateDirectory"][0].split()[0] == "maomao"
    # Ready once registered, watched by systemd (tests/unit/test_systemd_notify.py).
    assert (service["Type"], service["NotifyAccess"]) == (["notify"], ["main"])
    assert service["WatchdogSec"] == ["60"]


def test_the_documented_config_is_valid_and_names_the_units_paths(tmp_path: Path) -> None:
    example = tmp_path / "config.toml"
    example.write_text(documented_config(), encoding="utf-8")
    settings = config.load(str(example), env={})  # refuses unknown keys and bad values
    writable = {Path(p) for p in unit_directives()["ReadWritePaths"][0].split()}
    assert {settings.data.import_path, settings.data.state_path} == writable
    state_dirs = unit_directives()["StateDirectory"][0].split()
    assert {Path("/var/lib") / d for d in state_dirs} >= writable  # systemd creates them


def verifiable_copy(directory: Path) -> Path:
    """The unit with its maomao paths pointing at an executable that exists here, since
    systemd-analyze refuses a unit whose commands are missing."""
    text = UNIT.read_text(encoding="utf-8").replace("/usr/local/bin/maomao", "/bin/true")
    copy = directory / UNIT.name
    copy.write_text(text, encoding="utf-8")
    return copy


def test_the_unit_verifies_and_its_exposure_is_low(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit is not verified on this host")
    unit = verifiable_copy(tmp_path)
    verified = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # verify exits 0 on a key it ignores (a typo, a bad value): any line about it fails.
    assert verified.returncode == 0, verified.stderr
    assert unit.name not in verified.stderr + verified.stdout, verified.stderr
    security = subprocess.run(
        [analyze, "security", "--offline=yes", f"--threshold={MAX_EXPOSURE}", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert security.returncode == 0, security.stdout[-2000:] + security.stderr


# -- a real worker as a system user ----------------------------------------------------------


@dataclass(frozen=True)
class SystemUser:
    name: str
    uid: int
    gid: int
    socket_gid: int  # the group that may use the Docker socket


def _need_host_tools() -> None:
    """Skip, with the reason, on a machine that cannot run a process as another user."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a system user and a mount namespace")
    tools = ("useradd", "userdel", "groupadd", "groupdel", "unshare", "setpriv", "mount")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: cannot run the worker as another user")
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.strip()}")


def _admin(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"


@contextmanager
def system_user() -> Iterator[SystemUser]:
    """A fresh system user with its own group, also in a fresh group for the socket."""
    suffix = secrets.token_hex(4)
    name, socket_group = f"mmnr{suffix}", f"mmdk{suffix}"
    _admin("groupadd", "--system", socket_group)
    try:
        _admin(
            "useradd", "--system", "--user-group", "--no-create-home",
            "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
            "--groups", socket_group, name,
        )  # fmt: skip
        try:
            entry = pwd.getpwnam(name)
            socket_gid = int(
                subprocess.run(
                    ["getent", "group", socket_group], capture_output=True, text=True, check=True
                ).stdout.split(":")[2]
            )
            yield SystemUser(name, entry.pw_uid, entry.pw_gid, socket_gid)
        finally:
            _admin("userdel", "--force", name)  # its own group goes with it
    finally:
        _admin("groupdel", socket_group)


@contextmanager
def socket_group(socket_path: Path, gid: int) -> Iterator[None]:
    """The socket in group gid with group read-write, as dockerd sets up its `docker` group;
    owner, group and mode restored afterwards."""
    before = os.lstat(socket_path)
    os.chown(socket_path, -1, gid, follow_symlinks=False)
    os.chmod(socket_path, stat.S_IMODE(before.st_mode) | 0o060)
    try:
        yield
    finally:
        os.chown(socket_path, before.st_uid, before.st_gid, follow_symlinks=False)
        os.chmod(socket_path, stat.S_IMODE(before.st_mode))


@dataclass(frozen=True)
class Layout:
    """A world-traversable tree under /tmp: the user's importdir, statedir and home, the
    mount points for the interpreter and the socket, and the config (root's, readable)."""

    base: Path

    @property
    def importdir(self) -> Path:
        return self.base / "data"

    @property
    def statedir(self) -> Path:
        return self.base / "state"

    @property
    def home(self) -> Path:
        return self.base / "home"

    @property
    def python_prefix(self) -> Path:
        return self.base / "python"

    @property
    def socket(self) -> Path:
        return self.base / "docker.sock"

    @property
    def tmp(self) -> Path:
        return self.base / "tmp"

    @property
    def config(self) -> Path:
        return self.base / "config.toml"


@contextmanager
def layout_for(user: SystemUser) -> Iterator[Layout]:
    layout = Layout(Path(tempfile.mkdtemp(prefix="mmnr-", dir="/tmp")))
    try:
        layout.base.chmod(0o755)
        layout.python_prefix.mkdir()
        layout.tmp.mkdir()
        layout.socket.touch()
        for directory, mode in ((layout.importdir, 0o750), (layout.statedir, 0o700)):
            directory.mkdir(mode=mode)
            os.chown(directory, user.uid, user.gid)
        layout.home.mkdir(mode=0o700)
        os.chown(layout.home, user.uid, user.gid)
        layout.config.write_text(
            f'[data]\nimportdir = "{layout.importdir}"\nstatedir = "{layout.statedir}"\n'
            '[docker]\nnetwork = "none"\n[worker]\nshutdown_grace = 10.0\nretries = 0\n',
            encoding="utf-8",
        )
        layout.config.chmod(0o644)
        yield layout
    finally:
        shutil.rmtree(layout.base)


# Run inside the private mount namespace, as root, before it becomes the user: the
# interpreter's prefix and the socket bind-mounted into the layout, then the unit's
# sandbox as systemd would build it: every mount read-only (ProtectSystem=strict; the API
# file systems /proc, /sys and /dev excepted), the writable paths bound back read-write
# (ReadWritePaths=, and the home StateDirectory= gives), a fresh tmpfs for temporary files
# (PrivateTmp=), no new privileges and no capabilities (NoNewPrivileges=,
# CapabilityBoundingSet=). A mount that cannot be made read-only is left so; the probe
# checks the places that matter.
SANDBOX = r"""
set -e
mount --bind "$1" "$2"; mount --bind "$3" "$4"
awk '{print $5}' /proc/self/mountinfo | while read -r point; do
    case "$point" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
    mount -o remount,bind,ro "$point" 2>/dev/null || true
done
for writable in "$5" "$6" "$7"; do
    mount --bind "$writable" "$writable"; mount -o remount,bind,rw "$writable"
done
mount -t tmpfs -o mode=1777,size=64m,nosuid,nodev maomao-private-tmp "$8"
shift 8
exec setpriv --reuid="$USER_UID" --regid="$USER_GID" --init-groups --no-new-privs \
    --inh-caps=-all --bounding-set=-all -- "$@"
"""


def as_user(user: SystemUser, layout: Layout, docker: DockerDaemon, *argv: str) -> list[str]:
    """argv (a program under the interpreter's prefix) as user, in the sandbox above.
    Every step execs the next, so the returned command's process is the program itself."""
    return [
        "unshare", "--mount", "--propagation", "private", "--",
        "env", f"USER_UID={user.uid}", f"USER_GID={user.gid}", "sh", "-c", SANDBOX, "sh",
        str(Path(sys.base_prefix).resolve()), str(layout.python_prefix),
        str(docker.socket), str(layout.socket),
        str(layout.importdir), str(layout.statedir), str(layout.home), str(layout.tmp),
        *argv,
    ]  # fmt: skip


def python_as_user(user: SystemUser, layout: Layout, docker: DockerDaemon, *args: str) -> list[str]:
    interpreter = Path(sys.executable).resolve()
    inside = layout.python_prefix / interpreter.relative_to(Path(sys.base_prefix).resolve())
    return as_user(user, layout, docker, str(inside), "-s", *args)


def user_environment(root_env: Env, layout: Layout) -> dict[str, str]:
    """The worker's environment: the test's etcd and prefix, the socket inside the layout,
    this worktree's src and the venv's packages (world-readable) on the path."""
    packages = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    return {
        **root_env.vars,
        "HOME": str(layout.home),
        "MAOMAO_CONFIG": str(layout.config),
        "MAOMAO_DOCKER_HOST": f"unix://{layout.socket}",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *packages]),
        "PYTHONDONTWRITEBYTECODE": "1",  # the user cannot write beside the sources anyway
        "TMPDIR": str(layout.tmp),
    }


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def runs_by_tool(root_env: Env) -> dict[str, list[dict[str, Any]]]:
    listed = root_env.run("runs", "--json", "--limit", "200")
    assert listed.code == 0, listed.err
    found: dict[str, list[dict[str, Any]]] = {TOOL: [], AS_IMAGE: []}
    for record in json.loads(listed.out):
        found.setdefault(record["tool"], []).append(record)
    return found


def wait_for_outcomes(
    root_env: Env, worker: subprocess.Popen[str], log: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first succeeded run of TOOL and the first failed run of AS_IMAGE; a failure of
    TOOL fails the test at once, with the run's output."""
    deadline = time.monotonic() + RUN_WITHIN
    while time.monotonic() < deadline:
        assert worker.poll() is None, f"worker exited: {log.read_text(encoding='utf-8')}"
        runs = runs_by_tool(root_env)
        bad = [r for r in runs[TOOL] if r["status"] in ("failed", "timed-out")]
        if bad:
            tail = root_env.run("logs", bad[0]["id"]).out
            pytest.fail(f"{TOOL} run {bad[0]['status']}: {bad[0]['error']}\n{tail}")
        succeeded = [r for r in runs[TOOL] if r["status"] == "succeeded"]
        refused = [r for r in runs[AS_IMAGE] if r["status"] == "failed"]
        if succeeded and refused:
            return succeeded[-1], refused[-1]
        time.sleep(0.5)
    pytest.fail(f"no outcome within {RUN_WITHIN} s: {log.read_text(encoding='utf-8')}")


def owners(root: Path) -> dict[Path, tuple[int, int]]:
    """(uid, gid) of everything under root, links included, never followed."""
    found: dict[Path, tuple[int, int]] = {}
    for directory, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(directory) / name
            info = os.lstat(path)
            found[path] = (info.st_uid, info.st_gid)
    return found


def assert_runs_as(user: SystemUser, pid: int) -> None:
    """The process itself (not a wrapper) is the user, with no privilege left to gain."""
    status = proc_status(pid)
    assert status["Uid"].split() == [str(user.uid)] * 4, status["Uid"]
    assert status["Gid"].split() == [str(user.gid)] * 4, status["Gid"]
    assert str(user.socket_gid) in status["Groups"].split(), status["Groups"]
    assert status["NoNewPrivs"] == "1"
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0


def stop_within(worker: subprocess.Popen[str], seconds: float) -> float:
    """Seconds from one SIGTERM to the worker's exit; fails (and kills it) past seconds."""
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        pytest.fail(f"the worker did not stop within {seconds} s of one SIGTERM")
    return time.monotonic() - started


PROBE = """
import errno, json, os, socket, sys
import maomao_cli.cli.app
sock = socket.socket(socket.AF_UNIX)
sock.connect(os.environ["MAOMAO_DOCKER_HOST"].removeprefix("unix://"))
def refusal(directory):
    try:
        fd = os.open(os.path.join(directory, f"mmnr-probe-{os.getpid()}"), os.O_CREAT | os.O_WRONLY)
    except OSError as exc:
        return errno.errorcode[exc.errno]
    os.close(fd)
    os.unlink(os.path.join(directory, f"mmnr-probe-{os.getpid()}"))
    return None
json.dump({"ids": [os.getuid(), os.getgid()], "groups": os.getgroups(),
           "refused": {d: refusal(d) for d in sys.argv[1:]}}, sys.stdout)
"""


def check_the_setup(
    user: SystemUser, layout: Layout, docker: DockerDaemon, user_env: dict[str, str]
) -> None:
    """As the user, sandboxed: maomao imports, the Docker socket takes a connection, the
    writable paths are writable and the places anyone may write to are read-only."""
    writable = [layout.importdir, layout.statedir, layout.home, layout.tmp]
    shared = [Path("/tmp"), Path("/var/tmp")]  # mode 1777: refused only by the sandbox
    probe = subprocess.run(
        python_as_user(user, layout, docker, "-c", PROBE, *map(str, writable + shared)),
        capture_output=True,
        text=True,
        env=user_env,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found["ids"] == [user.uid, user.gid]
    assert user.socket_gid in found["groups"] and 0 not in found["groups"]
    expected = {str(d): None for d in writable} | {str(d): "EROFS" for d in shared}
    assert found["refused"] == expected


def assert_everything_is_owned_by(user: SystemUser, layout: Layout) -> None:
    """The tool's data files are the user's; nothing in the importdir or the statedir is
    root's."""
    found = owners(layout.importdir)
    written = [p for p in found if re.fullmatch(r"(data-.*\.txt|control-.*\.csv)", p.name)]
    assert written, f"the tool wrote no data file: {sorted(found)}"
    assert {found[p] for p in written} == {(user.uid, user.gid)}
    by_root = sorted(str(p) for p, ids in found.items() if 0 in ids)
    assert by_root == [], f"owned by root under the importdir: {by_root}"
    assert {owner for owner, _ in found.values()} == {user.uid}
    state_by_root = sorted(str(p) for p, ids in owners(layout.statedir).items() if 0 in ids)
    assert state_by_root == [], f"owned by root under the statedir: {state_by_root}"


@pytest.mark.timeout(240)
def test_a_worker_as_a_docker_group_user_writes_only_as_that_user(
    tmp_path: Path, etcd: EtcdCluster, prefix: str, docker: DockerDaemon
) -> None:
    _need_host_tools()
    socket_before = os.lstat(docker.socket)
    with (
        system_user() as user,
        layout_for(user) as layout,
        socket_group(docker.socket, user.socket_gid),
    ):
        root_env = make_env(tmp_path, etcd.endpoints, prefix, MAOMAO_DOCKER_HOST=docker.host)
        root_env = Env({**root_env.vars, "MAOMAO_CONFIG": str(layout.config)}, root_env.home)
        user_env = user_environment(root_env, layout)

        check_the_setup(user, layout, docker, user_env)

        as_user_flag = ("--user", f"{user.uid}:{user.gid}")
        for tool, extra in ((TOOL, as_user_flag), (AS_IMAGE, ())):
            registered = root_env.run("register", tool, DUMMY_IMAGE, "--network", "none", *extra)
            assert registered.code == 0, registered.err
            scheduled = root_env.run("run", tool, "--cron", "* * * * * *")
            assert scheduled.code == 0, scheduled.err

        log = tmp_path / "worker.log"
        with log.open("w", encoding="utf-8") as out:
            worker = subprocess.Popen(
                python_as_user(user, layout, docker, "-m", "maomao_cli", "worker"),
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                env={**user_env, "MAOMAO_MEMBER": MEMBER},
            )
        try:
            succeeded, refused = wait_for_outcomes(root_env, worker, log)
            assert_runs_as(user, worker.pid)
            # The health probe (`maomao worker --check`), as the same user.
            check = subprocess.run(
                python_as_user(user, layout, docker, "-m", "maomao_cli", "worker", "--check"),
                capture_output=True,
                text=True,
                env={**user_env, "MAOMAO_MEMBER": MEMBER},
                timeout=60,
            )
            assert check.returncode == 0, check.stdout + check.stderr
            took = stop_within(worker, STOP_WITHIN)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        assert worker.returncode == 0, log.read_text(encoding="utf-8")
        assert succeeded["member"] == MEMBER
        # The image's root, stripped of every capability by maomao, cannot write a
        # directory the worker's user owns: such a tool fails instead of leaving root's files.
        refusal = root_env.run("logs", refused["id"]).out
        assert "Permission denied" in refusal, refusal

        assert_everything_is_owned_by(user, layout)
        assert took < STOP_WITHIN
    socket_after = os.lstat(docker.socket)
    restored = (socket_after.st_uid, socket_after.st_gid, socket_after.st_mode)
    assert restored == (socket_before.st_uid, socket_before.st_gid, socket_before.st_mode)
