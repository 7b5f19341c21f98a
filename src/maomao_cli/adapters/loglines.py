"""A container's output stream as bounded lines, and what has been read of it."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator

log = logging.getLogger("maomao.docker")

LINE_LIMIT = 2000  # characters kept of one output line in the stored tail
LINE_BYTES_LIMIT = 1 << 20  # bytes of one line held in memory; the rest of the line is dropped


def split_lines(
    chunks: Iterable[bytes], limit: int = LINE_BYTES_LIMIT, *, rest: list[bytes] | None = None
) -> Iterator[bytes]:
    """The lines of a byte stream, each cut to `limit` bytes. Linear in the stream's size:
    a chunk is scanned once and a long line is never re-joined or re-split. A last line
    without its newline is yielded too, or, given `rest`, put there instead (a stream that
    may have been cut cannot tell a last line from the start of one)."""
    parts: list[bytes] = []
    held = 0
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if held < limit:
                parts.append(chunk[start : start + min(end - start, limit - held)])
            yield b"".join(parts)
            parts.clear()
            held = 0
            start = end + 1
        if start < len(chunk) and held < limit:
            piece = chunk[start : start + limit - held]
            parts.append(piece)
            held += len(piece)
    if parts:
        if rest is None:
            yield b"".join(parts)
        else:
            rest.append(b"".join(parts))


class Reading:
    """What has been read of a run's output: its tail, how many lines, the last one."""

    def __init__(self, tail: deque[str], outputs: Outputs) -> None:
        self.tail = tail
        self.outputs = outputs
        self.count = 0
        self.first: list[bytes] = []  # the first line, once read
        self.last: bytes | None = None
        self.rest: list[bytes] = []  # what followed the last newline, if the stream ended so

    def emit(self, raw: bytes) -> None:
        line = line_text(raw)
        self.tail.append(line[:LINE_LIMIT])
        if not self.count:
            self.first.append(raw)
        self.count += 1
        self.last = raw
        self.outputs.emit(raw, line)


def line_text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")


class Outputs:
    """The run's output callbacks: the line's bytes as received, then its text."""

    def __init__(
        self, on_output: Callable[[str], None] | None, on_raw: Callable[[bytes], None] | None
    ) -> None:
        self.on_output = on_output
        self.on_raw = on_raw

    def emit(self, raw: bytes, line: str) -> None:
        # A broken log file or display must not lose the run.
        if self.on_raw is not None:
            try:
                self.on_raw(raw)
            except Exception:
                log.exception("output callback failed")
        if self.on_output is not None:
            try:
                self.on_output(line)
            except Exception:
                log.exception("output callback failed")
