"""Settings: command-line flag > environment > config file > defaults.

The file is TOML (read with tomllib). `MAOMAO_CONFIG` names it; without it,
`$XDG_CONFIG_HOME/maomao/config.toml` is read when present. Unknown sections or keys
are refused, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import field, fields, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from . import validation
from .config_rules import validate
from .errors import BadInput, ConfigError
from .frozen import frozen

if TYPE_CHECKING:
    from .gitmodels import HttpsCredential

DEFAULT_ENDPOINT = "127.0.0.1:2379"


def _data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


@frozen
class EtcdSettings:
    endpoints: tuple[str, ...] = (DEFAULT_ENDPOINT,)
    prefix: str = "/maomao"
    timeout: float = 5.0
    user: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    # A file listing endpoints, one host:port a line (`maomao etcd init/join` keep
    # <statedir>/cluster/endpoints current); used when no endpoints flag or variable is set.
    endpoints_file: str | None = None


@frozen
class DataSettings:
    importdir: str = str(_data_home() / "maomao" / "data")
    # Local etcd data, dataset keys, worker health: beside the importdir by default.
    statedir: str | None = None
    # Bytes one tool's data directory may hold (0: no limit); a tool may ask for less.
    max_tool_bytes: int = 1024**3

    @property
    def import_path(self) -> Path:
        return Path(self.importdir).expanduser()

    @property
    def state_path(self) -> Path:
        if self.statedir:
            return Path(self.statedir).expanduser()
        return self.import_path.parent / "state"


@frozen
class DockerSettings:
    host: str | None = None  # None: DOCKER_HOST or the local socket
    network: str = "bridge"
    memory: str = "512m"
    pids: int = 256
    timeout: float = 3600.0
    user: str | None = None
    api_timeout: float = 10.0
    # Docker's json-file rotation of every container's output: size of one file, files kept.
    log_max_size: str = "10m"
    log_max_files: int = 3


@frozen
class WorkerSettings:
    member: str | None = None  # None: the host name
    labels: dict[str, str] = field(default_factory=dict)
    max_parallel: int = 4
    lease_ttl: int = 10
    misfire_grace: float = 300.0
    retries: int = 2
    backoff: float = 5.0
    backoff_max: float = 300.0
    shutdown_grace: float = 30.0
    runs_kept: int = 200  # run records kept per tool
    runs_max_age: float = 30 * 86400.0  # seconds a finished run record is kept (0: no limit)
    firings_ttl: int = 86400  # firing claims expire after this many seconds
    # Serve /metrics (Prometheus) on PORT (loopback) or HOST:PORT; None: no metrics.
    metrics: str | None = None
    log_format: str = "text"  # or "json": one JSON object per line
    # Seconds this member's clock may be off the collaboration's before it stops claiming.
    max_clock_offset: float = 1.0
    backfill_max: int = 1000  # the most firings one `schedule backfill` may request
    # Bytes of each run's full output this member keeps in <statedir>/logs ("0": none).
    full_log_max: str = "16m"
    # Seconds `maomao logs RUN --full` waits for the member that ran RUN to send it.
    full_log_wait: float = 10.0

    @property
    def full_log_bytes(self) -> int:
        return validation.size(self.full_log_max, "[worker] full_log_max", minimum=0)


@frozen
class SpikeSettings:
    method: Literal["robust", "seed"] = "robust"
    sensitivity: float = 1.0
    min_history: int = 4
    window: int = 30
    seed_threshold: float = 0.20
    hook_command: str | None = None
    webhook_url: str | None = None
    hook_timeout: float = 10.0


@frozen
class GitSettings:
    timeout: float = 60.0
    known_hosts: str | None = None
    trust_new_hosts: bool = False
    # https credentials by "host" (port 443) or "host:port": [git.credentials."HOST"].
    credentials: dict[str, HttpsCredential] = field(default_factory=dict)
    ca_file: str | None = None  # CA bundle for https remotes; unset: the system's
    # Local paths and file:// as dataset URLs: the shared registry could otherwise make
    # this member clone (and show its tools) any directory of its own disk.
    allow_local: bool = False


@frozen
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None  # None: one is made at first start into <statedir>/api-token
    max_body: int = 1_048_576
    max_streams: int = 8  # event streams open at once
    # Host header names accepted besides the address served (and loopback names on loopback).
    allowed_hosts: tuple[str, ...] = ()


@frozen
class Settings:
    etcd: EtcdSettings = field(default_factory=EtcdSettings)
    data: DataSettings = field(default_factory=DataSettings)
    docker: DockerSettings = field(default_factory=DockerSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    spikes: SpikeSettings = field(default_factory=SpikeSettings)
    git: GitSettings = field(default_factory=GitSettings)
    serve: ServeSettings = field(default_factory=ServeSettings)
    source: str | None = None  # the config file read, if any

    @property
    def member(self) -> str:
        return self.worker.member or default_member_name()


SECRET_FIELDS = {"password", "token"}
MASK = "********"


def default_member_name() -> str:
    """The host name, lowered and cut to a valid name."""
    raw = os.uname().nodename.lower()  # gethostname's answer, without importing socket
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in raw).strip("._-")
    return (cleaned or "member")[:63]


def parse_endpoints(text: str) -> tuple[str, ...]:
    endpoints: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host_port = item.removeprefix("http://").removeprefix("https://")
        host, sep, port = host_port.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise BadInput(
                f"invalid etcd endpoint {item!r}: expected host:port, e.g. 127.0.0.1:2379"
            )
        endpoints.append(host_port)
    if not endpoints:
        raise BadInput("no etcd endpoint given: expected host:port[,host:port...]")
    return tuple(endpoints)


_SECTIONS: dict[str, type[Any]] = {
    "etcd": EtcdSettings,
    "data": DataSettings,
    "docker": DockerSettings,
    "worker": WorkerSettings,
    "spikes": SpikeSettings,
    "git": GitSettings,
    "serve": ServeSettings,
}


def _endpoints(where: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return parse_endpoints(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return parse_endpoints(",".join(value))
    raise ConfigError(f"{where} must be a list of host:port strings")


def _host_names(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f'{where} must be a list of host names, e.g. ["maomao.example.org"]')
    for name in value:
        if not name.isprintable() or any(c in name for c in " /@?#"):
            raise ConfigError(f"{where}: {name!r} is not a host name")
    return tuple(value)


def _labels(where: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f'{where} must be a table of strings, e.g. {{ region = "eu" }}')
    return validation.labels(value, field=where)


# Keys whose value is not a scalar of their default's type.
_SPECIAL: dict[tuple[str, str], Callable[[str, Any], Any]] = {
    ("etcd", "endpoints"): _endpoints,
    ("worker", "labels"): _labels,
    ("git", "credentials"): lambda where, value: _gitcredentials().parse(where, value),
    ("serve", "allowed_hosts"): _host_names,
}

# Keys no longer read, and why: refused, so no one believes they still apply.
_RETIRED: frozenset[tuple[str, str]] = frozenset(
    ("git", key) for key in ("https_username", "https_password")
)


def _gitcredentials() -> ModuleType:
    # Imported when a config has git credentials: most commands read none.
    from . import gitcredentials

    return gitcredentials


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _finite(value: Any) -> bool:
    # TOML has nan and inf: a nan timeout passes every `< 0` check, an inf one hangs.
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and math.isfinite(value) and value >= 0


# What a value must be, by the type of its key's default: bool before int (a bool is an
# int), and a string for the rest (str, or None for unset).
_SCALARS: tuple[tuple[type, Callable[[Any], bool], str], ...] = (
    (bool, lambda value: isinstance(value, bool), "must be true or false"),
    (int, _whole, "must be a whole number >= 0"),
    (float, _finite, "must be a finite number >= 0"),
    (object, lambda value: isinstance(value, str), "must be a string"),
)


def _coerce(section: str, key: str, value: Any, default: Any) -> Any:
    where = f"[{section}] {key}"
    special = _SPECIAL.get((section, key))
    if special is not None:
        return special(where, value)
    kind, accepts, rule = next(s for s in _SCALARS if isinstance(default, s[0]))
    if not accepts(value):
        raise ConfigError(f"{where} {rule}")
    return float(value) if kind is float else value


def _from_mapping(data: Mapping[str, Any], source: str) -> Settings:
    settings = Settings(source=source)
    for section, table in data.items():
        if section not in _SECTIONS:
            raise ConfigError(
                f"{source}: unknown section [{section}]",
                hint=f"known sections: {', '.join(_SECTIONS)}",
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        current = getattr(settings, section)
        known = {f.name for f in fields(current)}
        updates: dict[str, Any] = {}
        for key, value in table.items():
            if (section, key) in _RETIRED:
                raise ConfigError(f"{source}: {_gitcredentials().retired(key)}")
            if key not in known:
                raise ConfigError(
                    f"{source}: unknown key {key!r} in [{section}]",
                    hint=f"known keys: {', '.join(sorted(known))}",
                )
            updates[key] = _coerce(section, key, value, getattr(current, key))
        settings = replace(settings, **{section: replace(current, **updates)})
    validate(settings)
    return settings


def _read_endpoints_file(name: str) -> tuple[str, ...]:
    path = Path(name).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").split()
    except OSError as exc:
        raise ConfigError(
            f"[etcd] endpoints_file {path}: {exc.strerror or exc}",
            hint="`maomao etcd init` or `maomao etcd join` writes it",
        ) from None
    return parse_endpoints(",".join(lines))


def config_path(explicit: str | None, env: Mapping[str, str] | None = None) -> Path | None:
    environ = os.environ if env is None else env
    if explicit:
        return Path(explicit).expanduser()
    named = environ.get("MAOMAO_CONFIG")
    if named:
        return Path(named).expanduser()
    config_home = environ.get("XDG_CONFIG_HOME")
    default = (Path(config_home) if config_home else _config_home()) / "maomao" / "config.toml"
    return default if default.is_file() else None


# Variables that set one key each (the endpoints and the prefix also have flags).
_ENVIRONMENT: tuple[tuple[str, str, str], ...] = (
    ("MAOMAO_ETCD_USER", "etcd", "user"),
    ("MAOMAO_ETCD_PASSWORD", "etcd", "password"),
    ("MAOMAO_IMPORTDIR", "data", "importdir"),
    ("MAOMAO_DOCKER_HOST", "docker", "host"),
    ("MAOMAO_MEMBER", "worker", "member"),
    ("MAOMAO_SERVE_TOKEN", "serve", "token"),
)


def _read_file(path: Path) -> Settings:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist",
            hint="create it (see config.toml in the maomao repository) or unset MAOMAO_CONFIG",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    import tomllib  # only with a config file

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return _from_mapping(data, str(path))


def _etcd_overrides(
    etcd: EtcdSettings, environ: Mapping[str, str], endpoints: str | None, prefix: str | None
) -> EtcdSettings:
    """Flag over variable over file for the endpoints and the prefix."""
    env_endpoints = environ.get("MAOMAO_ETCD_ENDPOINTS")
    if endpoints or env_endpoints:
        etcd = replace(etcd, endpoints=parse_endpoints(endpoints or env_endpoints or ""))
    elif etcd.endpoints_file:
        etcd = replace(etcd, endpoints=_read_endpoints_file(etcd.endpoints_file))
    if prefix or environ.get("MAOMAO_ETCD_PREFIX"):
        etcd = replace(etcd, prefix=prefix or environ["MAOMAO_ETCD_PREFIX"])
    return etcd


def _environment_overrides(settings: Settings, environ: Mapping[str, str]) -> Settings:
    for variable, section, key in _ENVIRONMENT:
        value = environ.get(variable)
        if not value:
            continue
        if variable == "MAOMAO_MEMBER":
            validation.name(value, variable)  # named as the user set it, not as [worker] member
        table = replace(getattr(settings, section), **{key: value})
        settings = replace(settings, **{section: table})
    password = environ.get("MAOMAO_GIT_PASSWORD")
    if password:
        credentials = _gitcredentials().with_password(settings.git.credentials, password)
        settings = replace(settings, git=replace(settings.git, credentials=credentials))
    return settings


def load(
    explicit_path: str | None = None,
    *,
    endpoints: str | None = None,
    prefix: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Read the effective settings; flags given here win over the environment."""
    environ = os.environ if env is None else env
    path = config_path(explicit_path, environ)
    settings = Settings() if path is None else _read_file(path)
    settings = replace(settings, etcd=_etcd_overrides(settings.etcd, environ, endpoints, prefix))
    settings = _environment_overrides(settings, environ)
    validate(settings)
    return settings


def as_dict(settings: Settings, *, mask: bool = True) -> dict[str, Any]:
    """The effective settings as plain data, secrets masked."""
    result: dict[str, Any] = {"source": settings.source}
    for section in _SECTIONS:
        table: dict[str, Any] = {}
        current = getattr(settings, section)
        for f in fields(current):
            value = getattr(current, f.name)
            if mask and f.name in SECRET_FIELDS and value:
                value = MASK
            if (section, f.name) == ("git", "credentials"):
                value = _gitcredentials().shown(value, MASK if mask else None)
            if isinstance(value, tuple):
                value = list(value)
            table[f.name] = value
        result[section] = table
    result["data"]["statedir"] = str(settings.data.state_path)
    result["worker"]["member"] = settings.member
    return result
