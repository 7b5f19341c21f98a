"""The collaboration's etcd cluster: found it, join it, leave it, inspect it.

Everything this machine knows about its member lives under <statedir>/cluster:
member.json (name, URLs, certificate paths), the certificates (0600), the etcd data,
pid and log, `endpoints` (every member's client endpoint, one per line, for the local
worker) and join-token.json (what a new member needs: endpoints, CA cert and key).

Joining follows etcd's runtime-reconfiguration advice: add the new member as a
learner (it does not count for quorum), start it with the initial-cluster the cluster
returned, wait until it has caught up, then promote it. Any failure after the add
removes the member again, so no half-added member is ever left behind.

The pure rules (quorum arithmetic, when to refuse) are at the top, with no I/O.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..config import Settings
from ..errors import BadInput, MaomaoError, NotFound, Unavailable
from ..processes import pid_alive, terminate

if TYPE_CHECKING:
    from ..adapters.etcdadmin import EtcdAdmin, Tls

Progress = Callable[[str], None]

# ---------------------------------------------------------------- pure rules


def quorum(voters: int) -> int:
    """Members that must agree for the cluster to make progress."""
    return voters // 2 + 1 if voters > 0 else 0


def fault_tolerance(voters: int, healthy_voters: int) -> int:
    """How many more voting members may fail before the cluster loses quorum; -1 when
    it has already lost it."""
    if voters == 0:
        return -1
    spare = healthy_voters - quorum(voters)
    return spare if spare >= 0 else -1


@dataclass(frozen=True)
class MemberHealth:
    """What the rules need to know about one member."""

    name: str
    peer_urls: tuple[str, ...]
    is_learner: bool
    healthy: bool


def join_refusals(members: Sequence[MemberHealth], name: str, peer_url: str) -> list[str]:
    """Why adding `name` at `peer_url` now would be unsafe (empty: go ahead).

    The learner does not count for quorum, but once promoted the cluster needs one more
    vote; if any member is already down, a failure of the newcomer during the change
    could stop the cluster. etcd allows only one learner at a time, and a pending one
    is usually a join that is still running (or a stale one to remove first)."""
    reasons: list[str] = []
    for member in members:
        if member.name == name and name:
            reasons.append(f"a member named {name!r} already exists")
        if peer_url in member.peer_urls:
            reasons.append(f"a member with peer URL {peer_url} already exists")
    voters = [m for m in members if not m.is_learner]
    learners = [m for m in members if m.is_learner]
    if learners:
        names = ", ".join(m.name or m.peer_urls[0] for m in learners)
        reasons.append(f"a learner is already pending ({names}); wait for it or remove it")
    unhealthy = [m.name or m.peer_urls[0] for m in voters if not m.healthy]
    if unhealthy:
        reasons.append(
            f"{len(unhealthy)} of {len(voters)} voting members unhealthy ({', '.join(unhealthy)}): "
            "a failure during the change could cost the quorum"
        )
    if voters and fault_tolerance(len(voters) + 1, sum(m.healthy for m in voters) + 1) < 0:
        reasons.append("the cluster would lose its quorum once the new member counts")
    return reasons


def leave_refusals(members: Sequence[MemberHealth], self_name: str) -> list[str]:
    """Why removing `self_name` now would be unsafe (empty: go ahead)."""
    me = next((m for m in members if m.name == self_name), None)
    if me is None:
        return []
    if me.is_learner:
        return []  # a learner never counts for quorum
    voters = [m for m in members if not m.is_learner]
    if len(voters) == 1:
        return ["this is the last voting member: removing it would end the cluster and its data"]
    reasons: list[str] = []
    healthy = sum(m.healthy for m in voters)
    if fault_tolerance(len(voters), healthy) < 0:
        reasons.append(f"the cluster has no quorum now ({healthy} of {len(voters)} healthy)")
    remaining = len(voters) - 1
    remaining_healthy = healthy - (1 if me.healthy else 0)
    if fault_tolerance(remaining, remaining_healthy) < 0:
        reasons.append(
            f"the {remaining} remaining members would have {remaining_healthy} healthy, "
            f"below the quorum of {quorum(remaining)}"
        )
    return reasons


def initial_cluster(members: Sequence[tuple[str, Sequence[str]]]) -> str:
    """etcd's --initial-cluster: name=peerurl for every peer URL of every member."""
    return ",".join(f"{name}={url}" for name, urls in members for url in urls)


