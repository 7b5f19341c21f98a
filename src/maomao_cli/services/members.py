"""Live members: each worker's entry under <prefix>/members/, kept alive by its lease."""

from __future__ import annotations

from ..keys import Keys
from ..models import Member
from ..store.base import Store
from .records import load_all


def live_members(store: Store, keys: Keys) -> list[Member]:
    return sorted(load_all(store, keys.members(), Member), key=lambda m: m.name)
