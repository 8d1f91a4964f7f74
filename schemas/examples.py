"""One example message per topic: Kafka key, CloudEvents headers and data, as they travel.

The story is the help-center's own example (contract section 2): a yearly SIP trunk bought on
2021-04-01 for 120.00 SGD, terminated on 2021-04-17 (Singapore time), refunds 11 months, 110.00 SGD
as account credit; a second request for it is rejected. The output ids are what the worker derives
from the request's ce_id.

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
WORKER_SOURCE = "/refund-worker"
REQUEST_ID = "3f2b8c1e-6a47-4d2e-9b1a-5c8e0f7d2a41"
SECOND_REQUEST_ID = "9d0c4a57-2e1b-4f8a-8c3d-71b6e2f4a905"
REFUND_ID = "a970d9e5-778b-57cb-8702-5587076fa086"
DECIDED_AT = "2021-04-17T02:00:01.204311Z"


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


def _headers(topic: Topic, event_id: str, time: str) -> dict[str, str]:
    spec = TOPICS[topic]
    headers = {
        "ce_specversion": "1.0",
        "ce_id": event_id,
        "ce_source": PORTAL_SOURCE if spec.is_input else WORKER_SOURCE,
        "ce_type": str(spec.ce_type),
        "ce_time": time,
    }
    if not spec.is_input:
        headers["ce_dataschema"] = schema_id(topic)
    headers["content-type"] = "application/json"
    return headers


def _example(
    topic: Topic, summary: str, event_id: str, time: str, data: dict[str, Any]
) -> tuple[Topic, Example]:
    key = data[TOPICS[topic].key_field]
    return topic, Example(topic, summary, key, _headers(topic, event_id, time), MappingProxyType(data))


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
                "531b76b1-bede-501e-aef8-9b3a13674832",
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
                        "credit_note_id": "3d9b60e8-00e3-520f-8590-32dfae0d440c",
                        "number": 42,
                        "amount": "110.00",
                        "issued_at": DECIDED_AT,
                        "display_number": "CN-res-b3-000042",
                        "reason": "Customer changed provider",
                        "amounts_include_tax": True,
                    },
                    "issued_at": DECIDED_AT,
                },
            ),
            _example(
                Topic.CREDITS_UPDATED,
                "The refund added to the account's SGD credits (its third change)",
                "5ad3a536-df11-5bc7-ab54-4be8623de612",
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
                },
            ),
            _example(
                Topic.SUBSCRIPTION_TERMINATED,
                "The subscription terminated at the customer's request, with its refund",
                "17e2a11d-52a7-55c1-a0a5-92cde0ebfb27",
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
                "938629fc-c4c2-5663-812d-5c1c75bafe4f",
                "2021-04-17T02:05:00.018200Z",
                {
                    "request_id": SECOND_REQUEST_ID,
                    "subscription_id": "sub-sip-yearly-0417",
                    "account_id": "acc-1002",
                    "reason_code": "already_terminated",
                    "detail": "the subscription is already terminated",
                },
            ),
        ]
    )
)
"""The example of every topic the worker reads or writes, in the contract's order."""