def caught_up(learner_index: int, leader_index: int, *, slack: int = 10) -> bool:
    """A learner is close enough to promote (etcd itself wants 90 % of the leader's log)."""
    return learner_index > 0 and leader_index - learner_index <= slack


# ---------------------------------------------------------------- state on disk

MEMBER_FILE = "member.json"
TOKEN_FILE = "join-token.json"
ENDPOINTS_FILE = "endpoints"


@dataclass(frozen=True)
class MemberConfig:
    name: str
    host: str
    client_port: int
    peer_port: int
    tls: bool
    initial_cluster: str
    initial_state: str  # "new" (founder) or "existing" (joined)
    cluster_token: str
    member_id: int = 0

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://{_url_host(self.host)}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.scheme}://{_url_host(self.host)}:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        return f"{_url_host(self.host)}:{self.client_port}"


@dataclass(frozen=True)
class ClusterPaths:
    root: Path

    @classmethod
    def of(cls, settings: Settings) -> ClusterPaths:
        return cls(settings.data.state_path / "cluster")

    @property
    def member(self) -> Path:
        return self.root / MEMBER_FILE

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def pid(self) -> Path:
        return self.root / "etcd.pid"

    @property
    def log(self) -> Path:
        return self.root / "etcd.log"

    @property
    def endpoints(self) -> Path:
        return self.root / ENDPOINTS_FILE

    @property
    def token(self) -> Path:
        return self.root / TOKEN_FILE

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    def cert(self, kind: str) -> Path:
        return self.root / f"{kind}.crt"

    def key(self, kind: str) -> Path:
        return self.root / f"{kind}.key"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _write_private(path: Path, data: bytes | str) -> None:
    """Write atomically with mode 0600 (keys, tokens and settings alike)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_member(settings: Settings) -> MemberConfig | None:
    path = ClusterPaths.of(settings).member
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise MaomaoError(f"cannot read {path}: {exc}") from None
    data.pop("version", None)
    return MemberConfig(**data)


def _save_member(paths: ClusterPaths, member: MemberConfig) -> None:
    _write_private(paths.member, json.dumps({"version": 1, **asdict(member)}, indent=2) + "\n")


def _write_endpoints(paths: ClusterPaths, endpoints: Sequence[str]) -> None:
    _write_private(paths.endpoints, "".join(f"{e}\n" for e in endpoints))


def read_endpoints(paths: ClusterPaths) -> list[str]:
    try:
        return [line.strip() for line in paths.endpoints.read_text().splitlines() if line.strip()]
    except OSError:
        return []


# ---------------------------------------------------------------- certificates


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise Unavailable("the openssl binary is not on PATH", hint="apt-get install -y openssl")
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise MaomaoError(f"openssl {args[0]} failed: {last[:200]}")


def _create_ca(paths: ClusterPaths) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        key, crt = Path(tmp) / "ca.key", Path(tmp) / "ca.crt"
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "3650",
            "-subj", f"/O=maomao/CN=maomao collaboration CA {secrets.token_hex(4)}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        _write_private(paths.ca_key, key.read_bytes())
        _write_private(paths.ca_cert, crt.read_bytes())


def _public_key(args: list[str]) -> str:
    binary = shutil.which("openssl") or "openssl"
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise BadInput(f"not a PEM certificate or key: {args[-1]}")
    return done.stdout


def _check_ca_pair(ca_cert: Path, ca_key: Path) -> None:
    for path in (ca_cert, ca_key):
        if not path.is_file():
            raise BadInput(f"{path} does not exist")
    cert_pub = _public_key(["x509", "-noout", "-pubkey", "-in", str(ca_cert)])
    key_pub = _public_key(["pkey", "-pubout", "-in", str(ca_key)])
    if cert_pub != key_pub:
        raise BadInput(f"the CA key {ca_key} does not belong to the CA certificate {ca_cert}")


def _issue(paths: ClusterPaths, kind: str, name: str, hosts: Sequence[str]) -> None:
    """A P-256 key and a certificate signed by the collaboration's CA.

    server and peer certificates serve and dial (etcd's peers are both); the client
    certificate only dials, and its CN names the member in etcd's logs."""
    usage = "clientAuth" if kind == "client" else "serverAuth,clientAuth"
    sans = []
    for host in hosts:
        try:
            ipaddress.ip_address(host)
            sans.append(f"IP:{host}")
        except ValueError:
            sans.append(f"DNS:{host}")
    extensions = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={usage}",
    ]
    if sans:
        extensions.append("subjectAltName=" + ",".join(sans))
    with tempfile.TemporaryDirectory() as tmp:
        key, csr, crt, ext = (Path(tmp) / n for n in ("k.pem", "r.csr", "c.pem", "ext.cnf"))
        ext.write_text("\n".join(extensions) + "\n")
        _openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/O=maomao/CN={name}",
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(paths.ca_cert), "-CAkey",
            str(paths.ca_key), "-set_serial", str(int.from_bytes(secrets.token_bytes(15), "big")),
            "-days", "825", "-sha256", "-extfile", str(ext), "-out", str(crt),
        )  # fmt: skip
        _write_private(paths.key(kind), key.read_bytes())
        _write_private(paths.cert(kind), crt.read_bytes())


