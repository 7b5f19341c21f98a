"""A container's output stream as bounded lines."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

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
