"""Reading a header the tests expect to be there: a null value (which Kafka allows) is a failure."""

from __future__ import annotations

from worker.engine.records import Headers


def header(headers: Headers, name: str) -> bytes:
    value = dict(headers)[name]
    if value is None:
        raise AssertionError(f"header {name!r} is null")
    return value
