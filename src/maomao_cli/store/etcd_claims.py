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

# The messages are built directly (python3-etcd3's transaction helpers cost about four
# times as much): at 10,000 schedules 167 claims go out in one instant.
_CREATE, _MOD, _EQUAL = etcdrpc.Compare.CREATE, etcdrpc.Compare.MOD, etcdrpc.Compare.EQUAL


def _absent(key: str) -> Any:
    return etcdrpc.Compare(key=key.encode(), target=_CREATE, result=_EQUAL, create_revision=0)


def _put(key: str, value: bytes, lease: int | None = None) -> Any:
    return etcdrpc.RequestOp(
        request_put=etcdrpc.PutRequest(key=key.encode(), value=value, lease=lease or 0)
    )


def _get(key: str) -> Any:
    return etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=key.encode()))


def claim_request(claim: Claim) -> Any:
    """The TxnRequest of one claim."""
    request = _claim_request(claim)
    if claim.unless_changed is None:
        return request
    key, revision = claim.unless_changed
    unchanged = etcdrpc.Compare(key=key.encode(), target=_MOD, result=_EQUAL, mod_revision=revision)
    return etcdrpc.TxnRequest(
        compare=[unchanged],
        success=[etcdrpc.RequestOp(request_txn=request)],
        failure=[_get(claim.key)],
    )


def _claim_request(claim: Claim) -> Any:
    compare = [_absent(claim.key)]
    success = [_put(claim.key, claim.value, claim.lease)]
    if claim.guard is not None:
        compare.append(_absent(claim.guard))
        success.append(_put(claim.guard, claim.guard_value, claim.guard_lease))
    success += [_put(key, value) for key, value in claim.with_won]
    if claim.guard is None:
        return etcdrpc.TxnRequest(compare=compare, success=success, failure=[_get(claim.key)])
    # Otherwise: take the key anyway if it is free (guard busy), else read it.
    take_busy = etcdrpc.TxnRequest(
        compare=[_absent(claim.key)],
        success=[
            _put(claim.key, claim.busy_value, claim.lease),
            *(_put(key, value) for key, value in claim.with_busy),
        ],
        failure=[_get(claim.key)],
    )
    return etcdrpc.TxnRequest(
        compare=compare, success=success, failure=[etcdrpc.RequestOp(request_txn=take_busy)]
    )


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
    nested = [etcdrpc.RequestOp(request_txn=claim_request(claim)) for claim in claims]
    return etcdrpc.TxnRequest(compare=[], success=[*nested, _put(marker, b"")], failure=[])


def batch_outcomes(claims: list[Claim], response: Any) -> list[ClaimOutcome]:
    # The marker's answer comes last, after one answer per claim.
    return [
        claim_outcome(claim, op.response_txn)
        for claim, op in zip(claims, response.responses[: len(claims)], strict=True)
    ]
