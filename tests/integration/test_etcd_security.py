"""maomao against an etcd with client TLS (CA, server and client certificates made here with
openssl) and user/password auth, as a user whose role can only read and write /maomao-sec/.

The etcd runs with --auth-token-ttl 5, so the token of any client idle for five seconds goes
stale: a worker firing every few seconds must authenticate again and go on."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import DUMMY_IMAGE, Env, make_env
from figures import figure
from servers import DockerDaemon, free_port, wait_for

pytestmark = pytest.mark.etcd

ROLE_PREFIX = "/maomao-sec/"
USER, PASSWORD = "maomao", "s3cret-maomao"
ROOT_PASSWORD = "root-pw"
TOKEN_TTL = 5


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(where: Path, name: str) -> None:
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN={name}",
        cwd=where,
    )  # fmt: skip


def make_cert(where: Path, name: str, ca: str, extensions: str) -> None:
    (where / f"{name}.ext").write_text(extensions)
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
        "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=where,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext",
        cwd=where,
    )  # fmt: skip


@dataclass
class SecureEtcd:
    endpoint: str
    certs: Path
    process: subprocess.Popen[bytes]

    def ctl(self, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        command = [
            "etcdctl",
            "--endpoints",
            f"https://{self.endpoint}",
            "--cacert",
            str(self.certs / "ca.crt"),
            "--cert",
            str(self.certs / "client.crt"),
            "--key",
            str(self.certs / "client.key"),
            "--command-timeout=5s",
        ]
        if user:
            command += ["--user", user]
        return subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            env={**os.environ, "ETCDCTL_API": "3"},
            timeout=30,
        )

    def keys(self, prefix: str) -> list[str]:
        listed = self.ctl("get", "--prefix", "--keys-only", prefix, user=f"root:{ROOT_PASSWORD}")
        assert listed.returncode == 0, listed.stderr
        return [line for line in listed.stdout.splitlines() if line]


@pytest.fixture(scope="module")
def secure_etcd() -> Iterator[SecureEtcd]:
    root = Path(tempfile.mkdtemp(prefix="maomao-sec-"))
    certs = root / "certs"
    certs.mkdir()
    make_ca(certs, "ca")
    make_cert(
        certs,
        "server",
        "ca",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    make_cert(certs, "client", "ca", "extendedKeyUsage=clientAuth\n")
    make_ca(certs, "other-ca")  # signs nothing we use: a wrong CA to trust
    client_port, peer_port = free_port(), free_port()
    peer = f"http://127.0.0.1:{peer_port}"
    log = open(root / "etcd.log", "wb")  # noqa: SIM115 - closed below, once etcd has it
    process = subprocess.Popen(
        [
            "etcd",
            "--name", "sec",
            "--data-dir", str(root / "data"),
            "--listen-client-urls", f"https://127.0.0.1:{client_port}",
            "--advertise-client-urls", f"https://127.0.0.1:{client_port}",
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"sec={peer}",
            "--cert-file", str(certs / "server.crt"),
            "--key-file", str(certs / "server.key"),
            "--trusted-ca-file", str(certs / "ca.crt"),
            "--client-cert-auth",
            "--auth-token-ttl", str(TOKEN_TTL),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    server = SecureEtcd(f"127.0.0.1:{client_port}", certs, process)
    try:
        wait_for(lambda: server.ctl("endpoint", "health").returncode == 0, 30, "TLS etcd")
        for step in (
            ("user", "add", f"root:{ROOT_PASSWORD}"),
            ("user", "grant-role", "root", "root"),
            ("user", "add", f"{USER}:{PASSWORD}"),
            ("role", "add", "maomao"),
            ("role", "grant-permission", "maomao", "--prefix=true", "readwrite", ROLE_PREFIX),
            ("user", "grant-role", USER, "maomao"),
            ("auth", "enable"),
        ):
            done = server.ctl(*step)
            assert done.returncode == 0, (step, done.stderr)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def secure_env(
    tmp_path: Path,
    server: SecureEtcd,
    *,
    password: str = PASSWORD,
    ca: str = "ca",
    client_cert: bool = True,
    worker: str = "",
    **extra: str,
) -> Env:
    """A maomao config for the restricted user: TLS files in [etcd], credentials in the
    environment, a fresh prefix inside the role's."""
    tls = f'ca_file = "{server.certs / f"{ca}.crt"}"\n'
    if client_cert:
        tls += f'cert_file = "{server.certs / "client.crt"}"\n'
        tls += f'key_file = "{server.certs / "client.key"}"\n'
    (tmp_path / "config.toml").write_text(
        f"[etcd]\n{tls}timeout = 3.0\n"
        f'[data]\nimportdir = "{tmp_path / "data"}"\n[docker]\nnetwork = "none"\n'
        f"[worker]\n{worker}"
    )
    prefix = f"{ROLE_PREFIX}{uuid.uuid4().hex[:12]}"
    return make_env(
        tmp_path,
        server.endpoint,
        prefix,
        MAOMAO_ETCD_USER=USER,
        MAOMAO_ETCD_PASSWORD=password,
        **extra,
    )


