"""Section 1's examples: the help center's yearly SIP trunk terminated 16 days into its cycle,
refunded 11 months as account credit, then asked again and rejected; an expiry and its renewal."""

from __future__ import annotations

from schemas.example_message import Example, example
from schemas.topics import Topic

REQUEST_ID = "3f2b8c1e-6a47-4d2e-9b1a-5c8e0f7d2a41"
SECOND_REQUEST_ID = "9d0c4a57-2e1b-4f8a-8c3d-71b6e2f4a905"
REFUND_ID = "afbee103-6be6-530b-be6d-84f4d098051d"
DECIDED_AT = "2021-04-17T02:00:01.204311Z"

SUBSCRIPTION = {"subscription_id": "sub-sip-yearly-0417", "account_id": "acc-1002", "reseller_id": "res-b3"}

TERMINATION_EXAMPLES: tuple[tuple[Topic, Example], ...] = (
    example(
        Topic.TERMINATION_REQUESTED,
        "A yearly subscription terminated 16 days into its cycle, no credit note sent",
        REQUEST_ID,
        "2021-04-17T02:00:00Z",
        {
            **SUBSCRIPTION,
            "product": "SIP Trunk (yearly)",
            "cycle_start": "2021-04-01",
            "cycle_months": 12,
            "amount_paid": "120.00",
            "currency": "SGD",
            "timezone": "Asia/Singapore",
            "is_trial": False,
            "allow_refund": True,
            "requested_at": "2021-04-17T10:00:00+08:00",
            "requested_by": "operator@res-b3.example",
            "reason": "Customer changed provider",
            "credit_note": None,
        },
    ),
    example(
        Topic.SUBSCRIPTION_EXPIRED,
        "A subscription expired: terminated after the grace period unless renewed",
        "b2e41f0a-3c5d-4e6f-8a7b-9c0d1e2f3a4b",
        "2021-05-01T00:00:05Z",
        {
            "subscription_id": "sub-fax-monthly-0501",
            "account_id": "acc-1010",
            "reseller_id": "res-b3",
            "expired_at": "2021-05-01T00:00:00+08:00",
        },
    ),
    example(
        Topic.SUBSCRIPTION_RENEWED,
        "The expired subscription was renewed within the grace period: its expiry is cancelled",
        "c7d8e9f0-1a2b-4c3d-9e4f-5a6b7c8d9e0f",
        "2021-05-10T03:12:00Z",
        {
            "subscription_id": "sub-fax-monthly-0501",
            "account_id": "acc-1010",
            "reseller_id": "res-b3",
            "renewed_at": "2021-05-10T11:12:00+08:00",
        },
    ),
    example(
        Topic.REFUND_ISSUED,
        "11 unused months of 12 refunded as account credit, with the worker's own credit note",
        "0a1661c1-e189-5ab6-ae48-9d5c1b9cc4c6",
        DECIDED_AT,
        {
            "refund_id": REFUND_ID,
            "request_id": REQUEST_ID,
            **SUBSCRIPTION,
            "amount": "110.00",
            "currency": "SGD",
            "method": "account_credit",
            "rule": "unused_months",
            "months_refunded": 11,
            "cycle_months": 12,
            "policy_amount": "110.00",
            "credit_note": {
                "credit_note_id": "04744a46-6fbb-56df-8799-beda58e12c1e",
                "number": 42,
                "amount": "110.00",
                "issued_at": DECIDED_AT,
                "display_number": "CN-res-b3-000042",
                "reason": "Customer changed provider",
                "amounts_include_tax": True,
            },
            "issued_at": DECIDED_AT,
            "auto_linked": False,
            "credit_notes": [],
        },
    ),
    example(
        Topic.CREDITS_UPDATED,
        "The refund added to the account's SGD credits (its third change)",
        "634a157a-2c34-5b09-8dc4-2b2ce597efc9",
        DECIDED_AT,
        {
            "account_id": "acc-1002",
            "reseller_id": "res-b3",
            "currency": "SGD",
            "delta": "110.00",
            "balance": "125.50",
            "balance_version": 3,
            "cause": "refund",
            "refund_id": REFUND_ID,
            "updated_at": DECIDED_AT,
            "adjustment_id": None,
            "instruction_id": None,
        },
    ),
    example(
        Topic.SUBSCRIPTION_TERMINATED,
        "The subscription terminated at the customer's request, with its refund",
        "33178579-86d5-5bcb-8ccb-e775e46566a3",
        DECIDED_AT,
        {
            "request_id": REQUEST_ID,
            **SUBSCRIPTION,
            "terminated_at": DECIDED_AT,
            "cause": "customer_request",
            "refund_amount": "110.00",
            "currency": "SGD",
            "rule": "unused_months",
            "no_refund_reason": None,
        },
    ),
    example(
        Topic.TERMINATION_REJECTED,
        "A second request, with another ce_id, for the subscription already terminated",
        "f30a6475-a714-509b-92ef-9d99591c3d1b",
        "2021-04-17T02:05:00.018200Z",
        {
            "request_id": SECOND_REQUEST_ID,
            "subscription_id": "sub-sip-yearly-0417",
            "account_id": "acc-1002",
            "reason_code": "already_terminated",
            "detail": "the subscription is already terminated",
        },
    ),
)
