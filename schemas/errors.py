"""Named errors for messages the worker cannot take: poison, to be dead-lettered, never retried.

Their class names end up in the `kafka_dlt-exception-fqcn` header, so each says what kind of problem
it is; their messages name the header or field at fault.
"""

from __future__ import annotations

from pydantic import ValidationError


class InvalidMessage(ValueError):
    """A Kafka message that is not an event of the contract."""


class InvalidEnvelope(InvalidMessage):
    """Not a valid CloudEvents 1.0 event in the Kafka binding (binary or structured mode)."""


class MissingAttribute(InvalidEnvelope):
    """A required CloudEvents attribute (ce_id, ce_source, ce_type, ce_specversion) is absent."""


class InvalidAttribute(InvalidEnvelope):
    """An attribute is present but wrong: another specversion, empty, not UTF-8, a bad time..."""


class UnsupportedContentType(InvalidEnvelope):
    """The content type is neither JSON (binary mode) nor application/cloudevents+json (structured)."""


class NotJson(InvalidEnvelope):
    """The value (binary mode) or the event (structured mode) is not a JSON object."""


class UnexpectedEventType(InvalidEnvelope):
    """A well-formed event whose ce_type does not belong on the topic it came from."""


class InvalidEventData(InvalidMessage):
    """The event's data does not match its topic's schema; `errors` holds pydantic's details per field."""

    def __init__(self, subject: str, error: ValidationError) -> None:
        self.errors = error.errors(include_url=False)
        super().__init__(f"{subject} data is invalid: {describe(error)}")


def describe(error: ValidationError) -> str:
    """Every problem on one line, each led by its field ("credit_note.amount: ..."), for logs and headers."""
    return "; ".join(
        f"{'.'.join(str(part) for part in detail['loc']) or '(data)'}: {detail['msg']}"
        for detail in error.errors(include_url=False)
    )
