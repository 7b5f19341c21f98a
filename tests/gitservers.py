"""Real git servers on loopback for the git adapter tests, started and stopped here.

- `git daemon` (git://) with receive-pack enabled;
- smart HTTP: `git http-backend` run as CGI behind a small threaded Python HTTP server that
  asks for Basic credentials (user `maomao`, password `s3cret`) and logs each request's
  Authorization header (`GitHttp.requests`); over plain http (`git_http`) and over https
  (`git_https`, a self-signed certificate for 127.0.0.1 made with openssl, `tls.cert`);
- OpenSSH `sshd` on a free port with its own host key and config in a temp dir, logging in
  as the current user with an authorized_keys holding a key made by generate_ssh_key.
  Skipped with the reason when sshd is not installed or does not start.

Needs the Debian packages git (git daemon, git http-backend) and openssh-server plus
openssh-client (sshd, ssh, ssh-keygen).

Import the fixtures in a test module with `from gitservers import *  # noqa: F403`
or by name.
"""

from __future__ import annotations

import base64
import getpass
import os
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from servers import free_port, port_open, wait_for

HTTP_USER = "maomao"
HTTP_PASSWORD = "s3cret"
SEED_FILES = {"README.md": "seed dataset\n", "data/control-2024-01-01.csv": "1.0\n"}

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Seed",
    "GIT_AUTHOR_EMAIL": "seed@example.invalid",
    "GIT_COMMITTER_NAME": "Seed",
    "GIT_COMMITTER_EMAIL": "seed@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",  # ignore the developer's ~/.gitconfig
}


def git(*args: str, cwd: Path | None = None, check: bool = True) -> str:
    """Run the git command line (tests only: maomao itself never needs it)."""
    proc = subprocess.run(
        ["git", "-c", "safe.directory=*", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def make_bare_repo(path: Path, files: dict[str, str] | None = None) -> str:
    """A bare repository on `main` with one seed commit; returns the commit's sha."""
    git("init", "-q", "--bare", "-b", "main", str(path))
    git("config", "http.receivepack", "true", cwd=path)  # http-backend pushes need it
    work = path.parent / f".{path.name}-seed"
    git("init", "-q", "-b", "main", str(work))
    for rel, text in (SEED_FILES if files is None else files).items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "seed", cwd=work)
    git("push", "-q", str(path), "main", cwd=work)
    shutil.rmtree(work)
    return git("rev-parse", "main", cwd=path)


# ---------------------------------------------------------------------------- git daemon


@dataclass
class GitDaemon:
    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> GitDaemon:
        with open(
            self.root.parent / "git-daemon.log", "ab"
        ) as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [
                    "git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack",
                    "--informative-errors", f"--base-path={self.root}",
                    "--listen=127.0.0.1", f"--port={self.port}", str(self.root),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **GIT_ENV},
            )  # fmt: skip
        wait_for(lambda: port_open(self.port), 20, "git daemon")
        return self

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---------------------------------------------------------------------------- smart HTTP


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


@dataclass(frozen=True)
class Request:
    """One request the HTTP server saw: what a test checks credentials against."""

    method: str
    path: str
    authorization: str | None


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path