def _issue_member_certs(paths: ClusterPaths, name: str, host: str) -> None:
    hosts = [host, "127.0.0.1", "localhost"] if host not in ("127.0.0.1", "localhost") else [host]
    _issue(paths, "server", name, hosts)
    _issue(paths, "peer", name, hosts)  # etcd checks a dialing peer's source address too
    _issue(paths, "client", name, [])


def _install_ca(paths: ClusterPaths, ca_cert: Path | None, ca_key: Path | None) -> bool:
    """Copy the given CA in, or create one; True when created here."""
    if ca_cert is None and ca_key is None:
        _create_ca(paths)
        return True
    if ca_cert is None or ca_key is None:
        raise BadInput("give both --ca-cert and --ca-key, or neither (a new CA is created)")
    _check_ca_pair(ca_cert, ca_key)
    _write_private(paths.ca_cert, ca_cert.read_bytes())
    _write_private(paths.ca_key, ca_key.read_bytes())
    return False


def _tls(paths: ClusterPaths, member: MemberConfig | None = None) -> Tls | None:
    from ..adapters.etcdadmin import Tls

    if member is not None and not member.tls:
        return None
    try:
        return Tls(
            ca=paths.ca_cert.read_bytes(),
            cert=paths.cert("client").read_bytes(),
            key=paths.key("client").read_bytes(),
        )
    except OSError as exc:
        raise MaomaoError(f"cannot read this member's certificates: {exc}") from None


def _settings_tls(settings: Settings) -> Tls | None:
    from ..adapters.etcdadmin import Tls

    etcd = settings.etcd
    if not etcd.ca_file:
        return None
    try:
        return Tls(
            ca=Path(etcd.ca_file).read_bytes(),
            cert=Path(etcd.cert_file).read_bytes() if etcd.cert_file else None,
            key=Path(etcd.key_file).read_bytes() if etcd.key_file else None,
        )
    except OSError as exc:
        raise BadInput(f"cannot read etcd TLS file: {exc}") from None


# ---------------------------------------------------------------- the etcd process


def member_pid(paths: ClusterPaths) -> int | None:
    try:
        pid = int(paths.pid.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid, b"etcd") else None