def one_line_error(result: Any) -> str:
    """The CLI refused: non-zero, exactly one line on stderr, no traceback."""
    assert result.code != 0, result.out
    assert "Traceback" not in result.err + result.out
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    return str(lines[0])


def test_the_role_is_limited_to_the_prefix(secure_etcd: SecureEtcd) -> None:
    inside = secure_etcd.ctl("put", f"{ROLE_PREFIX}probe", "1", user=f"{USER}:{PASSWORD}")
    outside = secure_etcd.ctl("put", "/elsewhere", "1", user=f"{USER}:{PASSWORD}")
    anonymous = secure_etcd.ctl("get", f"{ROLE_PREFIX}probe")
    assert inside.returncode == 0, inside.stderr
    assert outside.returncode != 0
    assert "permission denied" in outside.stderr
    assert anonymous.returncode != 0  # auth is on: no user, no data


def test_every_command_works_with_the_restricted_user(
    tmp_path: Path, secure_etcd: SecureEtcd
) -> None:
    env = secure_env(tmp_path, secure_etcd)
    prefix = env.vars["MAOMAO_ETCD_PREFIX"]

    registered = env.run("register", "sec-tool", "alpine:3.19", "--env", "A=1")
    tools = env.run("tools", "--json")
    scheduled = env.run("run", "sec-tool", "--cron", "*/5 * * * * *", "--name", "sec-five")
    schedules = env.run("schedule", "list", "--json")
    status = env.run("status", "--json")
    members = env.run("members", "--json")
    runs = env.run("runs", "--json")
    spikes = env.run("spikes", "--all", "--json")

    for result in (registered, tools, scheduled, schedules, status, members, runs, spikes):
        assert result.code == 0, result.err
        assert "Traceback" not in result.err
    assert [t["name"] for t in json.loads(tools.out)] == ["sec-tool"]
    [schedule] = json.loads(schedules.out)
    assert (schedule["name"], schedule["cron"]) == ("sec-five", "*/5 * * * * *")
    shown = json.loads(status.out)
    assert shown["etcd"]["reachable"] is True
    assert (shown["tools"], shown["schedules"]) == (1, 1)
    assert json.loads(members.out) == []
    assert json.loads(runs.out) == []
    stored = secure_etcd.keys(prefix)
    assert f"{prefix}/tools/sec-tool" in stored
    assert f"{prefix}/schedules/sec-five" in stored


def test_a_prefix_outside_the_role_is_one_line(tmp_path: Path, secure_etcd: SecureEtcd) -> None:
    env = secure_env(tmp_path, secure_etcd)
    env.vars["MAOMAO_ETCD_PREFIX"] = "/not-maomao"
    line = one_line_error(env.run("register", "denied", "alpine:3.19"))
    assert "denied" in line
    assert secure_etcd.keys("/not-maomao") == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong password", "refused the credentials"),
        ("wrong CA", "etcd at"),
        ("no client certificate", "etcd at"),
        ("no user", "etcd at"),
    ],
)
def test_wrong_credentials_are_one_line(
    tmp_path: Path, secure_etcd: SecureEtcd, case: str, expected: str
) -> None:
    if case == "wrong password":
        env = secure_env(tmp_path, secure_etcd, password="not-the-password")
    elif case == "wrong CA":
        env = secure_env(tmp_path, secure_etcd, ca="other-ca")
    elif case == "no client certificate":
        env = secure_env(tmp_path, secure_etcd, client_cert=False)
    else:
        env = secure_env(tmp_path, secure_etcd)
        del env.vars["MAOMAO_ETCD_USER"], env.vars["MAOMAO_ETCD_PASSWORD"]
    for command in (("tools",), ("register", "nope", "alpine:3.19"), ("status",)):
        result = env.run(*command)
        line = one_line_error(result)
        figure(f"{case}: {' '.join(command)} -> exit {result.code}: {line}")
        assert expected in line
    assert secure_etcd.keys(env.vars["MAOMAO_ETCD_PREFIX"]) == []