def make_tls(folder: Path) -> Tls:
    """A self-signed certificate for 127.0.0.1 (openssl), for the https git server."""
    folder.mkdir(parents=True, exist_ok=True)
    tls = Tls(folder / "cert.pem", folder / "key.pem")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(tls.key), "-out", str(tls.cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return tls


def _http_handler(root: Path, requests: list[Request]) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{HTTP_USER}:{HTTP_PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep pytest output clean

        def _serve(self) -> None:
            body = _read_body(self)
            requests.append(Request(self.command, self.path, self.headers.get("Authorization")))
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GIT_CONFIG_NOSYSTEM": "1",
                "HOME": "/nonexistent",
                "REMOTE_USER": HTTP_USER,
                "REMOTE_ADDR": "127.0.0.1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "GATEWAY_INTERFACE": "CGI/1.1",
                "SERVER_PROTOCOL": "HTTP/1.1",
            }
            if self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
            if self.headers.get("Git-Protocol"):
                env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
            proc = subprocess.run(
                ["git", "http-backend"], input=body, capture_output=True, env=env, timeout=120
            )
            head, _, payload = proc.stdout.partition(b"\r\n\r\n")
            if not _:
                head, _, payload = proc.stdout.partition(b"\n\n")
            status = 200
            headers = []
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _serve
        do_POST = _serve

    return Handler


@dataclass
class GitHttp:
    root: Path
    tls: Tls | None = None  # https with this certificate, else plain http
    port: int = field(default_factory=free_port)
    server: ThreadingHTTPServer | None = None
    requests: list[Request] = field(default_factory=list)

    def start(self) -> GitHttp:
        handler = _http_handler(self.root, self.requests)
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.server.daemon_threads = True
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls.cert, self.tls.key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        wait_for(lambda: port_open(self.port), 10, "git http server")
        return self

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def host(self) -> str:
        """The credential key of this server: 127.0.0.1:PORT."""
        return f"127.0.0.1:{self.port}"

    def url(self, name: str, *, credentials: bool = False) -> str:
        auth = f"{HTTP_USER}:{HTTP_PASSWORD}@" if credentials else ""
        return f"{self.scheme}://{auth}127.0.0.1:{self.port}/{name}"

    def authorizations(self) -> list[str]:
        """Every Authorization header this server has received."""
        return [r.authorization for r in self.requests if r.authorization is not None]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


# ---------------------------------------------------------------------------- sshd


@dataclass
class Sshd:
    """sshd as the current user (root in CI) on a free port; the client key is `client_key`."""

    home: Path
    client_key: Path
    port: int = field(default_factory=free_port)
    user: str = field(default_factory=getpass.getuser)
    process: subprocess.Popen[bytes] | None = None

    @property
    def known_hosts(self) -> Path:
        """A known-hosts file that holds this server's host key."""
        return self.home / "known_hosts"

    @property
    def empty_known_hosts(self) -> Path:
        return self.home / "known_hosts.empty"

    def start(self) -> Sshd:
        from maomao_cli.adapters.git import generate_ssh_key

        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        if not os.path.exists(sshd):
            pytest.skip("sshd not installed (Debian package openssh-server)")
        self.home.mkdir(parents=True, exist_ok=True)
        host_key = self.home / "ssh_host_ed25519_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True
        )
        public = generate_ssh_key(self.client_key, "maomao-test")
        authorized = self.home / "authorized_keys"
        authorized.write_text(public + "\n")
        authorized.chmod(0o600)
        host_pub = (self.home / "ssh_host_ed25519_key.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.empty_known_hosts.write_text("")
        config = self.home / "sshd_config"
        config.write_text(
            f"ListenAddress 127.0.0.1:{self.port}\n"
            f"HostKey {host_key}\n"
            f"PidFile {self.home / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {authorized}\n"
            f"AllowUsers {self.user}\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"  # the temp dir lives under world-writable /tmp
            "AcceptEnv GIT_PROTOCOL\n"
            "LogLevel VERBOSE\n"
        )
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        with open(self.home / "sshd.log", "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_for(
                lambda: port_open(self.port) or self.process.poll() is not None,
                20,
                "sshd",
            )
        except TimeoutError:
            self.stop()
            pytest.skip("sshd did not start within 20s")
        if self.process.poll() is not None:
            text = (self.home / "sshd.log").read_text().strip().splitlines()
            pytest.skip(f"sshd cannot run here: {text[-1] if text else 'no output'}")
        return self

    def url(self, path: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---------------------------------------------------------------------------- fixtures


@dataclass
class SeedRepo:
    """A bare repository with one seed commit, and its URL per protocol."""

    name: str
    path: Path
    seed: str
    urls: dict[str, str]

    def head(self) -> str:
        return git("rev-parse", "main", cwd=self.path)

    def fresh_clone(self, dest: Path) -> Path:
        """A clone made with the git command line, to check what the server holds."""
        git("clone", "-q", "--branch", "main", str(self.path), str(dest))
        return dest


@pytest.fixture(scope="session")
def git_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git not installed (Debian package git)")
    return tmp_path_factory.mktemp("git-servers") / "repos"


@pytest.fixture(scope="session")
def git_daemon(git_root: Path) -> Iterator[GitDaemon]:
    git_root.mkdir(parents=True, exist_ok=True)
    daemon = GitDaemon(git_root).start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def git_http(git_root: Path) -> Iterator[GitHttp]:
    git_root.mkdir(parents=True, exist_ok=True)
    server = GitHttp(git_root).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def git_https(git_root: Path) -> Iterator[GitHttp]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed (Debian package openssl)")
    git_root.mkdir(parents=True, exist_ok=True)
    server = GitHttp(git_root, tls=make_tls(git_root.parent / "tls")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sshd(git_root: Path) -> Iterator[Sshd]:
    home = git_root.parent / "sshd"
    server = Sshd(home, client_key=git_root.parent / "keys" / "id_ed25519").start()
    yield server
    server.stop()


@pytest.fixture
def seed_repo(
    request: pytest.FixtureRequest,
    git_root: Path,
    git_daemon: GitDaemon,
    git_http: GitHttp,
    git_https: GitHttp,
) -> SeedRepo:
    """A new bare repo with a seed commit, served over file, git://, HTTP and HTTPS (ssh
    via sshd)."""
    git_root.mkdir(parents=True, exist_ok=True)
    name = f"{request.node.name.replace('[', '-').replace(']', '')[:40]}-{os.urandom(3).hex()}.git"
    path = git_root / name
    seed = make_bare_repo(path)
    urls = {
        "path": str(path),
        "file": f"file://{path}",
        "git": git_daemon.url(name),
        "http": git_http.url(name),
        "https": git_https.url(name),
    }
    return SeedRepo(name, path, seed, urls)
