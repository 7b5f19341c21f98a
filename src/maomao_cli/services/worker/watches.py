"""The worker's watches: each prefix followed on a thread of its own, its events handed
to a handler, a broken watch reported once (the loop then reconnects and reads anew)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ...errors import MaomaoError
from ...store.base import Event, Store, Watch


def follow(
    store: Store,
    prefix: str,
    revision: int,
    handler: Callable[[Event], None],
    *,
    lost: Callable[[MaomaoError], None],
) -> Watch:
    """Watch `prefix` from `revision`; `lost` is called when the watch breaks."""
    watch = store.watch(prefix, start_revision=revision)

    def run() -> None:
        try:
            for event in watch:
                handler(event)
        except MaomaoError as exc:
            lost(exc)

    threading.Thread(target=run, name=f"watch{prefix}", daemon=True).start()
    return watch


def keyed(handler: Callable[[str, bytes | None], None]) -> Callable[[Event], None]:
    """A watch handler of a key and its value (None: deleted)."""
    return lambda event: handler(event.key, event.value)
