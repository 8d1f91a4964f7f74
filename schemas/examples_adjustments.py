"""Section 8's examples: finance refunds 20.00 SGD of a 45.00 SGD charge to the refunded account,
and a later request for more than the 25.00 SGD left of it is rejected."""

from __future__ import annotations

from schemas.example_message import ADMIN_PORTAL_SOURCE, Example, example
from schemas.topics import Topic

ADJUSTMENT_ID = "6e0f3b2a-9c41-4d7e-8a55-2b7c9d1e4f60"
REJECTED_ADJUSTMENT_ID = "d1a7e3c9-2b5f-4e80-96c4-3f8b1a2d7e56"
ADJUSTED_AT = "2021-05-03T06:20:00.511873Z"
FINANCE = {"id": "finance@res-b3.example", "reseller_id": "res-b3", "permissions": ["finance:manage"]}

ADJUSTMENT_EXAMPLES: tuple[tuple[Topic, Example], ...] = (
    example(
        Topic.BALANCE_ADJUSTMENT_REQUESTED,
        "Finance refunds 20.00 SGD of a 45.00 SGD charge as a linked entry",
        ADJUSTMENT_ID,
        "2021-05-03T06:20:00Z",
        {
            "account_id": "acc-1002",
            "reseller_id": "res-b3",
            "currency": "SGD",
            "kind": "transaction_refund",
            "amount": "20.00",
            "transaction": {
                "transaction_id": "txn-88412",
                "amount": "45.00",
                "description": "SIP minutes, April",
            },
            "reverses": None,
            "reason": "Calls dropped on 2021-04-28",
            "requested_at": "2021-05-03T14:20:00+08:00",
            "actor": FINANCE,
        },
        source=ADMIN_PORTAL_SOURCE,
    ),
    example(
        Topic.BALANCE_ADJUSTED,
        "The transaction refund applied: the account's SGD credits go from 125.50 to 145.50",
        "b53e43cd-3924-5fef-a789-6054d1a9e83a",
        ADJUSTED_AT,
        {
            "adjustment_id": ADJUSTMENT_ID,
            "kind": "transaction_refund",
            "account_id": "acc-1002",
            "reseller_id": "res-b3",
            "currency": "SGD",
            "delta": "20.00",
            "balance": "145.50",
            "balance_version": 4,
            "transaction_id": "txn-88412",
            "reverses": None,
            "reason": "Calls dropped on 2021-04-28",
            "requested_by": "finance@res-b3.example",
            "applied_at": ADJUSTED_AT,
        },
    ),
    example(
        Topic.ADJUSTMENT_REJECTED,
        "A later refund of the same charge asks for more than the 25.00 SGD left of it",
        "371a313d-2b87-5084-91cb-d6323914c2e4",
        "2021-05-04T01:02:03.120000Z",
        {
            "request_id": REJECTED_ADJUSTMENT_ID,
            "account_id": "acc-1002",
            "reseller_id": "res-b3",
            "kind": "transaction_refund",
            "reason_code": "exceeds_refundable",
            "detail": "25.00 SGD is left to refund of transaction txn-88412",
        },
    ),
)
