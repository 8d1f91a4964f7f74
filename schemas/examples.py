"""One example message per topic: Kafka key, CloudEvents headers and data, as they travel.

The story is the help-center's own example (contract section 2): a yearly SIP trunk bought on
2021-04-01 for 120.00 SGD, terminated on 2021-04-17 (Singapore time), refunds 11 months, 110.00 SGD
as account credit; a second request for it is rejected. Then (section 8) finance refunds 20.00 SGD of
a 45.00 SGD charge to the same account, whose balance goes from 125.50 to 145.50, and a later request
for more than the 25.00 SGD left of it is rejected. The output ids are what the worker derives from
the reseller and the request's ce_id (`derived_id(reseller_id, ce_id, kind)` in worker/engine/outbox.py).

The AsyncAPI document (`refund-worker asyncapi`) shows these as its message examples, and
docs/contract.md shows the same messages; tests/unit/test_contract_examples.py checks that the two
agree and that every example passes the worker's own envelope parser and models, so neither can
drift from the code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from schemas.dataschema import schema_id
from schemas.topics import TOPICS, Topic

PORTAL_SOURCE = "/portal/res-b3"
ADMIN_PORTAL_SOURCE = "/admin-portal/res-b3"
WORKER_SOURCE = "/refund-worker"
REQUEST_ID = "3f2b8c1e-6a47-4d2e-9b1a-5c8e0f7d2a41"
SECOND_REQUEST_ID = "9d0c4a57-2e1b-4f8a-8c3d-71b6e2f4a905"
REFUND_ID = "afbee103-6be6-530b-be6d-84f4d098051d"
DECIDED_AT = "2021-04-17T02:00:01.204311Z"
ADJUSTMENT_ID = "6e0f3b2a-9c41-4d7e-8a55-2b7c9d1e4f60"
REJECTED_ADJUSTMENT_ID = "d1a7e3c9-2b5f-4e80-96c4-3f8b1a2d7e56"
ADJUSTED_AT = "2021-05-03T06:20:00.511873Z"
MONEY_REQUEST_ID = "a4b5c6d7-e8f9-4a0b-8c1d-2e3f4a5b6c7d"
INSTRUCTION_ID = "4be48109-7281-58d8-83ab-0a52d55085fc"
SETTLEMENT_ID = "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b"
NOTE_EVENT_ID = "inv-cn-7731-issued"
MONEY_ACCOUNT = {"account_id": "acc-2001", "reseller_id": "res-b3"}
FINANCE = {"id": "finance@res-b3.example", "reseller_id": "res-b3", "permissions": ["finance:manage"]}


@dataclass(frozen=True, slots=True)
class Example:
    """One message: what a producer writes, or what the worker publishes."""

    topic: Topic
    summary: str
    key: str
    headers: Mapping[str, str]
    """Header name -> UTF-8 text, in the order the worker writes them."""
    data: Mapping[str, Any]
    """The Kafka value: the CloudEvent's JSON `data`."""

    def as_json(self) -> dict[str, Any]:
        """The example as docs/contract.md writes it: `{"key", "headers", "data"}`."""
        return {"key": self.key, "headers": dict(self.headers), "data": dict(self.data)}


def _headers(topic: Topic, event_id: str, time: str, source: str | None) -> dict[str, str]:
    spec = TOPICS[topic]
    headers = {
        "ce_specversion": "1.0",
        "ce_id": event_id,
        "ce_source": source or (PORTAL_SOURCE if spec.is_input else WORKER_SOURCE),
        "ce_type": str(spec.ce_type),
        "ce_time": time,
    }
    if not spec.is_input:
        headers["ce_dataschema"] = schema_id(topic)
    headers["content-type"] = "application/json"
    return headers


def _example(
    topic: Topic, summary: str, event_id: str, time: str, data: dict[str, Any], source: str | None = None
) -> tuple[Topic, Example]:
    spec = TOPICS[topic]
    key = data[spec.key_field] if data[spec.key_field] is not None else data[spec.key_fallback or ""]
    headers = _headers(topic, event_id, time, source)
    return topic, Example(topic, summary, key, headers, MappingProxyType(data))


_SUBSCRIPTION = {"subscription_id": "sub-sip-yearly-0417", "account_id": "acc-1002", "reseller_id": "res-b3"}

EXAMPLES: Mapping[Topic, Example] = MappingProxyType(
    dict(
        [
            _example(
                Topic.TERMINATION_REQUESTED,
                "A yearly subscription terminated 16 days into its cycle, no credit note sent",
                REQUEST_ID,
                "2021-04-17T02:00:00Z",
                {
                    **_SUBSCRIPTION,
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
            _example(
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
            _example(
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
            _example(
                Topic.REFUND_ISSUED,
                "11 unused months of 12 refunded as account credit, with the worker's own credit note",
                "0a1661c1-e189-5ab6-ae48-9d5c1b9cc4c6",
                DECIDED_AT,
                {
                    "refund_id": REFUND_ID,
                    "request_id": REQUEST_ID,
                    **_SUBSCRIPTION,
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
            _example(
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
            _example(
                Topic.SUBSCRIPTION_TERMINATED,
                "The subscription terminated at the customer's request, with its refund",
                "33178579-86d5-5bcb-8ccb-e775e46566a3",
                DECIDED_AT,
                {
                    "request_id": REQUEST_ID,
                    **_SUBSCRIPTION,
                    "terminated_at": DECIDED_AT,
                    "cause": "customer_request",
                    "refund_amount": "110.00",
                    "currency": "SGD",
                    "rule": "unused_months",
                    "no_refund_reason": None,
                },
            ),
            _example(
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
            _example(
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
            _example(
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
            _example(
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
            _example(
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
            _example(
                Topic.PAYMENT_REFUND_INSTRUCTED,
                "The payment service is told to charge back 50.00 SGD of the payment",
                "81626e8c-1fdd-505b-a20c-645f18a50439",
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
            _example(
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
            _example(
                Topic.MONEY_REFUND_UPDATED,
                "The charge back succeeded",
                "d0e330c3-caca-52e5-8bbe-5210b923e654",
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
            _example(
                Topic.CREDIT_NOTE_ISSUED,
                "The invoice app sent a credit note for the subscription refunded as credits the day before",
                NOTE_EVENT_ID,
                "2021-04-18T01:15:00Z",
                {
                    "credit_note_id": "INV-CN-7731",
                    **_SUBSCRIPTION,
                    "amount": "110.00",
                    "currency": "SGD",
                    "issued_at": "2021-04-18T09:15:00+08:00",
                    "number": "CN/2021/0419",
                },
                source="/invoice-app/res-b3",
            ),
            _example(
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
        ]
    )
)
"""The example of every topic the worker reads or writes, in the contract's order."""
