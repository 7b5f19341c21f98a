"""The claim transactions sent to etcd, filled in place for speed, are exactly the ones
python3-etcd3's own transaction helpers build (the form the claim path was proven with)."""

from __future__ import annotations

from typing import Any

import etcd3
import pytest
from etcd3 import etcdrpc

from maomao_cli.store.base import Claim
from maomao_cli.store.etcd_claims import batch_request, claim_request


def helpers_request(c: Any, claim: Claim) -> Any:
    """A claim's TxnRequest as python3-etcd3's helpers build it."""
    t = c.transactions
    compare = [t.create(claim.key) == 0]
    success = [t.put(claim.key, claim.value, lease=claim.lease)]
    if claim.guard is not None:
        compare.append(t.create(claim.guard) == 0)
        success.append(t.put(claim.guard, claim.guard_value, lease=claim.guard_lease))
    success += [t.put(key, value) for key, value in claim.with_won]
    take_busy = t.txn(
        compare=[t.create(claim.key) == 0],
        success=[
            t.put(claim.key, claim.busy_value, lease=claim.lease),
            *(t.put(key, value) for key, value in claim.with_busy),
        ],
        failure=[t.get(claim.key)],
    )
    request = etcdrpc.TxnRequest(
        compare=[cmp.build_message() for cmp in compare],
        success=c._ops_to_requests(success),
        failure=c._ops_to_requests([take_busy] if claim.guard else [t.get(claim.key)]),
    )
    if claim.unless_changed is None:
        return request
    key, revision = claim.unless_changed
    return etcdrpc.TxnRequest(
        compare=[(t.mod(key) == revision).build_message()],
        success=[etcdrpc.RequestOp(request_txn=request)],
        failure=c._ops_to_requests([t.get(claim.key)]),
    )


RECORD = (("/p/runs/r1", b'{"status": "running"}'), ("/p/run-index/t/1/r1", b""))
CLAIMS = [
    Claim("/p/firings/s/1", b"mine", lease=7),
    Claim("/p/firings/s/1", b"mine", lease=0, with_won=RECORD),
    Claim(
        "/p/firings/s/1",
        b"mine",
        lease=7,
        guard="/p/active/s",
        guard_value=b"guard",
        busy_value=b"busy",
        guard_lease=9,
        with_won=RECORD,
        with_busy=(("/p/runs/r1", b'{"status": "skipped"}'),),
    ),
    Claim("/p/firings/s/2", b"mine", lease=7, guard="/p/active/s", guard_lease=None),
    Claim("/p/firings/s/3", b"mine", lease=7, unless_changed=("/p/schedules/s", 41)),
    Claim(
        "/p/firings/s/3",
        b"mine",
        lease=7,
        guard="/p/active/s",
        guard_value=b"guard",
        busy_value=b"busy",
        guard_lease=9,
        with_won=RECORD,
        unless_changed=("/p/schedules/s", 41),
    ),
]


@pytest.fixture(scope="module")
def helpers() -> Any:
    client = etcd3.client(host="127.0.0.1", port=1)  # never connects: builds messages only
    yield client
    client.close()


@pytest.mark.parametrize("claim", CLAIMS)
def test_a_claim_is_the_transaction_the_helpers_build(helpers: Any, claim: Claim) -> None:
    assert claim_request(claim) == helpers_request(helpers, claim)
    assert (
        claim_request(claim).SerializeToString()
        == helpers_request(helpers, claim).SerializeToString()
    )


def test_a_batch_nests_each_claim_and_ends_with_its_marker(helpers: Any) -> None:
    batch = batch_request(CLAIMS, "/p/claim-batch")
    assert not batch.compare and not batch.failure
    nested = [op.request_txn for op in batch.success[:-1]]
    assert nested == [helpers_request(helpers, claim) for claim in CLAIMS]
    assert batch.success[-1].request_put == etcdrpc.PutRequest(key=b"/p/claim-batch", value=b"")
