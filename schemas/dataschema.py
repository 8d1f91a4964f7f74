"""The stable identifier of each topic's JSON Schema: the `$id` of schemas/json/<topic>.schema.json.

The worker's output events carry it as the CloudEvents `dataschema` attribute (`ce_dataschema`), so a
consumer can pick the schema an event was written against. It is a URN, not a URL: it must not change
when the repository moves, and no service has to be reachable to read it. The version is the
`ce_type`'s (`refund.issued.v1` -> `...:refund-issued:v1`): a breaking change gets a new type, hence a
new schema id; added fields keep both.
"""

from __future__ import annotations

from functools import cache

from schemas.topics import spec_of

SCHEMA_ID_PREFIX = "urn:refund-worker:schema:"


@cache  # the outbox relay asks once per published event
def schema_id(topic: str) -> str:
    """`urn:refund-worker:schema:<topic>:<version of its ce_type>`, e.g. `...:refund-issued:v1`."""
    spec = spec_of(topic)
    version = spec.ce_type.rsplit(".", 1)[-1]
    return f"{SCHEMA_ID_PREFIX}{spec.topic}:{version}"
