"""The container log reader's line splitter: exact lines, bounded memory, linear work."""

from __future__ import annotations

import pytest

from maomao_cli.adapters.loglines import split_lines


@pytest.mark.parametrize(
    ("chunks", "limit", "expected"),
    [
        ([b"a\nb\n"], 10, [b"a", b"b"]),
        ([b"a", b"b\n", b"c"], 10, [b"ab", b"c"]),
        ([b"\n\n"], 10, [b"", b""]),
        ([b"", b"x", b""], 10, [b"x"]),
        ([b"abc\r\n"], 10, [b"abc\r"]),  # the reader strips \r when it decodes
        ([b"0123456789ab\nz\n"], 4, [b"0123", b"z"]),
        ([b"01", b"23", b"45", b"\nz"], 3, [b"012", b"z"]),
        ([], 10, []),
    ],
)
def test_lines(chunks: list[bytes], limit: int, expected: list[bytes]) -> None:
    assert list(split_lines(chunks, limit)) == expected


def test_a_64_mib_line_is_cut_to_the_limit_and_the_next_line_survives() -> None:
    chunk = b"x" * 65536
    stream = [chunk] * 1024 + [b"\nafter\n"]
    lines = list(split_lines(stream, limit=1 << 20))
    assert [len(line) for line in lines] == [1 << 20, 5]
    assert lines[1] == b"after"
