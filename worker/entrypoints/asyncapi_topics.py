"""One topic in the AsyncAPI document: its channel, its operation (`receive` or `send`) and its
message (content type, Kafka key binding, correlation id, example), all named after the topic's data
model. The headers schema is worker/entrypoints/asyncapi_headers.py; the document,
worker/entrypoints/asyncapi.py."""

from __future__ import annotations

from typing import Any

from schemas.envelope import JSON_CONTENT_TYPE
from schemas.events import DATA_MODELS
from schemas.examples import EXAMPLES
from schemas.topics import Topic, TopicSpec
from worker.handlers.inputs import DESCRIPTIONS
from worker.handlers.outputs import WHEN_PUBLISHED

KAFKA_BINDING_VERSION = "0.5.0"
SCHEMAS = "#/components/schemas/"
"""Where the document's schemas are, as a $ref prefix."""


def message_name(topic: Topic) -> str:
    """The message's name: its data model's (`RefundIssued`), what generated classes are called."""
    return DATA_MODELS[topic].__name__


def operation_id(spec: TopicSpec) -> str:
    return f"{'receive' if spec.is_input else 'send'}{message_name(spec.topic)}"


def _describe(spec: TopicSpec) -> str:
    what = DESCRIPTIONS.get(spec.topic) if spec.is_input else WHEN_PUBLISHED.get(spec.topic)
    direction = "The worker consumes it." if spec.is_input else "The worker publishes it."
    return (
        f"{what or spec.topic.value} {direction} CloudEvents type `{spec.ce_type}`; Kafka key: the data's "
        f"`{spec.key_field}` (UTF-8)."
    )


def channel_of(spec: TopicSpec, name: str) -> dict[str, Any]:
    return {
        "address": spec.topic.value,
        "title": spec.topic.value,
        "description": _describe(spec),
        "servers": [{"$ref": "#/servers/kafka"}],
        "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        "bindings": {"kafka": {"topic": spec.topic.value, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def operation_of(spec: TopicSpec, name: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": "receive" if spec.is_input else "send",
        "channel": {"$ref": f"#/channels/{spec.topic.value}"},
        "summary": f"{'Consume' if spec.is_input else 'Publish'} {spec.topic.value}.",
        "messages": [{"$ref": f"#/channels/{spec.topic.value}/messages/{name}"}],
    }
    if spec.is_input:
        group = {"type": "string", "default": "refund-worker", "description": "CONSUMER_GROUP"}
        operation["bindings"] = {"kafka": {"groupId": group, "bindingVersion": KAFKA_BINDING_VERSION}}
    return operation


def message_of(spec: TopicSpec, name: str) -> dict[str, Any]:
    example = EXAMPLES.get(spec.topic)
    message: dict[str, Any] = {
        "name": name,
        "title": spec.topic.value,
        "summary": _describe(spec),
        "contentType": JSON_CONTENT_TYPE,
        "headers": {"$ref": f"{SCHEMAS}{name}Headers"},
        "payload": {"$ref": f"{SCHEMAS}{name}"},
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "minLength": 1,
                    "description": f"The data's `{spec.key_field}`, UTF-8.",
                    **({"examples": [example.key]} if example else {}),
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }
    correlation = _correlation_id(spec)
    if correlation is not None:
        message["correlationId"] = correlation
    if example is not None:
        message["examples"] = [
            {
                "name": f"{name}Example",
                "summary": f"{example.summary} (Kafka key {example.key!r}).",
                "headers": dict(example.headers),
                "payload": dict(example.data),
            }
        ]
    return message


def _correlation_id(spec: TopicSpec) -> dict[str, str] | None:
    """A request's `ce_id` header, and the field of the outputs that answer it that carries it: a
    termination's `request_id`, an adjustment's `request_id` or `adjustment_id`, a money refund's
    `request_id`."""
    if spec.topic in _REQUESTS:
        return {
            "description": (
                f"The request's ce_id; the events that answer it carry it as {_REQUESTS[spec.topic]}."
            ),
            "location": "$message.header#/ce_id",
        }
    if spec.topic is Topic.BALANCE_ADJUSTED:
        return {
            "description": "The ce_id of the balance-adjustment-requested event this answers.",
            "location": "$message.payload#/adjustment_id",
        }
    if not spec.is_input and "request_id" in DATA_MODELS[spec.topic].model_fields:
        expiry = " (null for an expiry)" if spec.topic is Topic.SUBSCRIPTION_TERMINATED else ""
        request = _ANSWERED.get(spec.topic, Topic.TERMINATION_REQUESTED.value)
        return {
            "description": f"The ce_id of the {request} event this answers{expiry}.",
            "location": "$message.payload#/request_id",
        }
    return None


_REQUESTS = {
    Topic.TERMINATION_REQUESTED: "request_id",
    Topic.BALANCE_ADJUSTMENT_REQUESTED: (
        "adjustment_id (balance-adjusted) or request_id (adjustment-rejected)"
    ),
    Topic.MONEY_REFUND_REQUESTED: (
        "request_id (payment-refund-instructed, money-refund-updated, adjustment-rejected)"
    ),
}
_ANSWERED = {
    Topic.ADJUSTMENT_REJECTED: "balance-adjustment-requested or money-refund-requested",
    Topic.PAYMENT_REFUND_INSTRUCTED: Topic.MONEY_REFUND_REQUESTED.value,
    Topic.MONEY_REFUND_UPDATED: Topic.MONEY_REFUND_REQUESTED.value,
}
"""The request topic each answer's request_id names, where it is not termination-requested."""
