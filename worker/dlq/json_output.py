"""`--output json` of `dlq list` and `dlq show`: one dead letter as one line of JSON, for jq and
scripts (docs/dead-letters.md)."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

from worker.dlq.letters import DeadLetter
from worker.dlq.recoverer import EXCEPTION_STACKTRACE, REPLAYED_FROM, read_number
from worker.dlq.text import NUMBER_HEADERS, timestamp_text


def letter_json(letter: DeadLetter) -> str:
    """One dead letter as one line of JSON, for jq and scripts (docs/dead-letters.md)."""
    dlt = letter.dlt
    document: dict[str, Any] = {
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "dead_lettered_at": timestamp_text(letter.timestamp_ms),
        **_bytes_field("key", letter.key),
        "reason": dlt.failure_reason,
        "poison": letter.poison is not None,
        "original": {
            "topic": dlt.original_topic,
            "partition": dlt.original_partition,
            "offset": dlt.original_offset,
            "timestamp": None
            if dlt.original_timestamp_ms is None
            else timestamp_text(dlt.original_timestamp_ms),
        },
        "consumer_group": dlt.consumer_group,
        "exception": {
            "class": dlt.exception_fqcn,
            "message": dlt.exception_message,
            "cause_class": dlt.exception_cause_fqcn,
            "stacktrace": _text_or_none(letter.header(EXCEPTION_STACKTRACE)),
        },
        "replayed_from": _text_or_none(letter.header(REPLAYED_FROM)),
        "headers": [_header_json(name, raw) for name, raw in letter.headers],
        **_bytes_field("value", letter.value),
    }
    return json.dumps(document, ensure_ascii=False)


def _header_json(name: str, raw: bytes | None) -> dict[str, Any]:
    """Spring's binary partition, offset and timestamp also as `number`."""
    header: dict[str, Any] = {"name": name, **_bytes_field("value", raw)}
    if name in NUMBER_HEADERS and raw is not None:
        with contextlib.suppress(ValueError):
            header["number"] = read_number(raw)
    return header


def _bytes_field(name: str, raw: bytes | None) -> dict[str, str | None]:
    """`{name: text}`; bytes that are not UTF-8 as `{name: null, name_base64: ...}`."""
    if raw is None:
        return {name: None}
    try:
        return {name: raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {name: None, f"{name}_base64": base64.b64encode(raw).decode("ascii")}


def _text_or_none(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")