def _etcd_argv(paths: ClusterPaths, member: MemberConfig) -> list[str]:
    binary = shutil.which("etcd")
    if binary is None:
        raise Unavailable(
            "the etcd binary is not on PATH", hint="install it: apt-get install -y etcd-server"
        )
    argv = [
        binary,
        "--name", member.name,
        "--data-dir", str(paths.data),
        "--listen-client-urls", member.client_url,
        "--advertise-client-urls", member.client_url,
        "--listen-peer-urls", member.peer_url,
        "--initial-advertise-peer-urls", member.peer_url,
        "--initial-cluster", member.initial_cluster,
        "--initial-cluster-state", member.initial_state,
        "--initial-cluster-token", member.cluster_token,
        "--auto-compaction-retention", "1",
    ]  # fmt: skip
    if member.tls:
        argv += [
            "--cert-file", str(paths.cert("server")),
            "--key-file", str(paths.key("server")),
            "--client-cert-auth",
            "--trusted-ca-file", str(paths.ca_cert),
            "--peer-cert-file", str(paths.cert("peer")),
            "--peer-key-file", str(paths.key("peer")),
            "--peer-client-cert-auth",
            "--peer-trusted-ca-file", str(paths.ca_cert),
        ]  # fmt: skip
    return argv


def _spawn(paths: ClusterPaths, member: MemberConfig, *, wait: float) -> int:
    """Start etcd in the background; returns its pid once its client port listens."""
    argv = _etcd_argv(paths, member)
    paths.data.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths.data.chmod(0o700)  # etcd refuses a data dir others can read
    with open(paths.log, "ab") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives this command
        )
    paths.pid.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            paths.pid.unlink(missing_ok=True)
            tail = paths.log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
            raise MaomaoError(
                f"etcd exited at start (status {process.returncode}): {tail[0][-200:]}",
                hint=f"see {paths.log}",
            )
        with socket.socket(socket.AF_INET6 if ":" in member.host else socket.AF_INET) as sock:
            sock.settimeout(0.3)
            if sock.connect_ex((member.host, member.client_port)) == 0:
                return process.pid
        time.sleep(0.1)
    _kill(paths)
    raise Unavailable(
        f"etcd did not listen on {member.endpoint} within {wait:g}s", hint=f"see {paths.log}"
    )


def _kill(paths: ClusterPaths, wait: float = 15.0) -> int | None:
    pid = member_pid(paths)
    if pid is None:
        paths.pid.unlink(missing_ok=True)
        return None
    terminate(pid, b"etcd", wait)
    paths.pid.unlink(missing_ok=True)
    return pid


def _wait_healthy(admin: EtcdAdmin, endpoint: str, wait: float) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if admin.healthy(endpoint, timeout=1.0):
            return
        time.sleep(0.2)
    raise Unavailable(f"etcd at {endpoint} did not become healthy within {wait:g}s")


# ---------------------------------------------------------------- commands


@dataclass(frozen=True)
class Founded:
    member: MemberConfig
    pid: int
    token_file: Path
    endpoints_file: Path
    created_ca: bool
    paths: ClusterPaths

    def config_snippet(self) -> str:
        return worker_config(self.paths, self.member)


def worker_config(paths: ClusterPaths, member: MemberConfig) -> str:
    """The [etcd] section that points this machine's worker at every known member."""
    lines = ["[etcd]", f'endpoints_file = "{paths.endpoints}"']
    if member.tls:
        lines += [
            f'ca_file = "{paths.ca_cert}"',
            f'cert_file = "{paths.cert("client")}"',
            f'key_file = "{paths.key("client")}"',
        ]
    return "\n".join(lines)


