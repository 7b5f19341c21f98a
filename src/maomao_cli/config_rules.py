"""The rules the values of the settings keep beyond their types (config.py coerces the
types): the etcd prefix and credentials, the worker's and the server's bounds, the Docker
limits, the spike detector's parameters. A broken rule is one ConfigError naming the key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import validation
from .errors import ConfigError

if TYPE_CHECKING:
    from .config import Settings, SpikeSettings


def validate(settings: Settings) -> None:
    """Refuse settings whose values, each of the right type, break a rule."""
    if not settings.etcd.prefix.startswith("/") or settings.etcd.prefix.rstrip("/") == "":
        raise ConfigError(
            f"[etcd] prefix {settings.etcd.prefix!r} must start with '/' and name a folder, e.g. /maomao"
        )
    if settings.etcd.timeout <= 0:
        raise ConfigError("[etcd] timeout must be greater than 0")
    if (settings.etcd.user is None) != (settings.etcd.password is None):
        # python3-etcd3 refuses one without the other with a bare Exception.
        raise ConfigError(
            "[etcd] user and password go together: set both or neither",
            hint="[etcd] user / password in config.toml, or MAOMAO_ETCD_USER / MAOMAO_ETCD_PASSWORD",
        )
    if settings.worker.member is not None:
        validation.name(settings.worker.member, "[worker] member")
    if settings.worker.max_parallel < 1:
        raise ConfigError("[worker] max_parallel must be at least 1")
    if settings.serve.max_streams < 1:
        raise ConfigError("[serve] max_streams must be at least 1")
    if settings.worker.log_format not in ("text", "json"):
        raise ConfigError('[worker] log_format must be "text" or "json"')
    if settings.worker.lease_ttl < 2:
        raise ConfigError("[worker] lease_ttl must be at least 2 seconds")
    if not settings.worker.max_clock_offset > 0:
        raise ConfigError(
            "[worker] max_clock_offset must be greater than 0 seconds",
            hint="the default is 1; a member beyond it claims no firings",
        )
    if not settings.worker.full_log_wait > 0:
        raise ConfigError("[worker] full_log_wait must be greater than 0 seconds")
    _ = settings.worker.full_log_bytes  # refused here, not at the first run
    validation.memory(settings.docker.memory, "[docker] memory")
    validation.size(settings.docker.log_max_size, "[docker] log_max_size", minimum=1024)
    if settings.docker.log_max_files < 1:
        raise ConfigError("[docker] log_max_files must be at least 1")
    _validate_spikes(settings.spikes)


# What the detector (detect/detector.py: DetectorParams) can use; checked here so a bad
# value fails when the config loads, not at every run's spike check.
SPIKE_WINDOW_MAX = 10_000
SPIKE_METHODS = ("robust", "seed")


def _validate_spikes(spikes: SpikeSettings) -> None:
    if spikes.method not in SPIKE_METHODS:
        raise ConfigError("[spikes] method must be 'robust' or 'seed'")
    for key in ("sensitivity", "seed_threshold", "hook_timeout"):
        if not getattr(spikes, key) > 0:
            raise ConfigError(f"[spikes] {key} must be greater than 0")
    for key in ("min_history", "window"):
        if not 3 <= getattr(spikes, key) <= SPIKE_WINDOW_MAX:
            raise ConfigError(
                f"[spikes] {key} must be a whole number from 3 to {SPIKE_WINDOW_MAX}",
                hint="the detector compares a point with at least the 2 before it",
            )
