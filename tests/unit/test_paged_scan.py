"""A whole-prefix read grows its pages while they are small and shrinks them after a
large one: few requests for many small records, bounded responses for large ones."""

from __future__ import annotations

from typing import Any

import pytest

from maomao_cli.store.base import PAGE_SIZE, Page, paged_scan
from maomao_cli.store.memory import MemoryStore


class Pages:
    """A memory store that notes the limit of every page asked for."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.limits: list[int] = []

    def scan_page(self, prefix: str, **options: Any) -> Page:
        self.limits.append(options.get("limit", PAGE_SIZE))
        return self.store.scan_page(prefix, **options)


def filled(sizes: list[int]) -> MemoryStore:
    store = MemoryStore()
    for i, size in enumerate(sizes):
        store.put(f"/p/{i:06d}", b"x" * size)
    return store


@pytest.mark.parametrize(
    ("sizes", "limits"),
    [
        ([], [PAGE_SIZE]),
        ([10] * 20, [PAGE_SIZE]),
        # Small records: the pages double up to MAX_PAGE.
        ([10] * 1000, [32, 64, *[128] * 8]),
        # Records of 10 KiB: a page of 32 is 320 KiB, more than half of PAGE_BYTES.
        ([10 * 1024] * 100, [32, 32, 32, 32]),
        # A page over PAGE_BYTES sends the next one back to PAGE_SIZE.
        ([10] * 96 + [20 * 1024] * 128 + [10] * 40, [32, 64, 128, 32, 64]),
    ],
)
def test_pages_grow_while_small_and_shrink_after_a_large_one(
    sizes: list[int], limits: list[int]
) -> None:
    pages = Pages(filled(sizes))
    entries, revision = paged_scan(pages, "/p/")  # type: ignore[arg-type]
    assert [e.key for e in entries] == [f"/p/{i:06d}" for i in range(len(sizes))]
    assert [len(e.value) for e in entries] == sizes
    assert pages.limits == limits
    assert revision == pages.store.scan_page("/p/").revision