def _check_host(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        raise BadInput(
            f"--listen must be an IP address of this machine, not {host!r}",
            hint="the other members connect to it: use the address they can reach",
        ) from None


def _refuse_if_member(paths: ClusterPaths) -> None:
    if paths.member.exists():
        raise BadInput(
            f"this machine is already a cluster member ({paths.member})",
            hint="`maomao etcd start` restarts it; `maomao etcd leave` leaves the cluster",
        )


def init(
    settings: Settings,
    *,
    listen: str,
    client_port: int = 2379,
    peer_port: int = 2380,
    name: str | None = None,
    ca_cert: Path | None = None,
    ca_key: Path | None = None,
    tls: bool = True,
    wait: float = 30.0,
) -> Founded:
    """Found a collaboration: a one-member cluster that others can join."""
    from .. import validation
    from ..adapters.etcdadmin import connect

    host = _check_host(listen)
    member_name = validation.name(name or settings.member, "--name")
    paths = ClusterPaths.of(settings)
    _refuse_if_member(paths)
    if paths.data.exists() and any(paths.data.iterdir()):
        raise BadInput(f"{paths.data} holds old etcd data", hint="remove it first")
    paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    created = False
    if tls:
        created = _install_ca(paths, ca_cert, ca_key)
        _issue_member_certs(paths, member_name, host)
    member = MemberConfig(
        name=member_name,
        host=host,
        client_port=client_port,
        peer_port=peer_port,
        tls=tls,
        initial_cluster="",
        initial_state="new",
        cluster_token=f"maomao-{secrets.token_hex(6)}",
    )
    member = _replace(member, initial_cluster=initial_cluster([(member_name, [member.peer_url])]))
    pid = _spawn(paths, member, wait=wait)
    try:
        with connect([member.endpoint], _tls(paths, member)) as admin:
            _wait_healthy(admin, member.endpoint, wait)
            member = _replace(member, member_id=admin.status(member.endpoint).member_id)
    except BaseException:
        _kill(paths)
        shutil.rmtree(paths.data, ignore_errors=True)
        raise
    _save_member(paths, member)
    _write_endpoints(paths, [member.endpoint])
    _write_token(paths, member, [member.endpoint])
    return Founded(member, pid, paths.token, paths.endpoints, created, paths)


def _replace(member: MemberConfig, **changes: Any) -> MemberConfig:
    return replace(member, **changes)


def _write_token(paths: ClusterPaths, member: MemberConfig, endpoints: Sequence[str]) -> None:
    """A new member needs the endpoints and, with TLS, the CA (its key lets the newcomer
    issue its own server, peer and client certificates)."""
    token: dict[str, Any] = {"version": 1, "endpoints": list(endpoints), "tls": member.tls}
    if member.tls:
        token["ca_cert"] = paths.ca_cert.read_text()
        token["ca_key"] = paths.ca_key.read_text()
    _write_private(paths.token, json.dumps(token, indent=2) + "\n")


@dataclass(frozen=True)
class Joined:
    member: MemberConfig
    pid: int
    members: list[str]
    endpoints_file: Path
    paths: ClusterPaths


def _route_source(endpoint: str) -> str:
    """The local address this machine uses to reach `endpoint` (no packet is sent)."""
    host = endpoint.rpartition(":")[0].strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((host, 9))
            return str(sock.getsockname()[0])
    except OSError:
        raise BadInput(
            f"cannot tell which local address reaches {endpoint}",
            hint="give this machine's address with --listen",
        ) from None


def _member_health(admin: EtcdAdmin, members: Sequence[Any]) -> list[MemberHealth]:
    from ..adapters.etcdadmin import netloc

    result = []
    for member in members:
        healthy = bool(member.client_urls) and any(
            admin.healthy(netloc(url), timeout=2.0) for url in member.client_urls
        )
        result.append(MemberHealth(member.name, member.peer_urls, member.is_learner, healthy))
    return result


def join(
    settings: Settings,
    endpoint: str,
    *,
    token: Path | None = None,
    ca_cert: Path | None = None,
    ca_key: Path | None = None,
    listen: str | None = None,
    client_port: int = 2379,
    peer_port: int = 2380,
    name: str | None = None,
    tls: bool = True,
    force: bool = False,
    wait: float = 120.0,
    progress: Progress = lambda _: None,
) -> Joined:
    """Join the cluster at `endpoint` as a learner, catch up, then become a voter."""
    from .. import validation
    from ..adapters.etcdadmin import connect
    from ..config import parse_endpoints

    endpoints = list(parse_endpoints(endpoint))
    member_name = validation.name(name or settings.member, "--name")
    paths = ClusterPaths.of(settings)
    _refuse_if_member(paths)
    if token is not None:
        try:
            given = json.loads(token.read_text())
        except (OSError, ValueError) as exc:
            raise BadInput(f"cannot read the join token {token}: {exc}") from None
        tls = bool(given.get("tls", True))
        if tls and not (ca_cert or ca_key):
            paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            with tempfile.TemporaryDirectory() as tmp:
                cert_file, key_file = Path(tmp) / "ca.crt", Path(tmp) / "ca.key"
                cert_file.write_text(str(given.get("ca_cert", "")))
                key_file.write_text(str(given.get("ca_key", "")))
                _install_ca(paths, cert_file, key_file)
    elif tls and (ca_cert is None or ca_key is None):
        raise BadInput(
            "joining needs the collaboration's CA: give --token FILE, or --ca-cert and --ca-key",
            hint="the founder's `maomao etcd init` wrote the join token and printed its path",
        )
    if tls and (ca_cert or ca_key):
        paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        _install_ca(paths, ca_cert, ca_key)
    host = _check_host(listen) if listen else _route_source(endpoints[0])
    if tls:
        _issue_member_certs(paths, member_name, host)
    member = MemberConfig(
        name=member_name,
        host=host,
        client_port=client_port,
        peer_port=peer_port,
        tls=tls,
        initial_cluster="",
        initial_state="existing",
        cluster_token="",
    )
    with connect(endpoints, _tls(paths, member), timeout=5.0) as admin:
        progress(f"checking the cluster at {', '.join(endpoints)}")
        current = admin.members()
        reasons = join_refusals(_member_health(admin, current), member_name, member.peer_url)
        duplicates = [r for r in reasons if "already exists" in r]
        if duplicates:
            raise BadInput(
                f"cannot join: {'; '.join(duplicates)}",
                hint="pick another --name, or remove the stale member (`etcdctl member remove ID`)",
            )
        if reasons and not force:
            raise BadInput(
                f"refusing to join: {'; '.join(reasons)}",
                hint="fix the cluster first (`maomao etcd status`), or --force to join anyway",
            )
        # Members talk to the whole cluster from now on, not only to the given endpoint.
        admin.endpoints = [
            e for m in current if not m.is_learner for e in _netlocs(m.client_urls)
        ] or admin.endpoints
        progress(f"adding {member_name} ({member.peer_url}) as a learner")
        added_id = 0
        try:
            added, after = _when_healthy(lambda: admin.add_member([member.peer_url], learner=True))
            added_id = added.id
            member = _replace(
                member,
                member_id=added.id,
                initial_cluster=initial_cluster(
                    [(m.name or member_name if m.id == added.id else m.name, m.peer_urls)
                     for m in after]
                ),
            )  # fmt: skip
            progress("starting etcd as a learner")
            pid = _spawn(paths, member, wait=min(wait, 30.0))
            _catch_up_and_promote(admin, member, wait, progress)
        except BaseException as failure:
            _undo_join(admin, paths, member, added_id, failure)
            raise
        members = admin.members()
    _save_member(paths, member)
    known = [e for m in members for e in _netlocs(m.client_urls)] or [member.endpoint]
    _write_endpoints(paths, known)
    _write_token(paths, member, known)
    return Joined(member, pid, [m.name for m in members], paths.endpoints, paths)


def _netlocs(urls: Sequence[str]) -> list[str]:
    from ..adapters.etcdadmin import netloc

    return [netloc(u) for u in urls]


def _catch_up_and_promote(
    admin: EtcdAdmin, member: MemberConfig, wait: float, progress: Progress
) -> None:
    deadline = time.monotonic() + wait
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        try:
            mine = admin.status(member.endpoint, timeout=2.0)
            leader = next((admin.status(e, timeout=2.0) for e in admin.endpoints), None)
            leader_index = leader.raft_index if leader else 0
            if caught_up(mine.raft_index, leader_index):
                break
            last_error = f"learner at raft index {mine.raft_index}, leader at {leader_index}"
        except MaomaoError as exc:
            last_error = exc.message
        time.sleep(0.3)
    else:
        raise Unavailable(f"the new member did not catch up within {wait:g}s: {last_error}")
    progress("caught up; promoting to a voting member")
    while True:
        try:
            admin.promote_member(member.member_id)
            return
        except MaomaoError as exc:
            # etcd says the learner is not ready while it still lags behind the leader.
            # ... and "unhealthy cluster" for a few seconds after the last member change.
            if not any(m in exc.message for m in ("not in sync", "not ready", "unhealthy cluster")):
                raise
            last_error = exc.message
        if time.monotonic() >= deadline:
            raise Unavailable(f"etcd did not accept the promotion within {wait:g}s: {last_error}")
        time.sleep(0.5)


def _undo_join(
    admin: EtcdAdmin,
    paths: ClusterPaths,
    member: MemberConfig,
    added_id: int,
    failure: BaseException,
) -> None:
    """Leave nothing half-added: remove the member (found by peer URL when the add's
    answer was lost), stop the local etcd, drop its data."""
    _kill(paths)
    shutil.rmtree(paths.data, ignore_errors=True)
    problem = ""
    try:
        ids = {added_id} - {0}
        if not ids:
            ids = {m.id for m in admin.members() if member.peer_url in m.peer_urls}
        for member_id in ids:
            admin.remove_member(member_id)
    except MaomaoError as exc:
        problem = exc.message
    if problem and isinstance(failure, MaomaoError):
        failure.message += f"; removing the half-added member {added_id:x} failed too ({problem})"
        failure.hint = f"remove it by hand: etcdctl member remove {added_id:x}"
    elif isinstance(failure, MaomaoError):
        failure.message += "; the half-added member was removed"


@dataclass(frozen=True)
class Left:
    name: str
    member_id: int
    remaining: list[str]
    stopped_pid: int | None


def leave(settings: Settings, *, force: bool = False) -> Left:
    from ..adapters.etcdadmin import connect

    paths = ClusterPaths.of(settings)
    member = load_member(settings)
    if member is None:
        raise NotFound(
            "this machine is not a cluster member (no member.json)",
            hint="`maomao etcd init` founds a cluster, `maomao etcd join` joins one",
        )
    # Ask the others first: this member may be the one that is down.
    others = [e for e in read_endpoints(paths) if e != member.endpoint]
    with connect([*others, member.endpoint], _tls(paths, member), timeout=5.0) as admin:
        members = admin.members()
        me = next(
            (m for m in members if m.id == member.member_id or member.peer_url in m.peer_urls),
            None,
        )
        if me is not None:
            health = _member_health(admin, members)
            reasons = leave_refusals(health, me.name or member.name)
            if reasons and not force:
                raise BadInput(
                    f"refusing to leave: {'; '.join(reasons)}",
                    hint="fix the cluster first (`maomao etcd status`), or --force",
                )
            admin.endpoints = [e for e in admin.endpoints if e != member.endpoint] or [
                member.endpoint
            ]
            members = _remove_when_ready(admin, me.id)
    stopped = _kill(paths)
    # A removed member's data can never rejoin; a later join starts afresh.
    shutil.rmtree(paths.data, ignore_errors=True)
    paths.member.unlink(missing_ok=True)
    remaining = [m for m in members if me is None or m.id != me.id]
    # The worker here may stay a client of the cluster through the remaining members.
    _write_endpoints(paths, [e for m in remaining for e in _netlocs(m.client_urls)])
    return Left(member.name, member.member_id, [m.name for m in remaining], stopped)


T = TypeVar("T")


def _when_healthy(change: Callable[[], T], wait: float = 20.0) -> T:
    """etcd refuses a membership change ("unhealthy cluster") until the members have been
    connected for a few seconds, e.g. right after one joined or restarted."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return change()
        except MaomaoError as exc:
            if "unhealthy cluster" not in exc.message or time.monotonic() >= deadline:
                raise
        time.sleep(0.5)


def _remove_when_ready(admin: EtcdAdmin, member_id: int, wait: float = 20.0) -> list[Any]:
    return _when_healthy(lambda: admin.remove_member(member_id), wait)


def start_member(settings: Settings, wait: float = 30.0) -> tuple[MemberConfig, int, bool]:
    """Restart this machine's member from member.json; (member, pid, started now)."""
    member = load_member(settings)
    if member is None:
        raise NotFound("this machine is not a cluster member")
    paths = ClusterPaths.of(settings)
    pid = member_pid(paths)
    if pid is not None:
        return member, pid, False
    return member, _spawn(paths, member, wait=wait), True


def stop_member(settings: Settings) -> tuple[MemberConfig, int | None]:
    member = load_member(settings)
    if member is None:
        raise NotFound("this machine is not a cluster member")
    return member, _kill(ClusterPaths.of(settings))


# ---------------------------------------------------------------- status


@dataclass(frozen=True)
class MemberStatus:
    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool
    reachable: bool
    healthy: bool
    is_leader: bool
    version: str | None
    db_size: int | None
    raft_index: int | None
    raft_term: int | None
    errors: tuple[str, ...]
    problem: str | None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["id"] = f"{self.id:x}"
        data["peer_urls"] = list(self.peer_urls)
        data["client_urls"] = list(self.client_urls)
        data["errors"] = list(self.errors)
        return data


@dataclass(frozen=True)
class ClusterStatus:
    members: list[MemberStatus]
    leader: int
    voters: int
    healthy_voters: int
    quorum: int
    fault_tolerance: int
    this_member: str | None  # this machine's member name, when it is one
    local_pid: int | None
    endpoints: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "members": [m.as_dict() for m in self.members],
            "leader": f"{self.leader:x}",
            "voters": self.voters,
            "healthy_voters": self.healthy_voters,
            "quorum": self.quorum,
            "fault_tolerance": self.fault_tolerance,
            "this_member": self.this_member,
            "local_pid": self.local_pid,
            "endpoints": self.endpoints,
        }


