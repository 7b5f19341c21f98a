"""What keeps two pytest-xdist workers apart on one machine: which worker this process is,
its own slice of loopback ports and its own subnets for network namespaces.

A run without xdist is worker 0 of 1. Everything else a test holds is already its own
(tmp_path, a key prefix, temporary data roots with random names, namespaces named with a
random tag) or per worker by construction (session fixtures: one etcd, one dockerd, one
set of git servers in each worker process).
"""

from __future__ import annotations

import os
import random
import socket

# Ports handed to the tests' servers lie below Linux's ephemeral range (32768-60999 by
# default): an outgoing connection never takes one between free_port() and the server
# binding it. Each worker draws from its own slice, so two workers never pick one port.
PORTS = range(20000, 32768)
_handed: set[int] = set()


def worker_index() -> int:
    """0 for gw0 (or a run without xdist), 1 for gw1..."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name.removeprefix("gw"))


def worker_count() -> int:
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def port_slice(index: int, count: int) -> range:
    size = len(PORTS) // count
    start = PORTS.start + index * size
    return range(start, start + size)


def free_port() -> int:
    """A loopback port nobody listens on, from this worker's slice, never handed out twice
    by this process (a port a test keeps closed stays closed)."""
    ports = port_slice(worker_index(), worker_count())
    candidates = [p for p in ports if p not in _handed]
    random.shuffle(candidates)  # two separate sessions on one machine rarely meet
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed.add(port)
        return port
    raise RuntimeError(f"no free loopback port left in {ports}")


def subnet(network: str, base: int) -> str:
    """A /24 of this worker for one suite's network namespaces: `network`.<base + worker>
    (10.231.91 for gw0, 10.231.92 for gw1...). Namespaces are isolated from one another
    already; a subnet per worker keeps two rigs apart in what they print too."""
    third = base + worker_index()
    if third > 255:
        raise RuntimeError(f"no subnet {network}.{third} for this worker: run fewer (-n)")
    return f"{network}.{third}"
