"""Sections 9 and 10's examples: a charge back through the payment service, instructed and settled;
a credit note from the invoice app, and the conflict it raises for a subscription already refunded."""

from __future__ import annotations

from schemas.example_message import ADMIN_PORTAL_SOURCE, Example, example
from schemas.examples_adjustments import FINANCE
from schemas.examples_terminations import REFUND_ID, SUBSCRIPTION
from schemas.topics import Topic

MONEY_REQUEST_ID = "a4b5c6d7-e8f9-4a0b-8c1d-2e3f4a5b6c7d"
INSTRUCTION_ID = "82f9874b-f994-5370-8ade-6b2bc7aba0ff"
SETTLEMENT_ID = "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b"
NOTE_EVENT_ID = "inv-cn-7731-issued"
MONEY_ACCOUNT = {"account_id": "acc-2001", "reseller_id": "res-b3"}

MONEY_EXAMPLES: tuple[tuple[Topic, Example], ...] = (
    example(
        Topic.MONEY_REFUND_REQUESTED,
        "Finance charges back 50.00 SGD of a 120.00 SGD card payment, out of the credits",
        MONEY_REQUEST_ID,
        "2021-05-06T02:00:00Z",
        {
            **MONEY_ACCOUNT,
            "account_type": "retail",
            "method": "charge_back",
            "payment": {"payment_id": "pay-55120", "amount": "120.00", "currency": "SGD"},
            "amount": "50.00",
            "from_balance": True,
            "reason": "Customer asked for the money back instead of credits",
            "requested_at": "2021-05-06T10:00:00+08:00",
            "actor": FINANCE,
        },
        source=ADMIN_PORTAL_SOURCE,
    ),
    example(
        Topic.PAYMENT_REFUND_INSTRUCTED,
        "The payment service is told to charge back 50.00 SGD of the payment",
        "1d8b3534-193d-5ca6-a5eb-e94036ee76a2",
        "2021-05-06T02:00:00.734021Z",
        {
            "instruction_id": INSTRUCTION_ID,
            "request_id": MONEY_REQUEST_ID,
            "payment_id": "pay-55120",
            "method": "charge_back",
            "amount": "50.00",
            "currency": "SGD",
            **MONEY_ACCOUNT,
        },
    ),
    example(
        Topic.PAYMENT_REFUND_SETTLED,
        "The payment service returned the money",
        SETTLEMENT_ID,
        "2021-05-07T03:30:00Z",
        {
            "instruction_id": INSTRUCTION_ID,
            **MONEY_ACCOUNT,
            "status": "succeeded",
            "detail": "gateway reference CB-2021-0507-1182",
            "settled_at": "2021-05-07T03:29:41Z",
        },
        source="/payment-service",
    ),
    example(
        Topic.MONEY_REFUND_UPDATED,
        "The charge back succeeded",
        "d294ff93-98d4-55e1-ae5a-4098dad734ab",
        "2021-05-07T03:30:00.402117Z",
        {
            "instruction_id": INSTRUCTION_ID,
            "request_id": MONEY_REQUEST_ID,
            "payment_id": "pay-55120",
            "method": "charge_back",
            **MONEY_ACCOUNT,
            "amount": "50.00",
            "currency": "SGD",
            "from_balance": True,
            "status": "succeeded",
            "detail": "gateway reference CB-2021-0507-1182",
            "updated_at": "2021-05-07T03:30:00.402117Z",
        },
    ),
    example(
        Topic.CREDIT_NOTE_ISSUED,
        "The invoice app sent a credit note for the subscription refunded as credits the day before",
        NOTE_EVENT_ID,
        "2021-04-18T01:15:00Z",
        {
            "credit_note_id": "INV-CN-7731",
            **SUBSCRIPTION,
            "amount": "110.00",
            "currency": "SGD",
            "issued_at": "2021-04-18T09:15:00+08:00",
            "number": "CN/2021/0419",
        },
        source="/invoice-app/res-b3",
    ),
    example(
        Topic.REFUND_CONFLICT_DETECTED,
        "That note and the account-credit refund would refund twice: finance reverses one",
        "bff48b09-8cc3-5f73-a1ff-2438398a9f54",
        "2021-04-18T01:15:00.880412Z",
        {
            "subscription_id": "sub-sip-yearly-0417",
            "refund_id": REFUND_ID,
            "credit_note_id": "INV-CN-7731",
            "amount": "110.00",
            "currency": "SGD",
            "account_id": "acc-1002",
            "reseller_id": "res-b3",
            "detected_at": "2021-04-18T01:15:00.880412Z",
        },
    ),
)