def test_store_authenticates_again_when_the_token_expires(
    tmp_path: Path, secure_etcd: SecureEtcd
) -> None:
    from maomao_cli import config
    from maomao_cli.store.base import Claim
    from maomao_cli.store.etcd import EtcdStore

    env = secure_env(tmp_path, secure_etcd)
    prefix = env.vars["MAOMAO_ETCD_PREFIX"]
    store = EtcdStore(config.load(env=env.vars).etcd)
    try:
        early_watch = store.watch(f"{prefix}/a/")
        store.put(f"{prefix}/x", b"1")
        time.sleep(TOKEN_TTL + 2)  # unused this long, the token is gone
        entry = store.get(f"{prefix}/x")
        time.sleep(TOKEN_TTL + 2)
        late_watch = store.watch(f"{prefix}/b/")  # the first call after the expiry
        time.sleep(TOKEN_TTL + 2)
        [outcome] = store.claim([Claim(key=f"{prefix}/claim", value=b"me")])
        store.put(f"{prefix}/a/1", b"early")
        store.put(f"{prefix}/b/1", b"late")
        early = next(iter(early_watch))
        late = next(iter(late_watch))
        early_watch.cancel()
        late_watch.cancel()
    finally:
        store.close()
    assert entry is not None and entry.value == b"1"
    assert outcome == "won"
    assert (early.key, early.value) == (f"{prefix}/a/1", b"early")
    assert (late.key, late.value) == (f"{prefix}/b/1", b"late")


def start_worker(env: Env, member: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "maomao_cli", "worker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env.vars, "MAOMAO_MEMBER": member},
    )


def stop_worker(worker: subprocess.Popen[str]) -> tuple[int, str]:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    output = worker.communicate(timeout=60)[0]
    return worker.returncode, output


def runs_of(env: Env, tool: str) -> list[dict[str, Any]]:
    result = env.run("runs", "--json", "--limit", "1000", "--tool", tool)
    assert result.code == 0, result.err
    runs: list[dict[str, Any]] = json.loads(result.out)
    return sorted(runs, key=lambda r: r["started"])


def wait_for_runs(
    env: Env, tool: str, count: int, worker: subprocess.Popen[str]
) -> list[dict[str, Any]]:
    """Until `count` runs of the tool succeeded; the test's timeout bounds the wait."""
    while True:
        runs = [r for r in runs_of(env, tool) if r["status"] == "succeeded"]
        if len(runs) >= count:
            return runs
        assert worker.poll() is None, worker.communicate()[0]
        time.sleep(0.5)


@pytest.mark.docker
@pytest.mark.timeout(180)
def test_worker_and_spikes_with_tls_and_the_restricted_role(
    tmp_path: Path, secure_etcd: SecureEtcd, docker: DockerDaemon
) -> None:
    env = secure_env(tmp_path, secure_etcd, MAOMAO_DOCKER_HOST=docker.host)
    registered = env.run(
        "register", "sec-spiky", DUMMY_IMAGE, "--network", "none", "--env", "SPIKE_AT=5"
    )
    assert registered.code == 0, registered.err
    scheduled = env.run("run", "sec-spiky", "--cron", "* * * * * *", "--name", "sec-every")
    assert scheduled.code == 0, scheduled.err
    worker = start_worker(env, "sec-worker")
    try:
        while "sec-worker" not in {m["name"] for m in json.loads(env.run("members", "--json").out)}:
            assert worker.poll() is None, worker.communicate()[0]
            time.sleep(0.2)
        members = env.run("members", "--json")
        status = env.run("status", "--json")
        wait_for_runs(env, "sec-spiky", 7, worker)
    finally:
        code, output = stop_worker(worker)
    spikes = env.run("spikes", "--tool", "sec-spiky", "--json")

    figure(f"\nworker output:\n{output}")
    assert code == 0, output
    assert "Traceback" not in output
    assert "denied" not in output
    assert "sec-worker" in {m["name"] for m in json.loads(members.out)}
    assert json.loads(status.out)["members"] == 1
    records = runs_of(env, "sec-spiky")
    # Firings that met a run still running are recorded `skipped`; nothing else fails.
    assert {r["status"] for r in records} <= {"succeeded", "skipped"}, records
    finished = [r for r in records if r["status"] == "succeeded"]
    assert len(finished) >= 7
    assert spikes.code == 0, spikes.err
    # The dummy tool counts its runs in the data dir: the fifth one is the spike.
    assert [s["run_id"] for s in json.loads(spikes.out)] == [finished[4]["id"]]
    # The member key went with its lease when the worker stopped.
    prefix = env.vars["MAOMAO_ETCD_PREFIX"]
    assert secure_etcd.keys(f"{prefix}/members/") == []


