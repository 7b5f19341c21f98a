"""Reading what the workers wrote, for tests that poll while they work.

A poll through `maomao runs --json` starts a Python process (about half a second of CPU);
a test polling every 0.2 s kept a core of this 2-core machine busy, slowing every worker
under test. etcdctl reads the same records in milliseconds. Records are as stored: times
are epoch seconds, not the CLI's ISO text. What a test finally asserts still goes through
the CLI.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from typing import Any, Literal

from conftest import Env
from maomao_cli.keys import Keys

Kind = Literal["runs", "members"]


def stored(env: Env, what: Kind) -> list[dict[str, Any]]:
    """The JSON records of runs or members in the test's plain-text etcd (no TLS, no auth),
    as the workers stored them."""
    return stored_under(env.vars["MAOMAO_ETCD_ENDPOINTS"], env.vars["MAOMAO_ETCD_PREFIX"], what)


def stored_under(endpoints: str, key_prefix: str, what: Kind) -> list[dict[str, Any]]:
    """The same, of any prefix on any plain-text etcd (`endpoints` comma-separated)."""
    keys = Keys(key_prefix)
    prefix = keys.runs() if what == "runs" else keys.members()
    shown = subprocess.run(
        [
            *("etcdctl", "--endpoints", endpoints),
            *("--command-timeout", "5s", "get", "--prefix", prefix, "-w", "json"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "ETCDCTL_API": "3"},
        timeout=30,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    found: list[dict[str, Any]] = []
    for kv in json.loads(shown.stdout).get("kvs", []):
        value = json.loads(base64.b64decode(kv["value"]))
        if isinstance(value, dict):
            found.append(value)
    return found


def member_names(env: Env) -> set[str]:
    """The members whose entries exist (their leases alive)."""
    return {str(m.get("name")) for m in stored(env, "members")}
