"""The collaboration's certificates: its CA, and each member's server, peer and client
certificates signed by it, made with the openssl binary (keys never leave this machine
except the CA's, in the join token)."""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ...errors import BadInput, MaomaoError, Unavailable
from .state import ClusterPaths, write_private


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
        write_private(paths.ca_key, key.read_bytes())
        write_private(paths.ca_cert, crt.read_bytes())


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
        write_private(paths.key(kind), key.read_bytes())
        write_private(paths.cert(kind), crt.read_bytes())


def issue_member_certs(paths: ClusterPaths, name: str, host: str) -> None:
    hosts = [host, "127.0.0.1", "localhost"] if host not in ("127.0.0.1", "localhost") else [host]
    _issue(paths, "server", name, hosts)
    _issue(paths, "peer", name, hosts)  # etcd checks a dialing peer's source address too
    _issue(paths, "client", name, [])


def install_ca(paths: ClusterPaths, ca_cert: Path | None, ca_key: Path | None) -> bool:
    """Copy the given CA in, or create one; True when created here."""
    if ca_cert is None and ca_key is None:
        _create_ca(paths)
        return True
    if ca_cert is None or ca_key is None:
        raise BadInput("give both --ca-cert and --ca-key, or neither (a new CA is created)")
    _check_ca_pair(ca_cert, ca_key)
    write_private(paths.ca_cert, ca_cert.read_bytes())
    write_private(paths.ca_key, ca_key.read_bytes())
    return False