@pytest.mark.docker
@pytest.mark.timeout(180)
def test_worker_survives_token_expiry(
    tmp_path: Path, secure_etcd: SecureEtcd, docker: DockerDaemon
) -> None:
    # A lease TTL of 30 s: the member keep-alive (every 10 s) leaves the token unused for
    # longer than its 5 s; so do firings 8 s apart.
    env = secure_env(
        tmp_path, secure_etcd, worker="lease_ttl = 30\n", MAOMAO_DOCKER_HOST=docker.host
    )
    assert env.run("register", "sec-slow", DUMMY_IMAGE, "--network", "none").code == 0
    assert env.run("run", "sec-slow", "--cron", "*/8 * * * * *", "--name", "sec-slow").code == 0
    worker = start_worker(env, "sec-idle")
    try:
        wait_for_runs(env, "sec-slow", 1, worker)
        time.sleep(TOKEN_TTL + 4)  # the worker's token expired meanwhile
        # Arrives through the watch the worker opened at start, long before.
        added = env.run("run", "sec-slow", "--cron", "*/8 * * * * *", "--name", "sec-later")
        assert added.code == 0, added.err
        while not [r for r in runs_of(env, "sec-slow") if r["schedule"] == "sec-later"]:
            assert worker.poll() is None, worker.communicate()[0]
            time.sleep(0.5)
        runs = wait_for_runs(env, "sec-slow", 6, worker)
        members = env.run("members", "--json")
    finally:
        code, output = stop_worker(worker)

    figure(f"\nworker output:\n{output}")
    assert code == 0, output
    assert "Traceback" not in output
    assert "denied" not in output and "invalid auth token" not in output
    assert {m["name"] for m in json.loads(members.out)} == {"sec-idle"}
    assert len(runs) >= 6
    assert {r["status"] for r in runs_of(env, "sec-slow")} == {"succeeded"}
    fire_times = [r["fire_time"] for r in runs if r["schedule"] == "sec-slow"]
    assert len(fire_times) == len(set(fire_times))  # each firing once


def test_with_a_client_certificate_commands_read_over_grpc(
    tmp_path: Path, secure_etcd: SecureEtcd
) -> None:
    """etcd refuses gateway requests that present a client certificate with a CommonName
    (it cannot authenticate by it there): such a store reads over gRPC from the start."""
    from maomao_cli import config
    from maomao_cli.errors import BadInput
    from maomao_cli.store.base import Store
    from maomao_cli.store.etcd import EtcdStore
    from maomao_cli.store.etcd_gateway import GatewayStore

    env = secure_env(tmp_path, secure_etcd)
    prefix = env.vars["MAOMAO_ETCD_PREFIX"]
    settings = config.load(env=env.vars).etcd
    made: list[Store] = []

    def grpc_store() -> Store:
        made.append(EtcdStore(settings))
        return made[-1]

    gateway = GatewayStore(settings, grpc_store)
    try:
        gateway.put(f"{prefix}/a", b"1")
        entry = gateway.get(f"{prefix}/a")
        assert entry is not None and entry.value == b"1"
        assert gateway.count(f"{prefix}/") == 1
        assert len(made) == 1
        with pytest.raises(BadInput, match="denied access"):  # outside the role
            gateway.get("/elsewhere/a")
    finally:
        gateway.close()
