"""Micro-benchmarks of the hot path: `python -m bench.hot_path` prints microseconds per message.

The worker must validate ~3,000 messages/s on 2 cores alongside everything else; these numbers are what
that budget is spent on, and what chose direct header parsing over the `cloudevents` SDK.
"""

from __future__ import annotations

import json
import sys
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.bindings import kafka as sdk_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from cloudevents.v1 import kafka as sdk_v1_kafka

from schemas.envelope import binary_headers, parse_message, read_input
from schemas.inputs import TerminationRequested
from schemas.topics import CeType, Topic
from worker.engine.wire_to_domain import termination_terms

TYPICAL: dict[str, Any] = {
    "subscription_id": "sub-8f3a2c",
    "account_id": "acc-55120",
    "reseller_id": "res-042",
    "product": "Cloud PBX Pro",
    "cycle_start": "2021-04-01",
    "cycle_months": 12,
    "amount_paid": "1200.00",
    "currency": "SGD",
    "timezone": "Asia/Singapore",
    "is_trial": False,
    "allow_refund": True,
    "requested_at": "2021-04-17T09:30:00+08:00",
    "requested_by": "operator@res-042.example",
    "reason": "Customer is moving to another provider",
    "credit_note": None,
}
VALUE = json.dumps(TYPICAL).encode()
TIME = datetime(2021, 4, 17, 1, 30, tzinfo=UTC)
HEADERS = binary_headers(event_id="ce-1", source="/portal", ce_type=CeType.TERMINATION_REQUESTED, time=TIME)
HEADER_DICT = dict(HEADERS)
REQUEST = TerminationRequested.model_validate_json(VALUE)


def _sdk_read() -> None:
    event = sdk_kafka.from_binary(
        sdk_kafka.KafkaMessage(HEADER_DICT, b"sub-8f3a2c", VALUE), JSONFormat(), CloudEvent
    )
    TerminationRequested.model_validate(event.get_data())


def _sdk_headers() -> None:
    attributes = {
        "id": "ce-1",
        "source": "/w",
        "type": "t",
        "datacontenttype": "application/json",
        "time": TIME,
    }
    sdk_kafka.to_binary(CloudEvent(attributes, VALUE), JSONFormat())


CASES: dict[str, Callable[[], object]] = {
    "TerminationRequested.model_validate_json": lambda: TerminationRequested.model_validate_json(VALUE),
    "parse_message (binary, headers only)": lambda: parse_message(HEADERS, VALUE, b"sub-8f3a2c"),
    "sdk core from_binary (headers + json.loads)": lambda: sdk_kafka.from_binary(
        sdk_kafka.KafkaMessage(HEADER_DICT, b"sub-8f3a2c", VALUE), JSONFormat(), CloudEvent
    ),
    "sdk v1 from_binary (headers + json.loads)": lambda: sdk_v1_kafka.from_binary(
        sdk_v1_kafka.KafkaMessage(HEADER_DICT, b"sub-8f3a2c", VALUE)
    ),
    "read_input (envelope + data, end to end)": lambda: read_input(
        Topic.TERMINATION_REQUESTED, HEADERS, VALUE, b"sub-8f3a2c"
    ),
    "sdk core from_binary + model_validate (end to end)": _sdk_read,
    "termination_terms (the worker's step after read_input)": lambda: termination_terms(REQUEST),
    "binary_headers (outgoing)": lambda: binary_headers(event_id="ce-1", source="/w", ce_type="t", time=TIME),
    "sdk core to_binary (outgoing)": _sdk_headers,
}


def measure(case: Callable[[], object], number: int = 20_000, repeat: int = 5) -> float:
    """Best of `repeat` runs, in microseconds per call: the least disturbed by the rest of the machine."""
    return min(timeit.repeat(case, number=number, repeat=repeat)) / number * 1e6


def main() -> int:
    sys.stdout.write(f"typical termination-requested value: {len(VALUE)} bytes\n")
    for name, case in CASES.items():
        sys.stdout.write(f"{measure(case):8.2f} us  {name}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
