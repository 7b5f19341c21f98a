"""Live members: each worker's entry under <prefix>/members/, kept alive by its lease."""

from __future__ import annotations

from .. import validation
from ..errors import NotFound
from ..keys import Keys
from ..models import Member
from ..store.base import Store
from .records import load_all


def live_members(store: Store, keys: Keys) -> list[Member]:
    return sorted(load_all(store, keys.members(), Member), key=lambda m: m.name)


class MemberService:
    """Reads of the live members, for the front ends."""

    def __init__(self, store: Store, keys: Keys) -> None:
        self.store = store
        self.keys = keys

    def live(self) -> list[Member]:
        """The live members, by name."""
        return live_members(self.store, self.keys)

    def get(self, name: str) -> Member:
        validation.name(name, "member name")
        for found in self.live():
            if found.name == name:
                return found
        raise NotFound(f"no live member named {name!r}", hint="see GET /v1/members")
