"""The safe defaults every container runs with, and what its end means.

Not privileged, every capability dropped, no-new-privileges, memory and process limits,
the tool's network, exactly one bind mount (the tool's data directory), /tmp in memory
with a size cap, and Docker's log rotation.
"""

from __future__ import annotations

from typing import Any

from ..ports import ContainerResult, ContainerSpec, ContainerStatus
from ..validation import memory_bytes


def host_config(spec: ContainerSpec) -> dict[str, Any]:
    """The HostConfig of one run's container, as the Engine API takes it (the dict docker-py's
    create_host_config builds from the same settings: tests/unit/test_engine_api.py)."""
    return {
        "Memory": memory_bytes(spec.memory),
        "NetworkMode": spec.network,
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
        "Binds": [f"{spec.data_dir}:{spec.mount_point}:rw"],
        "LogConfig": log_config(spec),
        "Tmpfs": tmpfs(spec),
        "PidsLimit": spec.pids,
    }


def log_config(spec: ContainerSpec) -> dict[str, Any]:
    """Rotated json-file logs whatever the daemon's default driver: a chatty tool cannot
    fill Docker's disk, and the log stream the runner reads stays available."""
    return {
        "Type": "json-file",
        "Config": {"max-size": spec.log_max_size, "max-file": str(spec.log_max_files)},
    }


def tmpfs(spec: ContainerSpec) -> dict[str, str]:
    """/tmp in memory, capped at the run's memory limit (its pages count against that
    limit too), so scratch files never reach the host's disk. exec and a sticky 1777
    keep /tmp as tools expect it; nosuid and nodev as Docker's own default."""
    size = memory_bytes(spec.memory)
    return {"/tmp": f"rw,exec,nosuid,nodev,mode=1777,size={size}"}


def container_result(
    spec: ContainerSpec,
    stopped: ContainerStatus | None,
    waited: dict[str, Any],
    info: dict[str, Any],
    lines: list[str],
) -> ContainerResult:
    """The run's result from the engine's wait and inspect answers (and why it was stopped)."""
    state = info.get("State") or {}
    exit_code = waited.get("StatusCode", state.get("ExitCode"))
    digest = info.get("Image")
    if stopped == "interrupted":
        return ContainerResult(exit_code, "interrupted", digest, lines, "interrupted")
    if stopped == "timed-out":
        error = f"stopped after its timeout of {spec.timeout:g}s"
        return ContainerResult(exit_code, "timed-out", digest, lines, error)
    if exit_code == 0:
        return ContainerResult(0, "succeeded", digest, lines, None)
    error = f"exited with code {exit_code}"
    if state.get("OOMKilled"):
        error += f" (killed: out of memory, limit {spec.memory})"
    return ContainerResult(exit_code, "failed", digest, lines, error)
