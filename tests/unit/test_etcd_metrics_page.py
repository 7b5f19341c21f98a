"""The two gauges `maomao status` shows, found in a whole /metrics page."""

from __future__ import annotations

import pytest

from maomao_cli.store.etcd_status import COMPACTED, QUOTA, gauges, wanted_lines

FILLER = "".join(f"# HELP x_{i} filler\nx_{i} {i}\n" for i in range(500))


@pytest.mark.parametrize(
    "page, expected",
    [
        (
            f"{FILLER}{QUOTA} 2.147483648e+09\n{FILLER}{COMPACTED} 41\n",
            {QUOTA: 2147483648.0, COMPACTED: 41.0},
        ),
        (f"{QUOTA} 8\n{FILLER}", {QUOTA: 8.0}),  # the very first line
        (f"{FILLER}{COMPACTED} 7", {COMPACTED: 7.0}),  # the last line, no newline after it
        (f"{QUOTA}_total 9\n{FILLER}x{COMPACTED} 3\n", {}),  # longer names are others
        (f"{FILLER}{QUOTA} not-a-number\n", {}),
        ("", {}),
    ],
    ids=["both", "first line", "last line", "other names", "not a number", "empty"],
)
def test_the_gauges_are_read_from_their_own_lines(page: str, expected: dict[str, float]) -> None:
    found = gauges(wanted_lines(page.encode()))
    assert found == expected
    assert found == gauges(page.splitlines())  # what reading every line finds