def status(settings: Settings) -> ClusterStatus:
    """Members with their health, versions and raft positions, through this machine's
    member settings when it is one, else through the configured endpoints."""
    from ..adapters.etcdadmin import connect, netloc

    paths = ClusterPaths.of(settings)
    member = load_member(settings)
    if member is not None:
        endpoints = read_endpoints(paths) or [member.endpoint]
        if member.endpoint not in endpoints:
            endpoints.insert(0, member.endpoint)
        tls = _tls(paths, member)
    else:
        endpoints = list(settings.etcd.endpoints)
        tls = _settings_tls(settings)
    with connect(endpoints, tls, timeout=min(settings.etcd.timeout, 5.0)) as admin:
        members = admin.members()
        rows: list[MemberStatus] = []
        leader = 0
        for m in members:
            reachable = healthy = False
            problem: str | None = None
            found = None
            for url in m.client_urls:
                try:
                    found = admin.status(netloc(url), timeout=2.0)
                    reachable = True
                    healthy = m.is_learner or admin.healthy(netloc(url), timeout=2.0)
                    break
                except MaomaoError as exc:
                    problem = exc.message
            if not m.client_urls:
                problem = "not started yet"
            if found is not None:
                leader = leader or found.leader
                problem = None if healthy else "no quorum through this member"
            rows.append(
                MemberStatus(
                    id=m.id,
                    name=m.name,
                    peer_urls=m.peer_urls,
                    client_urls=m.client_urls,
                    is_learner=m.is_learner,
                    reachable=reachable,
                    healthy=healthy,
                    is_leader=False,
                    version=found.version if found else None,
                    db_size=found.db_size if found else None,
                    raft_index=found.raft_index if found else None,
                    raft_term=found.raft_term if found else None,
                    errors=found.errors if found else (),
                    problem=problem,
                )
            )
    rows = [_replace_status(r, is_leader=r.id == leader) for r in rows]
    voters = sum(not r.is_learner for r in rows)
    healthy_voters = sum(r.healthy and not r.is_learner for r in rows)
    return ClusterStatus(
        members=rows,
        leader=leader,
        voters=voters,
        healthy_voters=healthy_voters,
        quorum=quorum(voters),
        fault_tolerance=fault_tolerance(voters, healthy_voters),
        this_member=member.name if member else None,
        local_pid=member_pid(paths) if member else None,
        endpoints=endpoints,
    )


def _replace_status(row: MemberStatus, **changes: Any) -> MemberStatus:
    return replace(row, **changes)


def has_member(settings: Settings) -> bool:
    return ClusterPaths.of(settings).member.exists()
