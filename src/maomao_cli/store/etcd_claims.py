"""A firing's claim as one etcd transaction, and what its answer means.

The claim key is created if free; with a guard (the overlap marker) both are, else the key
is taken as busy if still free, else read: a claim already won by this member is then
recognised by its value. A claim made only while its schedule is unchanged is that
transaction nested in one comparing the schedule's revision (else the key is read).
"""

from __future__ import annotations

from typing import Any

from etcd3 import etcdrpc

from .base import Claim, ClaimOutcome, recognised

# The messages are filled in place, top down: python3-etcd3's transaction helpers, or
# messages built bottom up (each copied into its parent), cost three to four times as
# much, and at 10,000 schedules 167 claims go out in one instant.
_CREATE, _MOD, _EQUAL = etcdrpc.Compare.CREATE, etcdrpc.Compare.MOD, etcdrpc.Compare.EQUAL


def _absent(txn: Any, key: str) -> None:
    compare = txn.compare.add()
    compare.key, compare.target, compare.result = key.encode(), _CREATE, _EQUAL
    compare.create_revision = 0  # set, even to 0: it is the compare's target value


def _put(ops: Any, key: str, value: bytes, lease: int | None = None) -> None:
    put = ops.add().request_put
    put.key, put.value = key.encode(), value
    if lease:
        put.lease = lease


def _get(ops: Any, key: str) -> None:
    ops.add().request_range.key = key.encode()


def claim_request(claim: Claim) -> Any:
    """The TxnRequest of one claim."""
    request = etcdrpc.TxnRequest()
    _fill_claim(request, claim)
    return request


def _fill_claim(txn: Any, claim: Claim) -> None:
    if claim.unless_changed is None:
        _fill_unconditional(txn, claim)
        return
    key, revision = claim.unless_changed
    unchanged = txn.compare.add()
    unchanged.key, unchanged.target, unchanged.result = key.encode(), _MOD, _EQUAL
    unchanged.mod_revision = revision
    _fill_unconditional(txn.success.add().request_txn, claim)
    _get(txn.failure, claim.key)


def _fill_unconditional(txn: Any, claim: Claim) -> None:
    _absent(txn, claim.key)
    _put(txn.success, claim.key, claim.value, claim.lease)
    if claim.guard is not None:
        _absent(txn, claim.guard)
        _put(txn.success, claim.guard, claim.guard_value, claim.guard_lease)
    for key, value in claim.with_won:
        _put(txn.success, key, value)
    if claim.guard is None:
        _get(txn.failure, claim.key)
        return
    # Otherwise: take the key anyway if it is free (guard busy), else read it.
    take_busy = txn.failure.add().request_txn
    _absent(take_busy, claim.key)
    _put(take_busy.success, claim.key, claim.busy_value, claim.lease)
    for key, value in claim.with_busy:
        _put(take_busy.success, key, value)
    _get(take_busy.failure, claim.key)


def claim_outcome(claim: Claim, response: Any) -> ClaimOutcome:
    """What the TxnResponse of claim_request says: won, busy (guard held), taken, or
    changed (its schedule was, and this claim was not made before)."""
    if claim.unless_changed is not None:
        first = response.responses[0]
        if not response.succeeded:
            return recognised(claim, _value(first), "changed")
        response = first.response_txn
    if response.succeeded:
        return "won"
    first = response.responses[0]
    if claim.guard is not None:
        nested = first.response_txn
        if nested.succeeded:
            return "busy"
        first = nested.responses[0]
    return recognised(claim, _value(first), "taken")


def _value(op: Any) -> bytes:
    """The value a range answer read (empty when the key is absent)."""
    return bytes(op.response_range.kvs[0].value) if op.response_range.kvs else b""


# Claims sent in one transaction, each a nested transaction with its own compare: etcd
# holds a nested transaction to what the outer one leaves of --max-txn-ops (128 by
# default), and a claim with its record puts up to four; 40 (and the batch's marker)
# leave room under it.
CLAIMS_PER_TXN = 40


def batches(claims: list[Claim], size: int = CLAIMS_PER_TXN) -> list[list[int]]:
    """The claims' indexes in groups of at most `size` in which no key is written twice
    (etcd refuses a transaction that puts one key in two of its branches): two firings of
    one schedule share its overlap guard, so they go in different groups."""
    groups: list[tuple[list[int], set[str]]] = []
    for index, claim in enumerate(claims):
        keys = {claim.key, *(key for key, _ in (*claim.with_won, *claim.with_busy))}
        if claim.guard is not None:
            keys.add(claim.guard)
        for members, taken in groups:
            if len(members) < size and not keys & taken:
                members.append(index)
                taken |= keys
                break
        else:
            groups.append(([index], set(keys)))
    return [members for members, _ in groups]


def batch_request(claims: list[Claim], marker: str) -> Any:
    """One TxnRequest carrying each claim as a nested transaction (no compare of its own:
    it always succeeds, and each claim's compare decides that claim alone), and a put of
    `marker` (Keys.claim_batch): etcd's space quota weighs only a transaction's own puts,
    so without one a full etcd would take the nested ones."""
    batch = etcdrpc.TxnRequest()
    for claim in claims:
        _fill_claim(batch.success.add().request_txn, claim)
    _put(batch.success, marker, b"")
    return batch


def batch_outcomes(claims: list[Claim], response: Any) -> list[ClaimOutcome]:
    # The marker's answer comes last, after one answer per claim.
    return [
        claim_outcome(claim, op.response_txn)
        for claim, op in zip(claims, response.responses[: len(claims)], strict=True)
    ]
