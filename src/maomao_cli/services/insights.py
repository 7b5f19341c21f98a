"""insights.json: a small JSON object a run leaves in its data directory, which maomao
stores with the run record so every member sees it (`maomao runs show RUN`, the API).

It is the container's output, so it is read like one: never through a link, at most
MAX_BYTES, and only a JSON object is kept. Anything else is one warning, never a failed
run.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from ..frozen import frozen

NAME = "insights.json"
MAX_BYTES = 8 * 1024

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


@frozen
class Insights:
    value: dict[str, Any] | None  # None: absent or refused
    warning: str | None = None


def read(data_dir: Path) -> Insights:
    """The run's insights.json, or why it was not kept."""
    try:
        fd = os.open(data_dir / NAME, _READ)
    except FileNotFoundError:
        return Insights(None)
    except OSError as exc:
        return Insights(None, f"{NAME} not read: {exc.strerror or exc}")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return Insights(None, f"{NAME} not read: not a regular file")
        raw = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_BYTES:
        return Insights(None, f"{NAME} not kept: larger than {MAX_BYTES} bytes")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return Insights(None, f"{NAME} not kept: not valid JSON")
    if not isinstance(value, dict):
        return Insights(None, f"{NAME} not kept: not a JSON object")
    return Insights(value)
