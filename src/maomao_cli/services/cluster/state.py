"""What this machine keeps about its cluster member, under <statedir>/cluster.

member.json (name, URLs, bootstrap), the certificates (0600), the etcd data, pid and log,
`endpoints` (every member's client endpoint, one per line, for the local worker) and
join-token.json (what a new member needs: endpoints, CA cert and key).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ...config import Settings
from ...errors import BadInput, MaomaoError
from ...etcdvalues import Tls
from ...frozen import frozen
from ..etcdprocess import EtcdFiles, EtcdSpec, ServerTls

MEMBER_FILE = "member.json"
TOKEN_FILE = "join-token.json"
ENDPOINTS_FILE = "endpoints"


def url_host(host: str) -> str:
    """A host as it appears in a URL or host:port (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host else host


@frozen
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
        return f"{self.scheme}://{url_host(self.host)}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.scheme}://{url_host(self.host)}:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        return f"{url_host(self.host)}:{self.client_port}"


@frozen
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
    def etcd_files(self) -> EtcdFiles:
        return EtcdFiles(data=self.data, pid=self.pid, log=self.log)

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


def etcd_spec(paths: ClusterPaths, member: MemberConfig) -> EtcdSpec:
    """The etcd server this member runs, with its certificates when it uses TLS."""
    tls = None
    if member.tls:
        tls = ServerTls(
            ca=paths.ca_cert,
            server_cert=paths.cert("server"),
            server_key=paths.key("server"),
            peer_cert=paths.cert("peer"),
            peer_key=paths.key("peer"),
        )
    return EtcdSpec(
        name=member.name,
        endpoint=member.endpoint,
        client_url=member.client_url,
        peer_url=member.peer_url,
        initial_cluster=member.initial_cluster,
        initial_state=member.initial_state,
        cluster_token=member.cluster_token,
        tls=tls,
    )


def write_private(path: Path, data: bytes | str) -> None:
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


def load_member(paths: ClusterPaths) -> MemberConfig | None:
    try:
        data = json.loads(paths.member.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise MaomaoError(f"cannot read {paths.member}: {exc}") from None
    data.pop("version", None)
    return MemberConfig(**data)


def save_member(paths: ClusterPaths, member: MemberConfig) -> None:
    write_private(paths.member, json.dumps({"version": 1, **asdict(member)}, indent=2) + "\n")


def write_endpoints(paths: ClusterPaths, endpoints: Sequence[str]) -> None:
    write_private(paths.endpoints, "".join(f"{e}\n" for e in endpoints))


def read_endpoints(paths: ClusterPaths) -> list[str]:
    try:
        return [line.strip() for line in paths.endpoints.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def write_token(paths: ClusterPaths, member: MemberConfig, endpoints: Sequence[str]) -> None:
    """A new member needs the endpoints and, with TLS, the CA (its key lets the newcomer
    issue its own server, peer and client certificates)."""
    token: dict[str, Any] = {"version": 1, "endpoints": list(endpoints), "tls": member.tls}
    if member.tls:
        token["ca_cert"] = paths.ca_cert.read_text()
        token["ca_key"] = paths.ca_key.read_text()
    write_private(paths.token, json.dumps(token, indent=2) + "\n")


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


def member_tls(paths: ClusterPaths, member: MemberConfig | None = None) -> Tls | None:
    """This member's client certificate, to talk to the cluster (None without TLS)."""
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


def settings_tls(settings: Settings) -> Tls | None:
    """The TLS files of the [etcd] settings, for a machine that is no member."""
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
