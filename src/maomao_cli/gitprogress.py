"""Git's progress lines: split from the byte stream a transfer reports, and parsed.

Pure text handling, so the CLI can draw progress bars without importing the git adapter.
"""

from __future__ import annotations

import re

from .gitmodels import Progress

_PROGRESS_RE = re.compile(
    r"^(?:remote:\s*)?(?P<phase>[A-Za-z][A-Za-z ]*?):\s+"
    r"(?:(?P<pct>\d+)%\s+\((?P<done>\d+)/(?P<total>\d+)\)"
    r"|(?P<done2>\d+)/(?P<total2>\d+)\b"  # dulwich's own "writing pack data: 3/5"
    r"|(?P<count>\d+)(?P<rest>.*))"
)


def parse_progress(line: str) -> tuple[str, int, int] | None:
    """Turn one git progress line into (phase, done, total); total 0 means unknown.

    "Counting objects: 45% (9/20)" -> ("Counting objects", 9, 20);
    "Counting objects: 20, done." -> ("Counting objects", 20, 20);
    "Counting objects: 12" -> ("Counting objects", 12, 0);
    "writing pack data: 3/5" -> ("writing pack data", 3, 5); anything else -> None.
    """
    m = _PROGRESS_RE.match(line.strip())
    if m is None:
        return None
    phase = m["phase"].strip()
    if m["done"] is not None:
        return phase, int(m["done"]), int(m["total"])
    if m["done2"] is not None:
        return phase, int(m["done2"]), int(m["total2"])
    count = int(m["count"])
    rest = m["rest"].strip()
    if rest.startswith(", done") or rest == "done.":
        return phase, count, count
    if rest == "" or rest.startswith(("|", ",")):
        return phase, count, 0
    return None  # e.g. "Total: 20 (delta 3)" style lines are not progress


class LineSplitter:
    """dulwich hands progress over in arbitrary byte chunks; callers want whole lines."""

    def __init__(self, sink: Progress) -> None:
        self._sink = sink
        self._buf = b""

    def __call__(self, data: bytes) -> None:
        self._buf += data
        parts = re.split(rb"[\r\n]", self._buf)
        self._buf = parts.pop()
        for part in parts:
            text = part.decode("utf-8", "replace").strip()
            if text:
                self._sink(text)

    def flush(self) -> None:
        if self._buf.strip():
            self._sink(self._buf.decode("utf-8", "replace").strip())
        self._buf = b""


def splitter(progress: Progress | None) -> LineSplitter | None:
    """A splitter feeding `progress`, or None when nobody listens."""
    return LineSplitter(progress) if progress else None
